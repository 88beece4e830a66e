from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from litestar import Controller, Request, Response, get

from global_writer.controllers.common import JSON, writer_of
from global_writer.db.retry import run_transaction


class HealthController(Controller):
    path = "/"
    tags = ["operations"]
    include_in_schema = False

    @get("/healthz")
    async def healthz(self) -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type=JSON)

    @get("/readyz")
    async def readyz(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        writer = writer_of(request)
        checks = {
            "started": writer.ready,
            "nats": writer.conns.nc.is_connected if writer.ready else False,
        }
        try:
            await run_transaction(writer.conns.engine, lambda conn: conn.execute(sa.select(1)))
            checks["database"] = True
        except Exception:
            checks["database"] = False
        ready = all(checks.values())
        body = b'{"status":"%s","checks":{%s}}' % (
            b"ready" if ready else b"not_ready",
            b",".join(
                b'"%s":%s' % (k.encode(), b"true" if v else b"false") for k, v in checks.items()
            ),
        )
        return Response(body, status_code=200 if ready else 503, media_type=JSON)
