"""`python -m edge [--host H] [--port P]`: serve an edge with Granian, configured from the
environment (`TESSERA_ORIGIN_URLS`, `TESSERA_WRITER_URL`, `TESSERA_REDIS_URL`, secrets; see
edge/settings.py and docs/edge.md)."""

from __future__ import annotations

from edge.settings import from_env
from tessera.serving import serve


def main(argv: list[str] | None = None) -> None:
    serve("edge", 8300, from_env, argv)


if __name__ == "__main__":
    main()
