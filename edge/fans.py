"""Who is asking, and may they: the client address (X-Forwarded-For only from a trusted proxy),
the fan behind the bearer token, and the rate-limit check every handler makes first."""

from __future__ import annotations

from typing import Any

from litestar import Request

from edge.clientip import client_ip
from edge.errors import EdgeError
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass
from tessera import auth
from tessera.identity import Verifier
from tessera.web import challenge


def ip_of(request: Request[Any, Any, Any]) -> str:
    client = request.scope.get("client")
    return client_ip(
        client[0] if client else None,
        request.headers.get("x-forwarded-for"),
        request.app.state.trusted,
    )


def fan_of(request: Request[Any, Any, Any]) -> str:
    """The verified user id; 401 before anything reaches the writer otherwise."""
    verifier: Verifier = request.app.state.verifier
    try:
        return verifier.user_id(request.headers.get("authorization"))
    except auth.AuthError as error:
        raise EdgeError(
            401, "unauthorized", str(error), {"WWW-Authenticate": challenge(error.code)}
        ) from None


def optional_fan(request: Request[Any, Any, Any]) -> str | None:
    """The verified user id when a token is sent (401 when it does not verify: refused before
    any budget is charged, so a forged token costs no fan anything); None without one."""
    if "authorization" not in request.headers:
        return None
    return fan_of(request)


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


class VerifiedTokens:
    """Fans' tokens for the edge's handlers and fast paths: the kernel's verifier
    (tessera/identity.py: the identity provider's public keys, verified tokens remembered), its
    refusals as 401 `unauthorized` with `WWW-Authenticate`."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def user_id(self, authorization: bytes | None) -> str:
        try:
            header = None if authorization is None else authorization.decode("latin-1")
            return self.verifier.user_id(header)
        except auth.AuthError as error:
            raise EdgeError(
                401, "unauthorized", str(error), {"WWW-Authenticate": challenge(error.code)}
            ) from None
