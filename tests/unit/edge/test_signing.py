"""Edge tokens (edge/signing.py): roundtrip, every byte of a token matters, kinds cannot stand in
for each other, expiry, length bound, strict payloads."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import msgspec
import pytest

from edge.signing import Admission, Challenge, Kind, QueueTicket, Signer, TokenError
from tessera import limits

SECRET = "s" * 40
NOW = 1_700_000_000
EVENT = uuid.UUID("3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")


def ticket() -> QueueTicket:
    return QueueTicket("AAAAAAAAAAAAAAAAAAAAAA", EVENT, "eu-west-1", "alice", NOW)


def admission(expires_at: int = NOW + 900) -> Admission:
    return Admission(EVENT, "eu-west-1", "alice", "AAAAAAAAAAAAAAAAAAAAAA", 1, expires_at)


def challenge(expires_at: int = NOW + 300) -> Challenge:
    return Challenge(EVENT, "BBBBBBBBBBBBBBBBBBBBBB", 18, expires_at)


def test_roundtrip_each_kind() -> None:
    signer = Signer(SECRET)
    assert signer.verify_ticket(signer.sign(ticket()), NOW) == ticket()
    assert signer.verify_admission(signer.sign(admission()), NOW) == admission()
    assert signer.verify_challenge(signer.sign(challenge()), NOW) == challenge()


def test_tokens_are_compact_and_deterministic() -> None:
    signer = Signer(SECRET)
    token = signer.sign(ticket())
    assert token == signer.sign(ticket())
    assert token.startswith("qt.")
    assert len(token) < 200
    assert signer.sign(admission()).startswith("at.")
    assert signer.sign(challenge()).startswith("pc.")


def test_changing_any_character_is_rejected() -> None:
    signer = Signer(SECRET)
    token = signer.sign(admission())
    for index, char in enumerate(token):
        for replacement in {"A", "b", "0", "-", "_", "."} - {char}:
            tampered = token[:index] + replacement + token[index + 1 :]
            with pytest.raises(TokenError) as raised:
                signer.verify_admission(tampered, NOW)
            assert raised.value.reason in ("malformed", "forged")


def test_truncated_or_extended_tokens_are_rejected() -> None:
    signer = Signer(SECRET)
    token = signer.sign(ticket())
    for cut in range(len(token)):
        with pytest.raises(TokenError):
            signer.verify_ticket(token[:cut], NOW)
    for suffix in ("A", "=", ".", "==", "\x00", "é"):
        with pytest.raises(TokenError):
            signer.verify_ticket(token + suffix, NOW)


def test_another_secret_is_forged() -> None:
    token = Signer("t" * 40).sign(admission())
    with pytest.raises(TokenError) as raised:
        Signer(SECRET).verify_admission(token, NOW)
    assert raised.value.reason == "forged"


def test_a_kind_cannot_pass_as_another() -> None:
    signer = Signer(SECRET)
    ticket_token = signer.sign(ticket())
    with pytest.raises(TokenError) as raised:
        signer.verify_admission(ticket_token, NOW)
    assert raised.value.reason == "malformed"
    # Relabelled with the right kind, the MAC (keyed per kind) no longer verifies.
    relabelled = "at" + ticket_token[2:]
    with pytest.raises(TokenError) as raised:
        signer.verify_admission(relabelled, NOW)
    assert raised.value.reason == "forged"
    with pytest.raises(TokenError):
        signer.verify_challenge("pc" + signer.sign(admission())[2:], NOW)


def test_a_mac_under_the_raw_secret_does_not_verify() -> None:
    """Per-kind keys: a MAC made with the edge secret itself (as a careless signer would) fails."""
    signer = Signer(SECRET)
    body = base64.urlsafe_b64encode(msgspec.json.encode(admission())).rstrip(b"=").decode()
    signed_part = f"{Kind.admission.value}.{body}"
    mac = hmac.digest(SECRET.encode(), signed_part.encode(), hashlib.sha256)
    token = f"{signed_part}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(TokenError) as raised:
        signer.verify_admission(token, NOW)
    assert raised.value.reason == "forged"


def test_expiry() -> None:
    signer = Signer(SECRET)
    token = signer.sign(admission(expires_at=NOW + 10))
    signer.verify_admission(token, NOW + 9.999)
    for later in (NOW + 10, NOW + 11, NOW + 10**6):
        with pytest.raises(TokenError) as raised:
            signer.verify_admission(token, later)
        assert raised.value.reason == "expired"
    with pytest.raises(TokenError) as raised:
        signer.verify_challenge(signer.sign(challenge(expires_at=NOW)), NOW)
    assert raised.value.reason == "expired"
    ticket_token = signer.sign(ticket())
    signer.verify_ticket(ticket_token, NOW + limits.edge_ticket_ttl_s - 1)
    with pytest.raises(TokenError) as raised:
        signer.verify_ticket(ticket_token, NOW + limits.edge_ticket_ttl_s)
    assert raised.value.reason == "expired"


def test_oversize_tokens_are_rejected_before_any_work() -> None:
    signer = Signer(SECRET)
    token = signer.sign(ticket())
    padded = token + "A" * (limits.edge_signed_token_chars_max - len(token) + 1)
    with pytest.raises(TokenError) as raised:
        signer.verify_ticket(padded, NOW)
    assert raised.value.reason == "malformed"
    assert "too long" in str(raised.value)


def test_signed_but_out_of_bounds_payloads_are_malformed() -> None:
    """A payload that verifies but breaks the struct's bounds (a format another deployment
    sharing the secret could produce) is refused by the strict decoder."""
    signer = Signer(SECRET)
    for payload in (
        ["short", EVENT.hex, "alice", NOW],  # ticket id shape
        ["AAAAAAAAAAAAAAAAAAAAAA", EVENT.hex, "bad user!", NOW],
        ["AAAAAAAAAAAAAAAAAAAAAA", EVENT.hex, "alice", -1],
        ["AAAAAAAAAAAAAAAAAAAAAA", EVENT.hex, "alice", NOW, "extra"],
        {"ticket_id": "AAAAAAAAAAAAAAAAAAAAAA"},
    ):
        body = base64.urlsafe_b64encode(msgspec.json.encode(payload)).rstrip(b"=").decode()
        token = f"qt.{body}.{signer._mac(Kind.ticket, f'qt.{body}')}"
        with pytest.raises(TokenError) as raised:
            signer.verify_ticket(token, NOW)
        assert raised.value.reason == "malformed"


def test_garbage_is_rejected() -> None:
    signer = Signer(SECRET)
    for garbage in ("", ".", "..", "qt..", "qt.e30.", "a.b.c.d", "qt.\u00e9.x", " " * 50):
        with pytest.raises(TokenError):
            signer.verify_ticket(garbage, NOW)


def test_short_secret_is_a_deployment_error() -> None:
    with pytest.raises(ValueError, match="at least"):
        Signer("short")
