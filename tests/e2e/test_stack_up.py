"""`tessera up` as a user runs it: a subprocess that starts everything on free ports, is ready
within a minute, sells through an edge with the sale visible in both regions, and `tessera down`
leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tessera.auth import mint_token
from tessera_ops.stack import pid_alive
from tessera_ops.stackfile import Stack, read_stack

READY_WITHIN_S = 60.0
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
    return Path(__file__).resolve().parents[2] / "examples" / "venues" / "theatre-500.json"


def test_up_sells_through_an_edge_in_both_regions_and_down_leaves_nothing(
    running: tuple[Stack, subprocess.Popen[bytes], Path],
) -> None:
    stack, process, data_dir = running
    assert len(stack.regions) == 2
    assert [r.home for r in stack.regions] == [True, False]
    edge = stack.regions[1].edge_url  # a sale through the region that is not the writer's
    headers = {"Authorization": f"Bearer {mint_token('ann', stack.jwt_secret)}"}
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
    second = subprocess.run(
        [*TESSERA, "up", "--data-dir", str(data_dir)], check=False, capture_output=True, timeout=60
    )
    assert second.returncode == 1  # one stack per data directory
    assert b"already running" in second.stderr
    pids = dict(stack.pids)
    down = subprocess.run(
        [*TESSERA, "down", "--data-dir", str(data_dir)],
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert process.wait(timeout=30) == 0
    assert not (data_dir / "stack.json").exists()
    assert [name for name, pid in pids.items() if pid_alive(pid)] == []


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
