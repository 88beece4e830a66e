"""The notifier (docs/architecture.md §6, docs/notifications.md): consumes order confirmations from
the JetStream work queue `ORDERS`, emails them over SMTP and texts them through an HTTP webhook,
retrying with backoff, dead-lettering what cannot be delivered, never sending one twice on
redelivery. `python -m notifier [--host H] [--port P]` serves its health and metrics."""

from __future__ import annotations


def cli_main(argv: list[str] | None = None) -> None:
    """`python -m notifier` as a function. The `tessera` CLI should rather run
    `python -m notifier` as a process: the tooling starts tiers, it never imports them."""
    from notifier.__main__ import main  # noqa: PLC0415 - keeps `import notifier` light

    main(argv)
