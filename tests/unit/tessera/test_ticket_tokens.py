"""Ticket tokens (tessera/tickets.py) and the writer's signing ring (global_writer/tickets.py):
what is signed, what verifies, what is refused, and the key ring's configuration."""

from __future__ import annotations

import json
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from global_writer.tickets import DEV_KID, SigningRing, staff_credentials, staff_name
from tessera import limits
from tessera import tickets as tk
from tessera.web import ApiError

EVENT, ORDER = uuid.uuid4(), uuid.uuid4()


def issue(ring: SigningRing, seats: list[str] | None = None) -> list[str]:
    issued = ring.issue(
        event_id=EVENT, order_id=ORDER, user_id="alice", seats=seats or ["101:AA:12"]
    )
    return [ticket.token for ticket in issued]


def test_a_token_carries_exactly_its_claims_and_fits_a_small_qr_code() -> None:
    ring = SigningRing.parse(tk.new_signing_ring("2026-12"))
    (token,) = issue(ring, ["LONGSECTION1:ROW99:1234"])
    claims = ring.keys.verify(token)
    assert (claims.v, claims.kid, claims.event_id, claims.order_id) == (1, "2026-12", EVENT, ORDER)
    assert (claims.seat, claims.user_id) == ("LONGSECTION1:ROW99:1234", "alice")
    assert token.startswith("T1.")
    assert len(token) < 300
    # Upper-case base32 and dots: the QR code's alphanumeric mode, version 9 at level M.
    symbol = tk.qr(token)
    assert symbol.mode == "alphanumeric"
    assert isinstance(symbol.version, int)
    assert symbol.version <= 10
    assert tk.peek(token) == claims


def test_tampering_another_key_and_junk_are_refused_with_a_reason() -> None:
    ring = SigningRing.parse(tk.new_signing_ring("k1"))
    (token,) = issue(ring)
    prefix, payload, signature = token.split(".")
    flipped = "A" if signature[0] != "A" else "B"
    cases = {
        f"{prefix}.{payload}.{flipped}{signature[1:]}": "bad_signature",
        "T1.AAAA.BBBB": "malformed",
        "": "malformed",
        token.lower(): "malformed",
        token + "A" * limits.ticket_token_chars_max: "malformed",
    }
    for bad, reason in cases.items():
        with pytest.raises(tk.TicketInvalid) as refused:
            ring.keys.verify(bad)
        assert refused.value.reason == reason, bad[:20]
        assert "T1." not in str(refused.value)  # the message never quotes the token
    # Another ring with a key of the same name: the signature does not verify.
    other = SigningRing.parse(tk.new_signing_ring("k1"))
    with pytest.raises(tk.TicketInvalid) as refused:
        other.keys.verify(token)
    assert refused.value.reason == "bad_signature"


def test_rotation_keeps_old_tickets_valid_while_the_old_key_is_published() -> None:
    old = SigningRing.parse(tk.new_signing_ring("2026-06"))
    (old_token,) = issue(old)
    new_seed = tk.b64url(Ed25519PrivateKey.generate().private_bytes_raw())
    old_public = tk.b64url(tk.public_key_bytes(old.keys.keys["2026-06"]))
    rotated = SigningRing.parse(
        json.dumps(
            {
                "current": "2026-12",
                "private": {"2026-12": new_seed},
                "public": {"2026-06": old_public},
            }
        )
    )
    (new_token,) = issue(rotated)
    assert rotated.keys.verify(new_token).kid == "2026-12"
    assert rotated.keys.verify(old_token).kid == "2026-06"
    # What a scanner fetches, round-tripped through the published JWK set.
    published = tk.KeySet.from_jwks(tk.jwks_encoder.encode(rotated.keys.to_jwks()))
    assert published.verify(old_token).kid == "2026-06"
    jwks = json.loads(tk.jwks_encoder.encode(rotated.keys.to_jwks()))
    assert {k["kid"] for k in jwks["keys"]} == {"2026-06", "2026-12"}
    assert all(k["kty"] == "OKP" and k["crv"] == "Ed25519" for k in jwks["keys"])
    assert all("d" not in k for k in jwks["keys"])  # never a private key
    # Once the old key is dropped, its tickets no longer verify.
    dropped = SigningRing.parse(
        json.dumps({"current": "2026-12", "private": {"2026-12": new_seed}})
    )
    with pytest.raises(tk.TicketInvalid) as refused:
        dropped.keys.verify(old_token)
    assert refused.value.reason == "unknown_key"


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '{"current": "a", "private": {}}',
        '{"current": "b", "private": {"a": "' + "A" * 43 + '"}}',
        '{"current": "a", "private": {"a": "short"}}',
        '{"current": "a", "private": {"a": "' + "A" * 43 + '"}, "extra": 1}',
        '{"current": "a b", "private": {"a b": "' + "A" * 43 + '"}}',
    ],
)
def test_a_bad_key_ring_names_its_variable_and_never_a_key(value: str) -> None:
    with pytest.raises(ValueError, match="TESSERA_TICKET_SIGNING_KEYS") as refused:
        SigningRing.parse(value)
    assert "A" * 43 not in str(refused.value)


def test_without_a_ring_only_development_derives_one() -> None:
    with pytest.raises(ValueError, match="TESSERA_TICKET_SIGNING_KEYS"):
        SigningRing.parse("")
    one = SigningRing.parse("", dev_secret="s" * 32)
    two = SigningRing.parse("", dev_secret="s" * 32)
    assert one.current == DEV_KID
    # The same secret gives the same key: every writer of a local stack, across restarts.
    (token,) = issue(one)
    assert two.keys.verify(token).user_id == "alice"


def test_staff_credentials() -> None:
    credentials = staff_credentials(json.dumps({"north": "n" * 32, "south": "s" * 32}))
    assert staff_name("s" * 32, credentials) == "south"
    for wrong in (None, "", "n" * 31, "x" * 32):
        with pytest.raises(ApiError) as refused:
            staff_name(wrong, credentials)
        assert refused.value.status == 401
        assert refused.value.details["reason"] == "staff_key_invalid"
    with pytest.raises(ApiError):
        staff_name("n" * 32, staff_credentials(""))
    for bad in ('{"a": "short"}', '{"a": "' + "k" * 32 + '", "b": "' + "k" * 32 + '"}', "[]"):
        with pytest.raises(ValueError, match="TESSERA_DOOR_STAFF_KEYS"):
            staff_credentials(bad)
