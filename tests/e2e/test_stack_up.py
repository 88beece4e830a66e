"""`tessera up` as a user runs it: a subprocess that starts everything on free ports, is ready
within a minute, sells through an edge with the sale visible in both regions, notices a writer
killed under it, says so and brings it back (`tessera status` shows it), and `tessera down`
leaves no process behind. Fans' tokens are the local identity provider's, as in production:
the tiers verify them against its JWKS, `tessera token` and the edge's dev tokens come from its
key ring, and a token from any other key ring is refused."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import msgspec
import pytest

from tessera_ops.identity_provider import KeyRing
from tessera_ops.stack import pid_alive
from tessera_ops.stackfile import ServiceStatus, Stack, fan_minter, read_stack

READY_WITHIN_S = 60.0
# The writer's restart: the first backoff (0.5 s), migrations, connections: about 2 s here.
RESTARTED_WITHIN_S = 60.0
TESSERA = [sys.executable, "-m", "tessera_ops.cli"]


def wait_for_stack(data_dir: Path, process: subprocess.Popen[bytes], log: Path) -> Stack:
    deadline = time.monotonic() + READY_WITHIN_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"tessera up exited:\n{log.read_text()}")
        try:
            return read_stack(data_dir)
        except FileNotFoundError:
            time.sleep(0.2)
    raise AssertionError(f"not ready within {READY_WITHIN_S} s:\n{log.read_text()}")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Stack, subprocess.Popen[bytes], Path]]:
    data_dir = tmp_path / "stack"
    log = tmp_path / "up.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("TESSERA_DATABASE_URL", "TESSERA_REDIS_URL", "TESSERA_NATS_URL")
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*TESSERA, "up", "--data-dir", str(data_dir), "--venue", str(theatre())],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield wait_for_stack(data_dir, process, log), process, data_dir
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def theatre() -> Path:
    return Path(__file__).resolve().parents[2] / "tessera_ops" / "venues" / "theatre-500.json"


def test_up_sells_through_an_edge_in_both_regions_and_down_leaves_nothing(
    running: tuple[Stack, subprocess.Popen[bytes], Path],
) -> None:
    stack, process, data_dir = running
    assert len(stack.regions) == 2
    assert [r.home for r in stack.regions] == [True, False]
    edge = stack.regions[1].edge_url  # a sale through the region that is not the writer's
    headers = {"Authorization": f"Bearer {cli_token(data_dir, 'ann')}"}
    held = httpx.post(
        f"{edge}/v1/events/{stack.event_id}/holds",
        json={"best_available": {"quantity": 2}},
        headers={**headers, "Idempotency-Key": "h"},
        timeout=30,
    )
    assert held.status_code == 201, held.text
    hold = held.json()
    sold = httpx.post(
        f"{edge}/v1/events/{stack.event_id}/orders",
        json={"hold_id": hold["hold_id"], "payment_token": "tok_approve"},
        headers={**headers, "Idempotency-Key": "o"},
        timeout=30,
    )
    assert sold.status_code == 201, sold.text
    section = hold["seats"][0].split(":")[0]
    for region in stack.regions:
        wait_taken(region.regional_url, stack.event_id, section, hold["seats"])
    tokens_are_the_identity_providers(stack, data_dir)
    killed_writer_comes_back(stack, data_dir)
    second = subprocess.run(
        [*TESSERA, "up", "--data-dir", str(data_dir)], check=False, capture_output=True, timeout=60
    )
    assert second.returncode == 1  # one stack per data directory
    assert b"already running" in second.stderr
    pids = dict(read_stack(data_dir).pids)  # the restarted writer's pid among them
    down = subprocess.run(
        [*TESSERA, "down", "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert process.wait(timeout=30) == 0  # the crash was repaired: not a failure of the run
    assert not (data_dir / "stack.json").exists()
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []
    assert tessera("status", "--data-dir", str(data_dir)).returncode == 2  # no stack


def cli_token(data_dir: Path, user: str) -> str:
    """`tessera token` against the running stack, as a developer runs it (no HS256 secret)."""
    env = {k: v for k, v in os.environ.items() if k != "TESSERA_JWT_SECRET"}
    result = subprocess.run(
        [*TESSERA, "token", "--user", user, "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def tokens_are_the_identity_providers(stack: Stack, data_dir: Path) -> None:
    """The stack's tiers verify fans' tokens against the local identity provider's JWKS: its
    key ring's tokens pass at the edge and the writer, another ring's are 401, the edge's dev
    tokens come from the provider, and the files holding secrets are the owner's only."""
    keys = Path(stack.identity_keys)
    assert keys == data_dir.resolve() / "identity" / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "stack.json").stat().st_mode) == 0o600
    assert stack.jwt_secret == ""
    ring = KeyRing.load(keys)
    assert stack.idp_url is not None
    published = httpx.get(f"{stack.idp_url}/.well-known/jwks.json", timeout=10).json()["keys"]
    assert [key["kid"] for key in published] == [key.kid for key in ring.keys]
    # Another key ring's token is refused by the writer and the edge alike; the stack's passes.
    stranger = KeyRing.generate("ES256").mint("mallory")
    edge = stack.regions[0].edge_url
    for token in (stranger, cli_token(data_dir, "carol")):
        refused = token is stranger
        me = httpx.get(
            f"{stack.writer_url}/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert me.status_code == (401 if refused else 200), me.text
        held = hold_with(edge, stack, token, f"identity-{refused}")
        assert held.status_code == (401 if refused else 201), held.text
        if refused:
            assert held.json()["error"]["code"] == "unauthorized"
    # The seat-map page's "sign in as": the edge asks the provider, and holds no key itself.
    dev = httpx.post(f"{edge}/v1/dev/token", json={"user_id": "dave"}, timeout=30)
    assert dev.status_code == 200, dev.text
    token = dev.json()["token"]
    assert jwt.get_unverified_header(token)["kid"] == ring.keys[-1].kid
    held = hold_with(stack.regions[1].edge_url, stack, token, "dev-token")
    assert held.status_code == 201, held.text


def hold_with(edge: str, stack: Stack, token: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/events/{stack.event_id}/holds",
        json={"best_available": {"quantity": 1}},
        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        timeout=30,
    )


def killed_writer_comes_back(stack: Stack, data_dir: Path) -> None:
    """SIGKILL the writer: the console says so in one line, it is restarted with a new pid and
    ready, `tessera status` shows one restart, and holds through an edge work again."""
    console = data_dir.parent / "up.log"
    old = stack.pids["writer"]
    os.kill(old, signal.SIGKILL)
    died = wait_for_console(console, f"writer (pid {old}) died, killed by SIGKILL; log ")
    assert "global_writer.log; restarting in 0.5 s" in died
    back = wait_for_console(console, "writer is back: pid ")
    assert f"ready at {stack.writer_url} (restart 1)" in back
    statuses = wait_all_ready(data_dir)
    writer = next(status for status in statuses if status.name == "writer")
    assert (writer.restarts, writer.ready, writer.state) == (1, True, "running")
    assert writer.pid is not None and writer.pid != old and pid_alive(writer.pid)
    assert f"pid {writer.pid}," in back
    assert not pid_alive(old)
    assert httpx.get(f"{stack.writer_url}/readyz", timeout=10).status_code == 200
    assert {status.name for status in statuses} == {
        "postgres",
        "redis",
        "nats-us-east",
        "nats-eu-west",
        "idp",
        "writer",
        "mailcatcher",
        "notifier",
        *(f"{tier}-{region.name}" for tier in ("regional", "edge") for region in stack.regions),
    }
    assert all(status.restarts == 0 for status in statuses if status.name != "writer")
    table = tessera("status", "--data-dir", str(data_dir))
    assert table.returncode == 0, table.stderr
    assert f"{len(statuses)} of {len(statuses)} ready" in table.stdout
    # Through the edge whose connections went to the killed writer: one request, no retry.
    held = hold_through(stack.regions[1].edge_url, stack, "bob", "after-restart")
    assert held.status_code == 201, held.text


def wait_for_console(console: Path, text: str) -> str:
    """The line of `tessera up`'s output that contains `text` (waiting for it)."""
    deadline = time.monotonic() + RESTARTED_WITHIN_S
    while True:
        lines = [line for line in console.read_text().splitlines() if text in line]
        if lines:
            return lines[0]
        assert time.monotonic() < deadline, f"no {text!r} in:\n{console.read_text()}"
        time.sleep(0.1)


def wait_all_ready(data_dir: Path) -> list[ServiceStatus]:
    """`tessera status --json` once it exits 0 (everything ready)."""
    deadline = time.monotonic() + RESTARTED_WITHIN_S
    while True:
        result = tessera("status", "--json", "--data-dir", str(data_dir))
        if result.returncode == 0:
            return msgspec.json.decode(result.stdout, type=list[ServiceStatus])
        assert result.returncode == 1, result.stderr
        assert time.monotonic() < deadline, result.stdout
        time.sleep(0.5)


def tessera(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TESSERA, *args], check=False, capture_output=True, text=True, timeout=60
    )


def hold_through(edge: str, stack: Stack, user: str, key: str) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/events/{stack.event_id}/holds",
        json={"best_available": {"quantity": 2}},
        headers={
            "Authorization": f"Bearer {fan_minter(stack)(user)}",
            "Idempotency-Key": key,
        },
        timeout=30,
    )


def wait_taken(regional_url: str, event_id: str, section: str, seats: list[str]) -> None:
    """Until the region's seat map shows every seat of `seats` as not available."""
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(
            f"{regional_url}/v1/events/{event_id}/sections/{section}/seatmap?format=json"
        )
        sections = response.json()["sections"] if response.status_code == 200 else []
        available = {seat for section_map in sections for seat in section_map["available"]}
        if response.status_code == 200 and not available & set(seats):
            return
        assert time.monotonic() < deadline, f"{regional_url} still shows {seats} available"
        time.sleep(0.05)
