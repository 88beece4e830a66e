"""`python -m regional [--host H] [--port P]`: serve a regional read node with Granian,
configured from the environment (`TESSERA_NATS_URL` of the region, `TESSERA_WRITER_URL`,
`TESSERA_JWT_SECRET`, see regional/settings.py)."""

from __future__ import annotations

import argparse

from granian import Granian
from granian.constants import Interfaces

from regional.settings import from_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m regional", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    args = parser.parse_args(argv)
    from_env()
    # One worker: the node's state (seat maps, SSE clients) lives in one process.
    Granian(
        "regional.app:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
