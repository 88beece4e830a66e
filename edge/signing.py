"""Signed edge tokens: queue tickets, admission tokens and proof-of-work challenges.

A token is `<kind>.<payload>.<mac>`:

- `kind` names what the token is (`qt` queue ticket, `at` admission token, `pc` challenge);
- `payload` is base64url (no padding) of the kind's msgspec struct, encoded as a JSON array;
- `mac` is base64url of HMAC-SHA256 over `<kind>.<payload>`, keyed with a per-kind key derived
  from the admission secret: `HMAC-SHA256(admission_secret, "tessera-edge-token/v1/<kind>")`.

Kinds are separated twice (a per-kind key and the kind inside the MAC input), so a ticket can
never pass as an admission token or a challenge, even though all three are signed by one secret.

Verification is pure CPU (one HMAC, no Redis), so every edge process checks every token the same
way and the write path's admission check costs microseconds. It runs in a fixed order: the length
bound, the shape, the kind, the MAC (compared in constant time as the exact base64url text, so
no second encoding of the same bytes passes), then the strict decode of the payload
(`forbid_unknown_fields`, `Meta` bounds) and finally expiry. Garbage never reaches the decoder: it
fails on the MAC first. Failures raise `TokenError` with a reason from a closed set, safe to
count and to show.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, TypeAlias, TypeVar

import msgspec

from tessera import auth, limits

# 16 random bytes in base64url: ticket ids and challenge nonces.
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{22}$"
RandomId: TypeAlias = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
Timestamp: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=limits.jwt_timestamp_s_max)]
Difficulty: TypeAlias = Annotated[int, msgspec.Meta(ge=1, le=limits.edge_pow_difficulty_max)]
# The room's epoch: bumped each time the room is switched on (see waiting_room.py).
Epoch: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
# The region whose waiting room issued a ticket or an admission (edge/settings.py `region`).
Region: TypeAlias = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]

TokenReason: TypeAlias = Literal["malformed", "forged", "expired"]

_MAC_CHARS: Final = 43  # base64url of 32 bytes, no padding
_KEY_LABEL: Final = "tessera-edge-token/v1/"


class Kind(StrEnum):
    ticket = "qt"
    admission = "at"
    challenge = "pc"


class QueueTicket(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """A place in one region's queue for one event, for one fan. Valid
    `limits.edge_ticket_ttl_s` from issue."""

    ticket_id: RandomId
    event_id: uuid.UUID
    region: Region
    user_id: auth.UserId
    issued_at: Timestamp


class Admission(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """Permission for one fan to write (holds, orders) on one event, through the edges of the
    region that admitted them, until `expires_at` (each region's room counts its own queue:
    docs/edge-waiting-room.md, "Regions")."""

    event_id: uuid.UUID
    region: Region
    user_id: auth.UserId
    ticket_id: RandomId
    epoch: Epoch
    expires_at: Timestamp


class Challenge(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    """A proof-of-work puzzle for joining one event's queue (edge/pow.py)."""

    event_id: uuid.UUID
    nonce: RandomId
    difficulty: Difficulty
    expires_at: Timestamp


Payload = TypeVar("Payload", QueueTicket, Admission, Challenge)


class TokenError(Exception):
    """A token that does not verify. `reason` is machine-readable; the message is safe to show."""

    def __init__(self, reason: TokenReason, message: str) -> None:
        super().__init__(message)
        self.reason: TokenReason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_ENCODER: Final = msgspec.json.Encoder(uuid_format="hex")
_DECODERS: Final[dict[Kind, msgspec.json.Decoder[Any]]] = {
    Kind.ticket: msgspec.json.Decoder(QueueTicket),
    Kind.admission: msgspec.json.Decoder(Admission),
    Kind.challenge: msgspec.json.Decoder(Challenge),
}
_KINDS: Final = {QueueTicket: Kind.ticket, Admission: Kind.admission, Challenge: Kind.challenge}


class Signer:
    """Signs and verifies edge tokens with the admission secret (`Settings.admission_secret`)."""

    def __init__(self, secret: str) -> None:
        auth.check_secret(secret)  # ValueError: a deployment error, raised at start-up
        self._keys = {
            kind: hmac.digest(secret.encode(), f"{_KEY_LABEL}{kind.value}".encode(), "sha256")
            for kind in Kind
        }

    def _mac(self, kind: Kind, signed_part: str) -> str:
        return _b64(hmac.digest(self._keys[kind], signed_part.encode("ascii"), "sha256"))

    def sign(self, payload: QueueTicket | Admission | Challenge) -> str:
        kind = _KINDS[type(payload)]
        signed_part = f"{kind.value}.{_b64(_ENCODER.encode(payload))}"
        token = f"{signed_part}.{self._mac(kind, signed_part)}"
        if len(token) > limits.edge_signed_token_chars_max:
            raise ValueError(f"a {kind.name} token would exceed the token length bound")
        return token

    def _verify(self, kind: Kind, token: str, payload_type: type[Payload]) -> Payload:
        if len(token) > limits.edge_signed_token_chars_max:
            raise TokenError("malformed", "the token is too long")
        parts = token.split(".")
        if len(parts) != 3 or not token.isascii():
            raise TokenError("malformed", "the token is not a signed edge token")
        given_kind, body, mac = parts
        if given_kind != kind.value:
            raise TokenError("malformed", f"the token is not a {kind.name} token")
        expected = self._mac(kind, f"{given_kind}.{body}")
        if len(mac) != _MAC_CHARS or not hmac.compare_digest(expected.encode(), mac.encode()):
            raise TokenError("forged", "the token's signature does not verify")
        try:
            decoded = _DECODERS[kind].decode(_unb64(body))
        except (msgspec.DecodeError, binascii.Error, ValueError):
            # Signed by us yet undecodable: another deployment's format sharing the secret.
            raise TokenError("malformed", "the token's payload is malformed") from None
        assert isinstance(decoded, payload_type)
        return decoded

    def verify_ticket(self, token: str, now: float) -> QueueTicket:
        ticket = self._verify(Kind.ticket, token, QueueTicket)
        if now >= ticket.issued_at + limits.edge_ticket_ttl_s:
            raise TokenError("expired", "the queue ticket has expired")
        return ticket

    def verify_admission(self, token: str, now: float) -> Admission:
        admission = self._verify(Kind.admission, token, Admission)
        if now >= admission.expires_at:
            raise TokenError("expired", "the admission token has expired")
        return admission

    def verify_challenge(self, token: str, now: float) -> Challenge:
        challenge = self._verify(Kind.challenge, token, Challenge)
        if now >= challenge.expires_at:
            raise TokenError("expired", "the challenge has expired")
        return challenge
