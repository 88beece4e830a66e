"""Who is asking, and may they: the client address (X-Forwarded-For only from a trusted proxy),
the fan behind the bearer token, and the rate-limit check every handler makes first."""

from __future__ import annotations

from typing import Any

from litestar import Request

from edge.clientip import client_ip
from edge.errors import EdgeError
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass, Settings
from tessera import auth


def ip_of(request: Request[Any, Any, Any]) -> str:
    client = request.scope.get("client")
    return client_ip(
        client[0] if client else None,
        request.headers.get("x-forwarded-for"),
        request.app.state.trusted,
    )


def fan_of(request: Request[Any, Any, Any]) -> str:
    """The verified user id; 401 before anything reaches the writer otherwise."""
    settings: Settings = request.app.state.settings
    try:
        token = auth.bearer_token(request.headers.get("authorization"))
        return auth.verify_token(token, settings.jwt_secret).user_id
    except auth.AuthError as error:
        raise EdgeError(401, "unauthorized", str(error)) from None


async def admit_rate(
    request: Request[Any, Any, Any], route_class: RouteClass, user_id: str | None
) -> str:
    """Charge the request to its budgets; 429 when one is spent. Returns the client address."""
    ip = ip_of(request)
    limiter: RateLimiter = request.app.state.limiter
    decision = await limiter.check(route_class, ip, user_id)
    if not decision.allowed:
        raise refusal(decision, route_class)
    return ip
