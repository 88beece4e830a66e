"""Fan JWTs and the admin key: the round trip, and every way a token is refused."""

from __future__ import annotations

import base64
import json

import jwt
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera import limits
from tessera.auth import (
    AuthError,
    Principal,
    bearer_token,
    check_admin_key,
    check_secret,
    is_user_id,
    mint_token,
    verify_token,
)

SECRET = "s3cret-for-unit-tests-only-0123456789"
OTHER_SECRET = "another-secret-also-long-enough-0123456"
NOW = 1_700_000_000
TTL = 600


def claims(**overrides: object) -> dict[str, object]:
    """Well-formed claims, minus any key overridden to None, plus any other override."""
    base: dict[str, object] = {
        "sub": "fan-1",
        "iat": NOW,
        "exp": NOW + TTL,
        "aud": "tessera",
        "iss": "tessera",
    }
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def sign(payload: dict[str, object], *, secret: str = SECRET, alg: str = "HS256") -> str:
    """A token with exactly `payload`, signed like an attacker or a foreign issuer would."""
    return jwt.PyJWS().encode(json.dumps(payload).encode(), secret, algorithm=alg)


def b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def rejection(token: str, *, now: float = NOW + 1, secret: str = SECRET) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verify_token(token, secret, now=now)
    message = str(caught.value)
    assert secret not in message
    assert not token or token not in message
    return caught.value


# --- the round trip ---


def test_a_minted_token_verifies_to_its_user_and_expiry() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW)
    assert verify_token(token, SECRET, now=NOW) == Principal(user_id="fan-1", expires_at=NOW + TTL)
    assert verify_token(token, SECRET, now=NOW + TTL - 1).user_id == "fan-1"


def test_a_token_carries_exactly_the_documented_claims() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW + 0.9)  # iat is whole seconds
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_signature": False})
    assert payload == claims()


def test_defaults_use_the_wall_clock_and_the_default_ttl() -> None:
    principal = verify_token(mint_token("fan-1", SECRET), SECRET)
    payload = jwt.decode(
        mint_token("fan-1", SECRET), options={"verify_signature": False}, algorithms=["HS256"]
    )
    assert payload["exp"] - payload["iat"] == limits.jwt_default_ttl_s
    assert principal.user_id == "fan-1"


def test_principal_is_immutable() -> None:
    principal = Principal(user_id="fan-1", expires_at=NOW)
    with pytest.raises(AttributeError):
        principal.user_id = "someone-else"  # type: ignore[misc]


@given(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True))
def test_any_valid_user_id_round_trips(user_id: str) -> None:
    token = mint_token(user_id, SECRET, ttl_s=TTL, now=NOW)
    assert verify_token(token, SECRET, now=NOW).user_id == user_id


@given(st.text(max_size=80).filter(lambda text: not is_user_id(text)))
def test_mint_refuses_any_invalid_user_id(user_id: str) -> None:
    with pytest.raises(ValueError, match="user id"):
        mint_token(user_id, SECRET, now=NOW)


@pytest.mark.parametrize("ttl_s", [0, -1, limits.jwt_ttl_s_max + 1])
def test_mint_refuses_a_ttl_out_of_range(ttl_s: int) -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        mint_token("fan-1", SECRET, ttl_s=ttl_s, now=NOW)


def test_mint_accepts_the_longest_ttl() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=limits.jwt_ttl_s_max, now=NOW)
    assert verify_token(token, SECRET, now=NOW).expires_at == NOW + limits.jwt_ttl_s_max


@pytest.mark.parametrize("now", [-1.0, float(limits.jwt_timestamp_s_max)])
def test_mint_refuses_a_clock_outside_the_claim_range(now: float) -> None:
    with pytest.raises(ValueError, match="now"):
        mint_token("fan-1", SECRET, now=now)


# --- missing and expired ---


def test_an_empty_token_is_missing() -> None:
    assert rejection("").code == "token_missing"


def test_a_token_expires_at_exp_exactly() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW)
    assert rejection(token, now=NOW + TTL).code == "token_expired"
    assert rejection(token, now=NOW + 10 * TTL).code == "token_expired"


def test_a_token_issued_in_the_future_is_not_valid_yet() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW + limits.jwt_clock_skew_s + 1)
    error = rejection(token, now=NOW)
    assert (error.code, str(error)) == ("token_invalid", "the token is not valid yet")


def test_clock_skew_within_the_bound_is_tolerated() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW + limits.jwt_clock_skew_s)
    assert verify_token(token, SECRET, now=NOW).user_id == "fan-1"


# --- algorithms and signatures ---


def test_alg_none_is_refused() -> None:
    unsigned = jwt.PyJWS().encode(json.dumps(claims()).encode(), "", algorithm="none")
    assert unsigned.endswith(".")
    assert rejection(unsigned).code == "token_invalid"


def test_alg_none_header_on_a_real_signature_is_refused() -> None:
    genuine = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW)
    _, payload, signature = genuine.split(".")
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}"
    assert rejection(forged).code == "token_invalid"


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_algorithms_are_refused_even_with_the_right_secret(alg: str) -> None:
    long_secret = SECRET * 2  # long enough for HS512, so PyJWT signs without a warning
    error = rejection(sign(claims(), alg=alg, secret=long_secret), secret=long_secret)
    assert (error.code, str(error)) == ("token_invalid", "the token is not signed with HS256")


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = mint_token("fan-1", OTHER_SECRET, ttl_s=TTL, now=NOW)
    error = rejection(token)
    assert (error.code, str(error)) == ("token_invalid", "the token's signature does not verify")


def test_a_payload_swapped_under_a_genuine_signature_is_refused() -> None:
    genuine = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW)
    header, _, signature = genuine.split(".")
    forged = f"{header}.{b64(claims(sub='admin'))}.{signature}"
    assert rejection(forged).code == "token_invalid"


def test_a_flipped_signature_character_is_refused() -> None:
    token = mint_token("fan-1", SECRET, ttl_s=TTL, now=NOW)
    header, payload, signature = token.split(".")
    middle = len(signature) // 2  # not the last character: its low bits are base64 padding
    flipped = (
        signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    )
    assert rejection(f"{header}.{payload}.{flipped}").code == "token_invalid"


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b", "a.b.c.d", "a.b.c", "ey J.x.y", "é.é.é", "a..c", ".b.c"],
    ids=repr,
)
def test_malformed_tokens_are_refused(token: str) -> None:
    assert rejection(token).code == "token_invalid"


def test_an_over_long_token_is_refused_before_any_decoding() -> None:
    token = "a." + "b" * limits.bearer_token_chars_max + ".c"
    error = rejection(token)
    assert (error.code, str(error)) == ("token_invalid", "the token is too long")


# --- claims ---


@pytest.mark.parametrize(
    "payload",
    [
        claims(aud="somebody-else"),
        claims(aud=["tessera"]),  # exactly the string we mint, never a list
        claims(iss="evil"),
        claims(exp=None),
        claims(iat=None),
        claims(sub=None),
        claims(aud=None),
        claims(iss=None),
        claims(exp=float(NOW + TTL)),
        claims(exp=True),
        claims(iat="1700000000"),
        claims(iat=-1),
        claims(exp=limits.jwt_timestamp_s_max + 1),
        claims(nbf=NOW),  # claims we never mint are refused, not ignored
        claims(admin=True),
    ],
    ids=repr,
)
def test_tokens_with_wrong_or_missing_claims_are_refused(payload: dict[str, object]) -> None:
    error = rejection(sign(payload))
    assert error.code == "token_invalid"


@pytest.mark.parametrize("sub", ["", "a" * (limits.user_id_chars_max + 1), "a b", "fän", "a/b", 7])
def test_a_bad_subject_is_refused(sub: object) -> None:
    assert rejection(sign(claims(sub=sub))).code == "token_invalid"


@pytest.mark.parametrize("exp", [NOW, NOW - 1, NOW + limits.jwt_ttl_s_max + 1])
def test_a_lifetime_out_of_range_is_refused(exp: int) -> None:
    error = rejection(sign(claims(exp=exp)), now=NOW)
    assert (error.code, str(error)) == ("token_invalid", "the token's lifetime is out of range")


def test_a_payload_that_is_not_a_json_object_is_refused() -> None:
    token = jwt.PyJWS().encode(msgspec.json.encode([1, 2]), SECRET, algorithm="HS256")
    assert rejection(token).code == "token_invalid"


@given(st.text(max_size=300))
def test_arbitrary_text_is_refused_with_auth_error_only(text: str) -> None:
    with pytest.raises(AuthError):
        verify_token(text, SECRET, now=NOW)


# --- the bearer header ---


def test_bearer_token_extracts_the_token_case_insensitively() -> None:
    assert bearer_token("Bearer abc.def.ghi") == "abc.def.ghi"
    assert bearer_token("bearer   abc.def.ghi ") == "abc.def.ghi"


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   "])
def test_a_missing_bearer_token_is_missing(header: str | None) -> None:
    with pytest.raises(AuthError) as caught:
        bearer_token(header)
    assert caught.value.code == "token_missing"


def test_another_authorization_scheme_is_invalid() -> None:
    with pytest.raises(AuthError) as caught:
        bearer_token("Basic dXNlcjpwYXNz")
    assert caught.value.code == "token_invalid"
    assert "dXNlcjpwYXNz" not in str(caught.value)


# --- secrets and the admin key ---


def test_check_secret_counts_bytes_not_characters() -> None:
    check_secret("x" * limits.jwt_secret_bytes_min)
    check_secret("é" * (limits.jwt_secret_bytes_min // 2))  # two bytes each in UTF-8
    with pytest.raises(ValueError, match="at least 32 bytes") as caught:
        check_secret("y" * (limits.jwt_secret_bytes_min - 1))
    assert "yyy" not in str(caught.value)


def test_check_secret_refuses_text_that_is_not_utf8() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        check_secret("\udcff" * limits.jwt_secret_bytes_min)  # os.environ's undecodable bytes


def test_a_short_secret_is_refused_by_mint_and_verify() -> None:
    token = mint_token("fan-1", SECRET, now=NOW)
    with pytest.raises(ValueError, match="secret"):
        mint_token("fan-1", "short", now=NOW)
    with pytest.raises(ValueError, match="secret"):
        verify_token(token, "short", now=NOW)


ADMIN_KEY = "admin-key-for-unit-tests-0123456789abcdef"


def test_the_right_admin_key_passes() -> None:
    check_admin_key(ADMIN_KEY, ADMIN_KEY)


@pytest.mark.parametrize(
    "given",
    [None, "", ADMIN_KEY[:-1], ADMIN_KEY + "x", ADMIN_KEY.upper(), "ключ", "\udc80"],
    ids=repr,
)
def test_a_wrong_admin_key_is_refused(given: str | None) -> None:
    with pytest.raises(AuthError) as caught:
        check_admin_key(given, ADMIN_KEY)
    assert caught.value.code == "admin_key_invalid"
    assert ADMIN_KEY not in str(caught.value)


def test_a_short_configured_admin_key_is_a_deployment_error() -> None:
    with pytest.raises(ValueError, match="secret"):
        check_admin_key("", "")
