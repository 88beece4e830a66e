"""What the writer's `/readyz` checks (tessera/web.py serves `/healthz`, `/readyz`, `/metrics`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from litestar import Request

from global_writer.controllers.common import writer_of
from global_writer.db.retry import run_transaction


async def readiness(request: Request[Any, Any, Any]) -> Mapping[str, object]:
    """Started (its events loaded), connected to NATS, and its database answering."""
    writer = writer_of(request)
    checks: dict[str, object] = {
        "started": writer.ready,
        "nats": writer.conns.nc.is_connected if writer.ready else False,
    }
    try:
        await run_transaction(writer.conns.engine, lambda conn: conn.execute(sa.select(1)))
        checks["database"] = True
    except Exception:
        checks["database"] = False
    return checks
