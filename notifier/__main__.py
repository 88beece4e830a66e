"""`python -m notifier [--host H] [--port P]`: the notifier's worker, with `/healthz`, `/readyz`
and `/metrics` served by Granian, configured from the environment (`TESSERA_NATS_URL`,
`TESSERA_REDIS_URL`, `TESSERA_NOTIFY_*`, see notifier/settings.py; `TESSERA_WEBHOOK_*`, see
notifier/webhooks.py)."""

from __future__ import annotations

from notifier import webhooks
from notifier.settings import from_env
from tessera.serving import serve


def _check_settings() -> object:
    return from_env(), webhooks.from_env()


def main(argv: list[str] | None = None) -> None:
    serve("notifier", 8400, _check_settings, argv)


if __name__ == "__main__":
    main()
