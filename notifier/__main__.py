"""`python -m notifier [--host H] [--port P]`: the notifier's worker, with `/healthz`, `/readyz`
and `/metrics` served by Granian, configured from the environment (`TESSERA_NATS_URL`,
`TESSERA_REDIS_URL`, `TESSERA_NOTIFY_*`, see notifier/settings.py)."""

from __future__ import annotations

from notifier.settings import from_env
from tessera.serving import serve


def main(argv: list[str] | None = None) -> None:
    serve("notifier", 8400, from_env, argv)


if __name__ == "__main__":
    main()
