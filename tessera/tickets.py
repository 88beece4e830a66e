"""Ticket tokens: what one ticket's QR code says, and how anyone holding the published keys checks
it offline (docs/tickets.md).

A token is `T1.<payload>.<signature>`: unpadded base32 (RFC 4648, upper case) of a MessagePack
array and of an Ed25519 signature over `SIGNING_CONTEXT + payload`. Upper-case base32 and `.` are
all in a QR code's alphanumeric set (5.5 bits a character), which packs a token into a smaller
symbol than base64 can (byte mode, 8 bits a character): version 9 instead of 10 at level M.

The payload is, in this order: the format version (1), the signing key's id (`kid`), the ticket
id, the event id, the order id (each UUID as its 16 bytes), the seat's public id
(`"<section>:<row>:<seat>"`), the fan's user id and when the ticket was issued (epoch seconds).
The signature covers exactly the bytes carried, so nothing is re-encoded before checking; the
`kid` is inside what is signed, so a token cannot be moved to another key.

The writer signs (global_writer/tickets.py); this module only verifies, so it needs nothing
secret: the public keys are published as a JWK set (RFC 8037, `OKP`/`Ed25519`) at the writer's
`GET /v1/tickets/keys`. A valid signature says the ticket was issued by Tessera; whether it was
already used, refunded or voided only the database knows (`POST /v1/tickets/scan`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import uuid
from collections.abc import Mapping
from typing import Annotated, Final, Literal

import msgspec
import segno
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tessera import limits

TOKEN_PREFIX: Final = "T1."  # noqa: S105 (a format marker, not a secret)
FORMAT_VERSION: Final = 1
# Signatures are over this prefix plus the payload: a signature made for anything else with the
# same key (were the key ever reused) can never pass as a ticket's.
SIGNING_CONTEXT: Final = b"tessera-ticket-v1\x00"
SIGNATURE_BYTES: Final = 64
PUBLIC_KEY_BYTES: Final = 32
KID_PATTERN: Final = r"^[A-Za-z0-9._-]+$"
# Base32 of 64 bytes is 103 characters without padding.
_TOKEN_SHAPE: Final = re.compile(r"\AT1\.([A-Z2-7]{8,400})\.([A-Z2-7]{103})\Z")

Kid = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.ticket_kid_chars_max, pattern=KID_PATTERN)
]
SeatLabel = Annotated[str, msgspec.Meta(min_length=5, max_length=limits.seat_id_chars_max)]
UserId = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=limits.user_id_chars_max, pattern=r"^[A-Za-z0-9._-]+$"),
]
IssuedAt = Annotated[int, msgspec.Meta(ge=0, le=limits.jwt_timestamp_s_max)]

InvalidReason = Literal["malformed", "unknown_key", "bad_signature"]


class TicketClaims(
    msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True, kw_only=True
):
    """What a ticket token says, signed."""

    v: Literal[1]
    kid: Kid
    ticket_id: uuid.UUID
    event_id: uuid.UUID
    order_id: uuid.UUID
    seat: SeatLabel
    user_id: UserId
    issued_at: IssuedAt


class TicketInvalid(Exception):
    """The token is not a ticket Tessera issued under a published key; `reason` says which
    check failed. The message never quotes the token."""

    def __init__(self, reason: InvalidReason, message: str) -> None:
        super().__init__(message)
        self.reason: InvalidReason = reason


_claims_encoder: Final = msgspec.msgpack.Encoder(uuid_format="bytes")
_claims_decoder: Final = msgspec.msgpack.Decoder(TicketClaims)


def encode_payload(claims: TicketClaims) -> bytes:
    return _claims_encoder.encode(claims)


def b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=")


def unb32(text: str) -> bytes:
    return base64.b32decode(text + "=" * (-len(text) % 8))


def assemble(payload: bytes, signature: bytes) -> str:
    return f"{TOKEN_PREFIX}{b32(payload)}.{b32(signature)}"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- the published key set: a JWK set of Ed25519 public keys (RFC 7517, RFC 8037) ---


class Jwk(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    kid: Kid
    x: Annotated[str, msgspec.Meta(min_length=43, max_length=43, pattern=r"^[A-Za-z0-9_-]+$")]
    alg: Literal["EdDSA"] = "EdDSA"
    use: Literal["sig"] = "sig"


class Jwks(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    keys: Annotated[list[Jwk], msgspec.Meta(max_length=limits.ticket_keys_max)]


jwks_decoder: Final = msgspec.json.Decoder(Jwks)
jwks_encoder: Final = msgspec.json.Encoder()


def public_key_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


class KeySet:
    """The verification keys by `kid`: what a scanner keeps, offline, to check tokens."""

    def __init__(self, keys: Mapping[str, Ed25519PublicKey]) -> None:
        if len(keys) > limits.ticket_keys_max:
            raise ValueError(f"at most {limits.ticket_keys_max} ticket keys")
        self.keys = dict(keys)

    @classmethod
    def from_jwks(cls, document: bytes) -> KeySet:
        """The set `GET /v1/tickets/keys` serves. Raises ValueError on anything else."""
        try:
            jwks = jwks_decoder.decode(document)
            return cls(
                {jwk.kid: Ed25519PublicKey.from_public_bytes(unb64url(jwk.x)) for jwk in jwks.keys}
            )
        except (msgspec.DecodeError, binascii.Error) as error:
            raise ValueError(f"not a ticket key set: {error}") from None

    def to_jwks(self) -> Jwks:
        return Jwks(
            keys=[
                Jwk(kty="OKP", crv="Ed25519", kid=kid, x=b64url(public_key_bytes(key)))
                for kid, key in sorted(self.keys.items())
            ]
        )

    def verify(self, token: str) -> TicketClaims:
        """The claims of a token signed under one of these keys, or TicketInvalid."""
        payload, signature = split(token)
        claims = decode_claims(payload)
        key = self.keys.get(claims.kid)
        if key is None:
            raise TicketInvalid("unknown_key", f"no published ticket key {claims.kid!r}")
        try:
            key.verify(signature, SIGNING_CONTEXT + payload)
        except InvalidSignature:
            raise TicketInvalid("bad_signature", "the ticket's signature does not verify") from None
        return claims


def split(token: str) -> tuple[bytes, bytes]:
    """The payload and signature bytes of a token of the right shape, else TicketInvalid."""
    if len(token) > limits.ticket_token_chars_max:
        raise TicketInvalid("malformed", "the ticket token is too long")
    match = _TOKEN_SHAPE.fullmatch(token)
    if match is None:
        raise TicketInvalid("malformed", "not a Tessera ticket token")
    try:
        return unb32(match.group(1)), unb32(match.group(2))
    except binascii.Error:
        raise TicketInvalid("malformed", "the ticket token is not base32") from None


def decode_claims(payload: bytes) -> TicketClaims:
    try:
        return _claims_decoder.decode(payload)
    except msgspec.DecodeError:  # its text could quote the payload
        raise TicketInvalid("malformed", "the ticket's payload is malformed") from None


def peek(token: str) -> TicketClaims:
    """The claims of a well-formed token WITHOUT checking its signature: only for display and
    for choosing what to look up; never a reason to admit anyone."""
    payload, _ = split(token)
    return decode_claims(payload)


# --- the QR code ---


def qr(token: str) -> segno.QRCode:
    """Level M (15% of the symbol may be damaged or covered): a phone screen with a crack or
    glare still scans. Segno picks alphanumeric mode for the token's characters by itself."""
    return segno.make_qr(token, error="m", boost_error=False)


# Pixels per module of the PNG (the email's image): a phone screen shows it well at 5.
QR_SCALE_PX: Final = 5


def qr_png(token: str, scale: int = QR_SCALE_PX) -> bytes:
    out = io.BytesIO()
    qr(token).save(out, kind="png", scale=scale, border=4)
    return out.getvalue()


def qr_svg(token: str) -> bytes:
    out = io.BytesIO()
    qr(token).save(out, kind="svg", scale=4, border=4, xmldecl=False, title="Ticket")
    return out.getvalue()


def new_signing_ring(kid: str) -> str:
    """A fresh TESSERA_TICKET_SIGNING_KEYS value with one key, `kid` (docs/tickets.md):
    `python -c 'from tessera.tickets import new_signing_ring as n; print(n("2026-12"))'`."""
    seed = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return msgspec.json.encode({"current": kid, "private": {kid: b64url(seed)}}).decode()
