"""The webhook signature (Stripe's scheme) and the endpoint configuration's rules."""

from __future__ import annotations

import hashlib
import hmac

import msgspec
import pytest

from tessera import webhooks
from tessera.webhooks import Endpoint, SignatureError, sign, verify

SECRET = "whsec_0123456789abcdef0123456789abcdef"
BODY = b'{"id":"order.confirmed.1","type":"order.confirmed"}'


def test_sign_is_hmac_sha256_over_timestamp_dot_body() -> None:
    header = sign(SECRET, BODY, 1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_verify_accepts_a_fresh_signature() -> None:
    header = sign(SECRET, BODY, 1_700_000_000)
    assert verify(header, BODY, SECRET, tolerance_s=300, now=1_700_000_100) == 1_700_000_000


@pytest.mark.parametrize(
    ("body", "secret", "now", "reason"),
    [
        (BODY + b" ", SECRET, 1_700_000_000, "does not match"),
        (BODY.replace(b"confirmed", b"refunded"), SECRET, 1_700_000_000, "does not match"),
        (BODY, SECRET + "x", 1_700_000_000, "does not match"),
        (BODY, SECRET, 1_700_000_301, "tolerance"),
        (BODY, SECRET, 1_699_999_000, "tolerance"),
    ],
)
def test_verify_rejects_tampering_and_old_timestamps(
    body: bytes, secret: str, now: float, reason: str
) -> None:
    header = sign(SECRET, BODY, 1_700_000_000)
    with pytest.raises(SignatureError, match=reason):
        verify(header, body, secret, tolerance_s=300, now=now)


@pytest.mark.parametrize("header", ["", "t=abc,v1=00", "v1=00", "t=1700000000", "garbage"])
def test_verify_rejects_malformed_headers(header: str) -> None:
    with pytest.raises(SignatureError):
        verify(header, BODY, SECRET, now=1_700_000_000)


def test_verify_accepts_any_of_several_signatures_while_a_secret_rotates() -> None:
    old = sign("whsec_old_secret_0123456789abcdef", BODY, 1_700_000_000).partition(",")[2]
    header = sign(SECRET, BODY, 1_700_000_000) + "," + old
    assert verify(header, BODY, SECRET, now=1_700_000_000) == 1_700_000_000
    assert verify(header, BODY, "whsec_old_secret_0123456789abcdef", now=1_700_000_000)


def _endpoint(**overrides: object) -> Endpoint:
    raw: dict[str, object] = {"id": "crm", "url": "https://hooks.example.com/t"}
    raw |= {"secret": SECRET, "events": ["order.confirmed"], **overrides}
    return msgspec.convert(raw, Endpoint)


def test_endpoints_accept_https_anywhere_and_http_on_loopback_only() -> None:
    assert _endpoint().url.startswith("https://")
    for url in ("http://127.0.0.1:9000/h", "http://localhost/h", "http://[::1]:80/h"):
        assert _endpoint(url=url).url == url
    with pytest.raises(msgspec.ValidationError, match="https only"):
        _endpoint(url="http://hooks.example.com/t")


@pytest.mark.parametrize(
    "overrides",
    [
        {"url": "ftp://hooks.example.com/t"},
        {"secret": "short"},
        {"events": []},
        {"events": ["order.shipped"]},
        {"id": "has.dot"},
        {"extra": 1},
    ],
)
def test_endpoints_refuse_bad_values(overrides: dict[str, object]) -> None:
    with pytest.raises(msgspec.ValidationError):
        _endpoint(**overrides)


def test_endpoint_ids_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        webhooks.check_endpoints([_endpoint(), _endpoint()])
