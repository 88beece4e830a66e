"""How every tier is served: `python -m <tier> [--host H] [--port P]` runs its `create_app`
factory under Granian with one worker (each tier keeps its state in one process: the writer's
event actors, the regional node's seat maps and SSE clients)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from granian import Granian
from granian.constants import Interfaces, Loops

from tessera import limits


def serve(
    module: str, default_port: int, check_settings: Callable[[], object], argv: list[str] | None
) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=default_port)
    args = parser.parse_args(argv)
    check_settings()  # fail fast, naming the variable, before the server starts
    Granian(
        f"{module}.app:create_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        # uvloop: a dependency, so named rather than left to Granian's "auto" (which would also
        # pick rloop, were it ever installed): the loop every measurement was made on.
        loop=Loops.uvloop,
        workers=1,
        factory=True,
        log_access=False,
        backlog=limits.serve_backlog_max,
        # Granian's default caps concurrent requests (so connections: SSE streams and keep-alive
        # fans each hold one) at the backlog, 1,024: an edge must hold far more.
        backpressure=limits.serve_concurrent_requests_max,
    ).serve()
