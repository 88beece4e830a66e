"""Who is asking, and may they: the client address (X-Forwarded-For only from a trusted proxy),
the fan behind the bearer token, and the rate-limit check every handler makes first."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request

from edge.clientip import client_ip
from edge.errors import EdgeError
from edge.ratelimit import RateLimiter, refusal
from edge.settings import RouteClass, Settings
from tessera import auth, limits


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


class VerifiedTokens:
    """Fan tokens this process has verified, so that a fan's next writes skip the HMAC check and
    the JWT decoding (as the writer does, global_writer/tokens.py). A token's validity depends
    only on the secret, fixed for the process, and the clock: a remembered token is refused once
    it has expired. Only tokens that verified are kept, keyed by the whole header as sent, at
    most `limits.edge_verified_tokens_max` (the oldest forgotten first)."""

    def __init__(self, secret: str) -> None:
        auth.check_secret(secret)
        self.secret = secret
        self.principals: dict[bytes, auth.Principal] = {}

    def user_id(self, authorization: bytes | None) -> str:
        """The fan an `Authorization: Bearer` header speaks for; 401 `unauthorized` otherwise."""
        principal = self.principals.get(authorization or b"")
        if principal is not None and time.time() < principal.expires_at:
            return principal.user_id
        try:
            header = None if authorization is None else authorization.decode("latin-1")
            principal = auth.verify_token(auth.bearer_token(header), self.secret)
        except auth.AuthError as error:
            self.principals.pop(authorization or b"", None)
            raise EdgeError(401, "unauthorized", str(error)) from None
        assert authorization is not None  # a token verified
        if len(self.principals) >= limits.edge_verified_tokens_max:
            del self.principals[next(iter(self.principals))]
        self.principals[authorization] = principal
        return principal.user_id
