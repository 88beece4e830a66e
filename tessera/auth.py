"""Fan authentication (JWT bearer tokens, HS256) and the admin key check.

Tokens carry exactly the claims `sub` (the user id), `iat`, `exp`, `aud` and `iss` (both
`"tessera"`). Verification accepts only HS256 under the shared secret and refuses everything else
with one exception type, `AuthError`, whose `code` is machine-readable (`token_missing`,
`token_expired`, `token_invalid`, `admin_key_invalid`) and whose message never contains the token
or the secret, so it is safe to log and to send back to the client.

Time checks run against the `now` the caller passes (default: the wall clock), not PyJWT's own
clock, so tests and the writer agree on one instant. PyJWT only checks the algorithm and the
signature; the claims are decoded into a strict msgspec struct.

A misconfigured secret (too short) is a deployment error, not a bad request: `check_secret` raises
`ValueError`, and services call it at start-up.
"""

from __future__ import annotations

import hmac
import re
import time
from typing import Annotated, Final, Literal, TypeAlias

import jwt
import msgspec

from tessera import limits

AUDIENCE: Final = "tessera"
ISSUER: Final = "tessera"
ALGORITHM: Final = "HS256"
# The environment variable every service (and `tessera token`) reads the signing secret from.
JWT_SECRET_ENV: Final = "TESSERA_JWT_SECRET"  # noqa: S105 (a variable name, not a secret)

USER_ID_PATTERN: Final = r"^[A-Za-z0-9._-]+$"
# Three base64url segments, checked before PyJWT so odd input never reaches its decoders. The
# signature may be empty so that an `alg: none` token is refused by the algorithm check.
_TOKEN_SHAPE: Final = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_USER_ID: Final = re.compile(USER_ID_PATTERN)
_BEARER_SCHEME: Final = "bearer"

UserId: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.user_id_chars_max, pattern=USER_ID_PATTERN)
]
Timestamp: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=limits.jwt_timestamp_s_max)]

AuthCode: TypeAlias = Literal[
    "token_missing", "token_expired", "token_invalid", "admin_key_invalid"
]

_DEFAULT_MESSAGES: Final[dict[str, str]] = {
    "token_missing": "a bearer token is required",
    "token_expired": "the token has expired",
    "token_invalid": "the token is invalid",
    "admin_key_invalid": "the admin key is missing or wrong",
}

# Only HS256 is ever accepted; the header's `alg` cannot pick another algorithm (nor `none`).
_JWS: Final = jwt.PyJWS(algorithms=[ALGORITHM])


class AuthError(Exception):
    """Authentication failed. `code` is for machines; the message is safe to log and return."""

    def __init__(self, code: AuthCode, message: str | None = None) -> None:
        self.code: AuthCode = code
        super().__init__(message or _DEFAULT_MESSAGES[code])


class Claims(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The token payload, exactly: any other claim makes the token invalid."""

    sub: UserId
    iat: Timestamp
    exp: Timestamp
    aud: Literal["tessera"]
    iss: Literal["tessera"]


class Principal(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Who a verified token speaks for, and until when (seconds since the epoch)."""

    user_id: str
    expires_at: int


def check_secret(secret: str) -> None:
    """Raise `ValueError` unless `secret` is long enough to key HS256 (or to be an admin key)."""
    try:
        size = len(secret.encode())
    except UnicodeEncodeError:  # undecodable bytes from the environment: not a usable key
        raise ValueError("the secret must be valid UTF-8 text") from None
    if size < limits.jwt_secret_bytes_min:
        # The length only: the secret itself never goes into a message.
        raise ValueError(f"the secret must be at least {limits.jwt_secret_bytes_min} bytes long")


def is_user_id(user_id: str) -> bool:
    return 0 < len(user_id) <= limits.user_id_chars_max and _USER_ID.fullmatch(user_id) is not None


def mint_token(
    user_id: str, secret: str, *, ttl_s: int = limits.jwt_default_ttl_s, now: float | None = None
) -> str:
    """A signed token for `user_id`, valid for `ttl_s` seconds from `now` (default: the clock).

    Bad arguments are the caller's bug, so they raise `ValueError`, not `AuthError`.
    """
    check_secret(secret)
    if not is_user_id(user_id):
        raise ValueError(
            f"user id must be 1-{limits.user_id_chars_max} characters of [A-Za-z0-9._-]"
        )
    if not 1 <= ttl_s <= limits.jwt_ttl_s_max:
        raise ValueError(f"ttl_s must be in 1..{limits.jwt_ttl_s_max}")
    issued_at = int(time.time() if now is None else now)
    if not 0 <= issued_at <= limits.jwt_timestamp_s_max - ttl_s:
        raise ValueError("now is outside the range a token can carry")
    claims = Claims(sub=user_id, iat=issued_at, exp=issued_at + ttl_s, aud=AUDIENCE, iss=ISSUER)
    return _JWS.encode(msgspec.json.encode(claims), secret, algorithm=ALGORITHM)


def _signed_claims(token: str, secret: str) -> Claims:
    """Check shape, algorithm and signature, then decode the claims strictly."""
    if len(token) > limits.bearer_token_chars_max:
        raise AuthError("token_invalid", "the token is too long")
    if _TOKEN_SHAPE.fullmatch(token) is None:
        raise AuthError("token_invalid", "the token is not a JWT")
    try:
        decoded = _JWS.decode_complete(token, secret, algorithms=[ALGORITHM])
    except jwt.InvalidAlgorithmError:
        raise AuthError("token_invalid", f"the token is not signed with {ALGORITHM}") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token_invalid", "the token's signature does not verify") from None
    except jwt.InvalidTokenError:
        # PyJWT's own message may quote decoded token bytes: never pass it on.
        raise AuthError("token_invalid", "the token is malformed") from None
    payload: bytes = decoded["payload"]
    try:
        return msgspec.json.decode(payload, type=Claims)
    except msgspec.DecodeError:  # ValidationError included; its text can quote claim names
        raise AuthError("token_invalid", "the token's claims are missing or malformed") from None


def verify_token(token: str, secret: str, *, now: float | None = None) -> Principal:
    """The principal `token` speaks for, or `AuthError` saying why not."""
    check_secret(secret)
    if not token:
        raise AuthError("token_missing")
    claims = _signed_claims(token, secret)
    if not 0 < claims.exp - claims.iat <= limits.jwt_ttl_s_max:
        raise AuthError("token_invalid", "the token's lifetime is out of range")
    at = time.time() if now is None else now
    if claims.iat > at + limits.jwt_clock_skew_s:
        raise AuthError("token_invalid", "the token is not valid yet")
    if at >= claims.exp:
        raise AuthError("token_expired")
    return Principal(user_id=claims.sub, expires_at=claims.exp)


def bearer_token(authorization: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` header value (the scheme is
    case-insensitive, RFC 9110 §11.1); `token_missing` when there is none."""
    if authorization is None or not authorization.strip():
        raise AuthError("token_missing")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != _BEARER_SCHEME:
        raise AuthError("token_invalid", "the Authorization scheme must be Bearer")
    token = token.strip()
    if not token:
        raise AuthError("token_missing")
    return token


def check_admin_key(given: str | None, expected: str) -> None:
    """Raise `AuthError("admin_key_invalid")` unless `given` equals `expected`.

    The comparison takes the same time wherever the keys differ, so response timing does not leak
    the key byte by byte. An `expected` key that is too short raises `ValueError` (a deployment
    error): an empty configured key must never let an empty header in.
    """
    check_secret(expected)
    # surrogatepass: a header value with lone surrogates is just a wrong key, never a crash.
    given_bytes = None if given is None else given.encode("utf-8", "surrogatepass")
    if given_bytes is None or not hmac.compare_digest(given_bytes, expected.encode()):
        raise AuthError("admin_key_invalid")
