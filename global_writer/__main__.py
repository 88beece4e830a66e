"""`python -m global_writer [--host H] [--port P]`: serve the writer with Granian, configured
from the environment (`TESSERA_*`, see global_writer/settings.py)."""

from __future__ import annotations

import argparse

from granian import Granian
from granian.constants import Interfaces

from global_writer.settings import from_env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m global_writer", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args(argv)
    from_env()  # fail fast, naming the variable, before the server starts
    # One worker: an event's claims are changed by one actor in one process (the lease holder).
    Granian(
        "global_writer.app:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
    ).serve()


if __name__ == "__main__":
    main()
