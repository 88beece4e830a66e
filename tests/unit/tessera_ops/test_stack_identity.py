"""The local stack's identity, without a whole stack: the key ring `tessera up` makes once and
keeps (owner-only), the identity provider it starts as a supervised process (real: its JWKS
over HTTP, a verifier as the tiers have, a SIGKILL and a restart), the tiers' environment (a
JWKS URL, never an HS256 secret), `stackfile.fan_minter`, and stack.json written 0600."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from tessera import auth
from tessera.auth import AuthError
from tessera.identity import IdentityConfig, Verifier
from tessera_ops import stack, stackfile
from tessera_ops.identity_provider import JWKS_PATH, IdentityServer, KeyRing
from tessera_ops.servers import ServerStartError

SECRET = "stack-identity-test-secret-" + "s" * 32


def a_stack(data_dir: Path, *, identity_keys: str = "", jwt_secret: str = "") -> stackfile.Stack:
    return stackfile.Stack(
        data_dir=str(data_dir),
        database_url="postgresql://127.0.0.1:1/tessera",
        redis_url="redis://127.0.0.1:1/0",
        writer_url="http://127.0.0.1:1",
        admin_key="a" * 32,
        admission_secret="e" * 32,
        event_id="ev",
        regions=[],
        supervisor_pid=os.getpid(),
        identity_keys=identity_keys,
        jwt_secret=jwt_secret,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def verifier_for(jwks_url: str) -> Verifier:
    checker = Verifier(IdentityConfig(jwks_url=jwks_url))
    asyncio.run(checker.refresh())
    return checker


# --- stack.json ---


def test_the_stack_file_is_readable_by_its_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    # A leftover temporary file of a crashed writer, world-readable: not reused with its mode.
    (tmp_path / f".stack.json.{os.getpid()}.tmp").write_bytes(b"old")
    (tmp_path / f".stack.json.{os.getpid()}.tmp").chmod(0o644)
    before = os.umask(0)
    try:
        path = stackfile.write_stack(a_stack(tmp_path, jwt_secret=SECRET))
        assert mode(path) == 0o600
        stackfile.write_stack(a_stack(tmp_path, identity_keys="/k.json"))  # a rewrite too
    finally:
        os.umask(before)
    assert mode(path) == 0o600
    assert stackfile.read_stack(tmp_path).identity_keys == "/k.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.json"]


def test_an_older_stack_file_without_identity_fields_still_reads(tmp_path: Path) -> None:
    data = msgspec.json.encode(a_stack(tmp_path))
    legacy = data.replace(b'"identity_keys":"",', b"").replace(b'"idp_url":null,', b"")
    assert b"identity_keys" not in legacy
    assert msgspec.json.decode(legacy, type=stackfile.Stack).jwt_secret == ""


# --- fan_minter ---


def test_fan_tokens_come_from_the_key_ring_when_the_stack_has_one(tmp_path: Path) -> None:
    ring = KeyRing.generate("ES256")
    keys = tmp_path / "keys.json"
    ring.save(keys)
    # The key ring wins over a secret (a stack described with both verifies with the ring).
    mint = stackfile.fan_minter(a_stack(tmp_path, identity_keys=str(keys), jwt_secret=SECRET))
    token = mint("fan-1")
    with pytest.raises(AuthError):
        auth.verify_token(token, SECRET)
    server = IdentityServer(keys).start()
    try:
        assert verifier_for(server.jwks_url).user_id(f"Bearer {token}") == "fan-1"
    finally:
        server.close()


def test_fan_tokens_fall_back_to_the_hs256_secret_and_need_one_or_the_other(
    tmp_path: Path,
) -> None:
    mint = stackfile.fan_minter(a_stack(tmp_path, jwt_secret=SECRET), ttl_s=60)
    principal = auth.verify_token(mint("fan-2"), SECRET)
    assert principal.user_id == "fan-2"
    assert principal.expires_at - time.time() <= 60
    with pytest.raises(ValueError, match="no identity provider keys and no HS256 secret"):
        stackfile.fan_minter(a_stack(tmp_path))
    with pytest.raises(FileNotFoundError):
        stackfile.fan_minter(a_stack(tmp_path, identity_keys=str(tmp_path / "gone.json")))


# --- the key ring tessera up keeps ---


def test_the_key_ring_is_made_once_owner_only_and_reused(tmp_path: Path) -> None:
    path = stack.identity_ring(tmp_path)
    assert path == tmp_path / "identity" / "keys.json"
    assert mode(path) == 0o600
    first = KeyRing.load(path)
    assert [key.algorithm for key in first.keys] == ["ES256"]
    path.chmod(0o644)  # someone copied it around: tightened again at the next start
    again = stack.identity_ring(tmp_path)
    assert KeyRing.load(again) == first
    assert mode(again) == 0o600


def test_a_broken_key_ring_stops_the_start_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "identity" / "keys.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(ServerStartError, match=r"keys\.json: not a key ring"):
        stack.identity_ring(tmp_path)


# --- the provider as a supervised service ---


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[stack.Supervisor]:
    supervisor = stack.Supervisor(tmp_path)
    yield supervisor
    supervisor.stop_all()


def test_the_provider_serves_the_rings_keys_and_comes_back_after_a_kill(
    sup: stack.Supervisor, tmp_path: Path
) -> None:
    idp, env = stack.start_identity(sup, tmp_path / "services", tmp_path)
    # The tiers are told where the public keys are, and get no HS256 secret (an empty value
    # overrides one the shell running `tessera up` may have exported).
    assert env == {
        "TESSERA_JWKS_URL": idp.url + JWKS_PATH,
        "TESSERA_JWT_ISSUER": "tessera",
        "TESSERA_JWT_AUDIENCE": "tessera",
        "TESSERA_JWT_SECRET": "",
    }
    assert [child.name for child in sup.children] == ["idp"]
    ring = KeyRing.load(tmp_path / "identity" / "keys.json")
    published = httpx.get(env["TESSERA_JWKS_URL"], timeout=5).json()["keys"]
    assert [key["kid"] for key in published] == [key.kid for key in ring.keys]
    assert all("d" not in key for key in published), "only public keys are published"
    checker = verifier_for(env["TESSERA_JWKS_URL"])
    assert checker.user_id(f"Bearer {ring.mint('fan-3')}") == "fan-3"
    with pytest.raises(AuthError):
        checker.user_id(f"Bearer {KeyRing.generate().mint('fan-3')}")
    answer = httpx.post(f"{idp.url}/token", json={"user_id": "fan-4"}, timeout=5)
    assert checker.user_id(f"Bearer {answer.json()['token']}") == "fan-4"

    old = idp.pid
    os.kill(old, signal.SIGKILL)
    child = sup.children[0]
    child.policy = stack.RestartPolicy(backoff_s_min=0.05, backoff_s_max=0.1)
    deadline = time.monotonic() + 30
    while not (child.state == "running" and child.restarts == 1):
        sup.check()
        assert time.monotonic() < deadline, "the provider did not come back"
        time.sleep(0.05)
    assert idp.pid != old
    # Same port, same key file: the tiers' JWKS URL and every token minted earlier still hold.
    again = verifier_for(env["TESSERA_JWKS_URL"])
    assert again.user_id(f"Bearer {ring.mint('fan-5')}") == "fan-5"
