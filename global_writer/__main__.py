"""`python -m global_writer [--host H] [--port P]`: serve the writer with Granian, configured
from the environment (`TESSERA_*`, see global_writer/settings.py). One worker: an event's claims
are changed by one actor in one process (the lease holder)."""

from __future__ import annotations

from global_writer.settings import from_env
from tessera.serving import serve


def main(argv: list[str] | None = None) -> None:
    serve("global_writer", 8100, from_env, argv)


if __name__ == "__main__":
    main()
