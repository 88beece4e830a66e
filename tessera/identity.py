"""Fans' identities, from an identity provider (docs/identity.md).

Production: fans' tokens are JWTs an identity provider signs with its private keys (RS256 or
ES256); every tier verifies them with the provider's *public* keys, fetched from its JWKS
endpoint, so no tier (an edge least of all) can mint a token. The issuer, the audience and the
clock leeway come from configuration; claims beyond the ones Tessera reads are tolerated (real
providers add many). Keys are found by the token's `kid` and cached; the cache is refreshed every
`limits.jwks_refresh_s`, and at once (at most every `limits.jwks_refresh_s_min`) when a token
names a key the cache does not have, which is how a provider's key rotation reaches Tessera: the
token is refused meanwhile (401) and the fan's retry passes once the new key is in.

Development: HS256 with one shared secret (`tessera.auth`), only when configured explicitly and
never in production (`IdentityConfig.check`).

Verification is synchronous and cheap for a known token: every verified token is remembered
until it expires (`limits.verified_tokens_max` of them), so a fan's next requests skip the
signature check. Fetching keys happens off the request path (`refresh`, run by the tier's
lifespan and when a token needs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Annotated, Any, Final

import jwt
import msgspec

from tessera import auth, limits
from tessera.auth import AuthError, Principal

log = logging.getLogger("tessera.identity")

ASYMMETRIC_ALGORITHMS: Final = ("RS256", "ES256")


class IdentityConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How a tier checks fans' tokens: a JWKS URL (production), or an HS256 secret (dev only)."""

    jwks_url: Annotated[str, msgspec.Meta(max_length=2_048)] = ""
    issuer: Annotated[str, msgspec.Meta(max_length=2_048)] = auth.ISSUER
    audience: Annotated[str, msgspec.Meta(max_length=2_048)] = auth.AUDIENCE
    leeway_s: Annotated[int, msgspec.Meta(ge=0, le=limits.jwt_leeway_s_max)] = (
        limits.jwt_clock_skew_s
    )
    hs256_secret: Annotated[str, msgspec.Meta(max_length=512)] = ""

    def check(self, *, production: bool) -> None:
        """Exactly one way to verify; HS256 (a secret every tier could sign with) never in
        production. Raises ValueError naming the variables to change."""
        if bool(self.jwks_url) == bool(self.hs256_secret):
            raise ValueError(
                "TESSERA_JWKS_URL or TESSERA_JWT_SECRET: set exactly one (JWKS in production, "
                "the HS256 secret for local development only)"
            )
        if self.hs256_secret and production:
            raise ValueError(
                "TESSERA_JWT_SECRET: HS256 tokens are refused when TESSERA_PRODUCTION is true; "
                "set TESSERA_JWKS_URL to the identity provider's keys"
            )
        if self.hs256_secret:
            auth.check_secret(self.hs256_secret)


class IdentitySettings(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The identity part of a tier's settings (IDENTITY_ENV_FIELDS): every tier that checks fans'
    tokens inherits it, so the rules are the same everywhere."""

    jwks_url: Annotated[str, msgspec.Meta(max_length=2_048)] = ""
    jwt_issuer: Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)] = auth.ISSUER
    jwt_audience: Annotated[str, msgspec.Meta(min_length=1, max_length=2_048)] = auth.AUDIENCE
    jwt_leeway_s: Annotated[int, msgspec.Meta(ge=0, le=limits.jwt_leeway_s_max)] = (
        limits.jwt_clock_skew_s
    )
    jwt_secret: Annotated[str, msgspec.Meta(max_length=512)] = ""
    production: bool = False

    @property
    def identity(self) -> IdentityConfig:
        return IdentityConfig(
            jwks_url=self.jwks_url,
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            leeway_s=self.jwt_leeway_s,
            hs256_secret=self.jwt_secret,
        )


IDENTITY_ENV_FIELDS: Final = {
    "jwks_url": "TESSERA_JWKS_URL",
    "jwt_issuer": "TESSERA_JWT_ISSUER",
    "jwt_audience": "TESSERA_JWT_AUDIENCE",
    "jwt_leeway_s": "TESSERA_JWT_LEEWAY_S",
    "jwt_secret": "TESSERA_JWT_SECRET",
    "production": "TESSERA_PRODUCTION",
}


class Verifier:
    """Fans' tokens, verified (module docstring). `user_id` is what the tiers call."""

    def __init__(self, config: IdentityConfig) -> None:
        self.config = config
        self.principals: dict[str, Principal] = {}
        self.keys: dict[str, jwt.PyJWK] = {}
        self.refreshed_at = 0.0
        self.refreshing: asyncio.Task[None] | None = None
        self.client = (
            jwt.PyJWKClient(config.jwks_url, cache_jwk_set=False, timeout=limits.jwks_fetch_s_max)
            if config.jwks_url
            else None
        )

    def user_id(self, authorization: str | None) -> str:
        """The user an `Authorization: Bearer` header speaks for; `AuthError` otherwise."""
        token = auth.bearer_token(authorization)
        principal = self.principals.get(token)
        if principal is not None and time.time() < principal.expires_at:
            return principal.user_id
        self.principals.pop(token, None)
        principal = self.verify(token)
        if len(self.principals) >= limits.verified_tokens_max:
            del self.principals[next(iter(self.principals))]
        self.principals[token] = principal
        return principal.user_id

    def verify(self, token: str) -> Principal:
        if self.client is None:
            return auth.verify_token(token, self.config.hs256_secret)
        if len(token) > limits.bearer_token_chars_max:
            raise AuthError("token_invalid", "the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("token_invalid", "the token is not a JWT") from None
        key = self.keys.get(str(header.get("kid", "")))
        if key is None:
            self.refresh_soon()
            raise AuthError("token_invalid", "the token's signing key is not known (yet)")
        return self.decode(token, key)

    def decode(self, token: str, key: jwt.PyJWK) -> Principal:
        config = self.config
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                # Only the key's own algorithm: a token whose header names another one (an
                # RS256 key asked to verify ES256) is refused as invalid, not raised as a crash.
                algorithms=[key.algorithm_name],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired") from None
        except jwt.InvalidTokenError as error:
            # PyJWT's own message may quote token contents: say only which check failed.
            raise AuthError("token_invalid", f"the token fails {type(error).__name__}") from None
        subject, expires = claims.get("sub"), claims.get("exp")
        if not isinstance(subject, str) or not auth.is_user_id(subject):
            raise AuthError("token_invalid", "the token's subject is not a user id Tessera takes")
        if not isinstance(expires, int | float):
            raise AuthError("token_invalid", "the token's expiry is malformed")
        return Principal(user_id=subject, expires_at=int(expires))

    def refresh_soon(self) -> None:
        """Fetch the keys in the background, unless a fetch is running or ran just now."""
        if self.client is None or (self.refreshing is not None and not self.refreshing.done()):
            return
        if time.monotonic() - self.refreshed_at < limits.jwks_refresh_s_min:
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the next request will
            self.refreshing = asyncio.get_running_loop().create_task(self.refresh())

    async def refresh(self) -> None:
        """The provider's current keys (a fetch that fails keeps the ones there are)."""
        if self.client is None:
            return
        self.refreshed_at = time.monotonic()
        try:
            found = await asyncio.to_thread(self.client.get_jwk_set, True)
        except jwt.PyJWKClientError:
            log.warning("could not fetch the identity provider's keys; keeping %d", len(self.keys))
            return
        self.keys = {
            str(key.key_id): key
            for key in found.keys
            if key.key_id and key.algorithm_name in ASYMMETRIC_ALGORITHMS
        }

    async def keep_fresh(self) -> None:
        """A tier's lifespan task: the keys, refreshed for as long as the tier runs."""
        while True:
            await self.refresh()
            await asyncio.sleep(limits.jwks_refresh_s)
