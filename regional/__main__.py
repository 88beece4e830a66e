"""`python -m regional [--host H] [--port P]`: serve a regional read node with Granian,
configured from the environment (`TESSERA_NATS_URL` of the region, `TESSERA_WRITER_URL`,
`TESSERA_JWT_SECRET`, see regional/settings.py)."""

from __future__ import annotations

from regional.settings import from_env
from tessera.serving import serve


def main(argv: list[str] | None = None) -> None:
    serve("regional", 8200, from_env, argv)


if __name__ == "__main__":
    main()
