"""Fans' tokens from an identity provider (tessera/identity.py, docs/identity.md), verified against
a real JWKS endpoint over HTTP: the local stack's provider (tessera_ops/identity_provider.py)
serving keys from a background thread."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tessera import auth, limits
from tessera.auth import AuthError
from tessera.identity import IdentityConfig, Verifier
from tessera_ops.identity_provider import IdentityServer, KeyRing

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing.generate("ES256")


@pytest.fixture
def provider(ring: KeyRing) -> Iterator[IdentityServer]:
    server = IdentityServer(ring).start()
    try:
        yield server
    finally:
        server.close()


async def verifier(provider: IdentityServer, **config: Any) -> Verifier:
    checker = Verifier(IdentityConfig(jwks_url=provider.jwks_url, **config))
    await checker.refresh()
    return checker


def bearer(token: str) -> str:
    return f"Bearer {token}"


def refused(checker: Verifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        checker.user_id(bearer(token))
    assert token not in str(caught.value), "a refusal never quotes the token"
    return caught.value.code


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
async def test_a_providers_token_is_verified_with_its_published_key(algorithm: str) -> None:
    ring = KeyRing.generate(algorithm)  # type: ignore[arg-type]
    server = IdentityServer(ring).start()
    try:
        checker = await verifier(server)
        assert checker.user_id(bearer(ring.mint("fan-1"))) == "fan-1"
        assert set(checker.keys) == {ring.keys[-1].kid}
    finally:
        server.close()


async def test_claims_beyond_the_ones_tessera_reads_are_tolerated(
    provider: IdentityServer, ring: KeyRing
) -> None:
    checker = await verifier(provider)
    token = ring.mint(
        "fan-2",
        claims={"scope": "openid profile", "email": "f@example.com", "azp": "web", "nbf": 1},
    )
    assert checker.user_id(bearer(token)) == "fan-2"


async def test_issuer_audience_and_subject_are_checked(
    provider: IdentityServer, ring: KeyRing
) -> None:
    checker = await verifier(provider, issuer="https://id.example.com/", audience="tickets")
    good = {"iss": "https://id.example.com/", "aud": "tickets"}
    assert checker.user_id(bearer(ring.mint("fan-3", claims=good))) == "fan-3"
    assert refused(checker, ring.mint("fan-3", claims={**good, "iss": "https://evil/"})) == (
        "token_invalid"
    )
    assert refused(checker, ring.mint("fan-3", claims={**good, "aud": "other"})) == (
        "token_invalid"
    )
    # A subject Tessera cannot use as a user id (spaces, a path) is refused, not stored.
    assert refused(checker, ring.mint("fan-3", claims={**good, "sub": "a b/c"})) == (
        "token_invalid"
    )


async def test_expiry_is_checked_with_the_configured_leeway(
    provider: IdentityServer, ring: KeyRing
) -> None:
    checker = await verifier(provider, leeway_s=60)
    just_expired = ring.mint("fan-4", ttl_s=10, now=time.time() - 40)
    assert checker.user_id(bearer(just_expired)) == "fan-4"
    long_expired = ring.mint("fan-4", ttl_s=10, now=time.time() - 400)
    assert refused(checker, long_expired) == "token_expired"


async def test_a_key_rotation_reaches_the_verifier_by_kid(
    provider: IdentityServer, ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token signed by a key the cache does not have is refused (401) and makes the verifier
    fetch the keys; the fan's retry passes once the new key is in. Old tokens still verify."""
    monkeypatch.setattr(limits, "jwks_refresh_s_min", 0.0)
    checker = await verifier(provider)
    before = ring.mint("fan-5")
    ring.rotate("RS256")
    after = ring.mint("fan-5")
    assert jwt.get_unverified_header(after)["alg"] == "RS256"
    assert refused(checker, after) == "token_invalid"
    assert checker.refreshing is not None
    await checker.refreshing
    assert checker.user_id(bearer(after)) == "fan-5"
    assert checker.user_id(bearer(before)) == "fan-5"


async def test_unknown_keys_do_not_make_the_verifier_hammer_the_provider(
    provider: IdentityServer, ring: KeyRing
) -> None:
    checker = await verifier(provider)
    stranger = KeyRing.generate("ES256")
    for _ in range(50):
        assert refused(checker, stranger.mint("fan-6")) == "token_invalid"
    # The last fetch was just now: within jwks_refresh_s_min no new fetch starts.
    assert checker.refreshing is None


async def test_a_forged_token_is_refused(provider: IdentityServer, ring: KeyRing) -> None:
    checker = await verifier(provider)
    kid = ring.keys[-1].kid
    # Signed by another key under a published kid.
    forger = KeyRing.generate("ES256")
    forged = jwt.encode(
        {"sub": "fan-7", "exp": int(time.time()) + 60, "iss": "tessera", "aud": "tessera"},
        forger.keys[-1].private_pem,
        algorithm="ES256",
        headers={"kid": kid},
    )
    assert refused(checker, forged) == "token_invalid"
    # HS256 keyed with something public (the algorithm-confusion attack) and `alg: none`.
    hs256 = jwt.encode({"sub": "fan-7"}, "x" * 32, algorithm="HS256", headers={"kid": kid})
    assert refused(checker, hs256) == "token_invalid"
    unsigned = jwt.encode({"sub": "fan-7"}, "", algorithm="none", headers={"kid": kid})
    assert refused(checker, unsigned) == "token_invalid"
    # A signature with one character changed for certain.
    good = ring.mint("fan-7")
    head, _, signature = good.rpartition(".")
    tampered = f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"
    assert refused(checker, tampered) == "token_invalid"
    for garbage in ("", "a.b", "a.b.c", "x" * (limits.bearer_token_chars_max + 1)):
        with pytest.raises(AuthError):
            checker.user_id(bearer(garbage))


async def test_required_claims_must_be_there(provider: IdentityServer, ring: KeyRing) -> None:
    checker = await verifier(provider)
    key = ring.keys[-1]
    claims = {"sub": "fan-8", "exp": int(time.time()) + 60, "iss": "tessera", "aud": "tessera"}
    for missing in claims:
        partial = {k: v for k, v in claims.items() if k != missing}
        token = jwt.encode(
            partial, key.private_pem, algorithm=key.algorithm, headers={"kid": key.kid}
        )
        assert refused(checker, token) == "token_invalid", missing


async def test_keys_survive_a_provider_outage(ring: KeyRing) -> None:
    server = IdentityServer(ring).start()
    checker = await verifier(server)
    server.close()
    await checker.refresh()  # fails: logged, the keys kept
    assert checker.user_id(bearer(ring.mint("fan-9"))) == "fan-9"


async def test_the_tiers_hold_only_public_keys(provider: IdentityServer) -> None:
    checker = await verifier(provider)
    for key in checker.keys.values():
        assert not hasattr(key.key, "private_bytes"), "a verifier never holds a private key"


async def test_a_verified_token_is_remembered_until_it_expires(
    provider: IdentityServer, ring: KeyRing
) -> None:
    checker = await verifier(provider)
    token = ring.mint("fan-10", ttl_s=2)
    assert checker.user_id(bearer(token)) == "fan-10"
    assert token in checker.principals
    checker.keys.clear()  # no key: only the remembered verdict can answer now
    assert checker.user_id(bearer(token)) == "fan-10"
    await asyncio.sleep(2.1)
    with pytest.raises(AuthError):
        checker.user_id(bearer(token))


def test_hs256_is_a_development_setting_only() -> None:
    secret = "s" * 32
    IdentityConfig(hs256_secret=secret).check(production=False)
    with pytest.raises(ValueError, match="TESSERA_PRODUCTION"):
        IdentityConfig(hs256_secret=secret).check(production=True)
    with pytest.raises(ValueError, match="exactly one"):
        IdentityConfig().check(production=False)
    with pytest.raises(ValueError, match="exactly one"):
        IdentityConfig(jwks_url="https://id/jwks", hs256_secret=secret).check(production=False)
    IdentityConfig(jwks_url="https://id/jwks").check(production=True)
    with pytest.raises(ValueError, match="at least"):
        IdentityConfig(hs256_secret="short").check(production=False)


def test_the_development_secret_still_verifies_hs256() -> None:
    secret = "d" * 32
    checker = Verifier(IdentityConfig(hs256_secret=secret))
    assert checker.user_id(bearer(auth.mint_token("dev-fan", secret))) == "dev-fan"
    with pytest.raises(AuthError):
        checker.user_id(bearer(KeyRing.generate().mint("dev-fan")))
