"""`tessera token`: dev tokens signed with the running stack's identity provider keys (its
stack.json names the key ring), or HS256 with the secret from the environment when it is set."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

from tessera import limits
from tessera.auth import JWT_SECRET_ENV, verify_token
from tessera.identity import IdentityConfig, Verifier
from tessera_ops.cli import main
from tessera_ops.identity_provider import IdentityServer, KeyRing
from tessera_ops.stackfile import Stack, write_stack

REPO = Path(__file__).resolve().parents[3]
SECRET = "cli-test-secret-0123456789-abcdefghij"


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(JWT_SECRET_ENV, SECRET)
    return SECRET


def lifetime_s(token: str) -> int:
    payload = jwt.decode(token, SECRET, algorithms=["HS256"], audience="tessera")
    return int(payload["exp"]) - int(payload["iat"])


def test_prints_a_token_that_verifies(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    before = time.time()
    assert main(["token", "--user", "fan-42"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert out == token + "\n"
    assert err == ""
    principal = verify_token(token, secret)
    assert principal.user_id == "fan-42"
    assert principal.expires_at >= int(before) + limits.jwt_default_ttl_s
    assert lifetime_s(token) == limits.jwt_default_ttl_s


def test_ttl_option_sets_the_lifetime(secret: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--user", "fan-42", "--ttl-s", "60"]) == 0
    assert lifetime_s(capsys.readouterr().out.strip()) == 60


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_a_missing_secret_is_a_usage_error(
    value: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path))  # no stack running there either
    if value is None:
        monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(JWT_SECRET_ENV, value)
    assert main(["token", "--user", "fan-42"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"tessera token: {JWT_SECRET_ENV} is not set and no stack is running")


def test_the_running_stacks_secret_is_used_when_the_environment_has_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "s" * 40
    stack = Stack(
        data_dir=str(tmp_path),
        database_url="postgresql://x",
        redis_url="redis://x",
        writer_url="http://x",
        admin_key="a" * 32,
        jwt_secret=secret,
        admission_secret="e" * 32,
        event_id="e",
        regions=[],
        supervisor_pid=1,
    )
    write_stack(stack)
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    assert main(["token", "--user", "alice"]) == 0
    assert verify_token(capsys.readouterr().out.strip(), secret).user_id == "alice"


def test_a_short_secret_is_a_usage_error_that_does_not_echo_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(JWT_SECRET_ENV, "hunter2-hunter2")
    assert main(["token", "--user", "fan-42"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert f"at least {limits.jwt_secret_bytes_min} bytes" in err
    assert JWT_SECRET_ENV in err
    assert "hunter2" not in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--user", "has space"], "user id"),
        (["--user", "x" * (limits.user_id_chars_max + 1)], "user id"),
        (["--user", "fan", "--ttl-s", "0"], "ttl_s"),
        (["--user", "fan", "--ttl-s", str(limits.jwt_ttl_s_max + 1)], "ttl_s"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", *argv]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err
    assert secret not in err


@pytest.mark.parametrize("argv", [[], ["--user"], ["--user", "fan", "--ttl-s", "soon"]])
def test_malformed_command_lines_exit_2(argv: list[str], secret: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["token", *argv])
    assert info.value.code == 2


def test_token_from_the_module_entry_point() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), JWT_SECRET_ENV: SECRET}
    result = subprocess.run(
        [sys.executable, "-m", "tessera_ops.cli", "token", "--user", "fan-7", "--ttl-s", "90"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert verify_token(result.stdout.strip(), SECRET).user_id == "fan-7"
    assert lifetime_s(result.stdout.strip()) == 90


def a_stack(data_dir: Path, *, identity_keys: str = "", jwt_secret: str = "") -> Stack:
    return Stack(
        data_dir=str(data_dir),
        database_url="postgresql://x",
        redis_url="redis://x",
        writer_url="http://x",
        admin_key="a" * 32,
        admission_secret="e" * 32,
        event_id="e",
        regions=[],
        supervisor_pid=1,
        identity_keys=identity_keys,
        jwt_secret=jwt_secret,
    )


def test_the_running_stacks_identity_keys_sign_and_its_provider_vouches(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ring = KeyRing.generate("ES256")
    keys = tmp_path / "identity" / "keys.json"
    ring.save(keys)
    (tmp_path / "elsewhere").mkdir()
    write_stack(a_stack(tmp_path / "elsewhere", identity_keys=str(keys)))
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    monkeypatch.setenv("TESSERA_DATA_DIR", str(tmp_path))  # not where the stack runs
    assert (
        main(
            [
                "token",
                "--user",
                "alice",
                "--ttl-s",
                "120",
                "--data-dir",
                str(tmp_path / "elsewhere"),
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert jwt.get_unverified_header(token)["kid"] == ring.keys[-1].kid
    # Verified as the tiers verify: against the provider's published keys.
    server = IdentityServer(keys).start()
    try:
        verifier = Verifier(IdentityConfig(jwks_url=server.jwks_url))
        asyncio.run(verifier.refresh())
        principal = verifier.verify(token)
        assert principal.user_id == "alice"
        assert 115 <= principal.expires_at - time.time() <= 121
    finally:
        server.close()
    with pytest.raises(jwt.InvalidAlgorithmError):  # not an HS256 token: ES256
        jwt.decode(token, SECRET, algorithms=["HS256"], audience="tessera")


def test_an_explicit_secret_wins_over_the_running_stack(
    secret: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    keys = tmp_path / "keys.json"
    KeyRing.generate().save(keys)
    write_stack(a_stack(tmp_path, identity_keys=str(keys)))
    assert main(["token", "--user", "bob", "--data-dir", str(tmp_path)]) == 0
    assert verify_token(capsys.readouterr().out.strip(), secret).user_id == "bob"


def test_a_stack_whose_key_file_is_gone_is_no_running_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_stack(a_stack(tmp_path, identity_keys=str(tmp_path / "missing.json")))
    monkeypatch.delenv(JWT_SECRET_ENV, raising=False)
    assert main(["token", "--user", "bob", "--data-dir", str(tmp_path)]) == 2
    assert "no stack is running" in capsys.readouterr().err
