"""`tessera up`'s supervision without a stack: the backoff, exit statuses, a real process that is
killed and restarted (with a worker in its process group, as Granian has), the crash-loop brake,
the state file and `tessera status`'s rendering. Real processes throughout, each gone in < 1 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from tessera import limits
from tessera_ops import cli, cli_stack, processes, stack, stackfile
from tessera_ops.servers import free_port

# A tiny service: /readyz answers 200, and a worker process shares its process group (the shape
# of Granian: a parent and a forked worker that outlives a SIGKILLed parent).
TOY_SERVICE = """
import http.server, subprocess, sys
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(f"worker {worker.pid}", flush=True)

class Ready(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Ready).serve_forever()
"""
FAILING_SERVICE = "import sys; print('boom: TESSERA_NOTHING is not set', flush=True); sys.exit(3)"


def fast() -> stack.RestartPolicy:
    """Bounds that keep a test short (a policy holds its own attempts: one per child)."""
    return stack.RestartPolicy(backoff_s_min=0.05, backoff_s_max=0.1, restarts_max=3, window_s=60)


def toy(tmp_path: Path, code: str = TOY_SERVICE) -> processes.ServiceProcess:
    port = free_port()
    return processes.ServiceProcess(
        name="toy",
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=tmp_path / "toy.log",
        command=[sys.executable, "-c", code, str(port)],
        env=dict(os.environ),
    )


def a_stack(data_dir: Path) -> stackfile.Stack:
    return stackfile.Stack(
        data_dir=str(data_dir),
        database_url="postgresql://127.0.0.1:1/tessera",
        redis_url="redis://127.0.0.1:1/0",
        writer_url="http://127.0.0.1:1",
        admin_key="a",
        jwt_secret="s",
        admission_secret="e",
        event_id="ev",
        regions=[],
        supervisor_pid=os.getpid(),
    )


@pytest.fixture
def sup(tmp_path: Path) -> Iterator[stack.Supervisor]:
    supervisor = stack.Supervisor(tmp_path)
    yield supervisor
    supervisor.stop_all()


def wait_until(condition: object, timeout_s: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


# --- backoff ---


def test_backoff_doubles_from_the_minimum_to_the_cap() -> None:
    policy = stack.RestartPolicy(backoff_s_min=0.5, backoff_s_max=4, restarts_max=10, window_s=60)
    delays = []
    for attempt in range(6):
        delay = policy.delay_s(now=attempt)
        assert delay is not None
        delays.append(delay)
        policy.attempted(now=attempt)
    assert delays == [0.5, 1, 2, 4, 4, 4]


def test_the_crash_loop_brake_gives_up_after_restarts_max_within_the_window() -> None:
    policy = stack.RestartPolicy(backoff_s_min=1, backoff_s_max=8, restarts_max=3, window_s=100)
    for now in (0.0, 1.0, 2.0):
        assert policy.delay_s(now) is not None
        policy.attempted(now)
    assert policy.delay_s(now=50.0) is None
    # The first attempt leaves the window: one more restart is allowed, backed off for two.
    assert policy.delay_s(now=100.0) == 4


def test_a_quiet_window_resets_the_backoff() -> None:
    policy = stack.RestartPolicy(backoff_s_min=0.5, backoff_s_max=30, restarts_max=10, window_s=300)
    for now in (0.0, 1.0, 2.0):
        policy.attempted(now)
    assert policy.delay_s(now=10.0) == 4
    assert policy.delay_s(now=302.5) == 0.5


def test_the_default_bounds_come_from_limits() -> None:
    policy = stack.RestartPolicy()
    assert policy.delay_s(now=0.0) == limits.stack_restart_backoff_s_min
    assert 0 < policy.backoff_s_min < policy.backoff_s_max
    assert policy.restarts_max == limits.stack_restarts_max


# --- how a child ended ---


def test_exit_status_names_the_exit_code_or_the_signal_and_leaves_the_zombie() -> None:
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    exits = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    try:
        assert stack.exit_status(running.pid) is None
        running.send_signal(signal.SIGKILL)
        wait_until(lambda: stack.exit_status(running.pid) is not None)
        assert stack.exit_status(running.pid) == "killed by SIGKILL"
        wait_until(lambda: stack.exit_status(exits.pid) is not None)
        assert stack.exit_status(exits.pid) == "exit code 3"
        # Not reaped (WNOWAIT): Popen still collects the status itself.
        assert running.wait(timeout=5) == -signal.SIGKILL
        assert exits.wait(timeout=5) == 3
        assert stack.exit_status(exits.pid) == "ended (exit status already collected)"
    finally:
        running.kill()
        running.wait()


# --- a supervised process ---


def test_a_killed_service_is_reported_restarted_and_recorded(
    sup: stack.Supervisor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = toy(tmp_path)
    service.start()
    sup.add_service("toy", service, region="us-east")
    sup.children[0].policy = fast()
    worker = int(service.log_path.read_text().split()[1])
    first = service.pid
    base = a_stack(tmp_path)

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: stack.exit_status(first) is not None)
    assert sup.check()
    err = capsys.readouterr().err
    assert f"toy (pid {first}) died, killed by SIGKILL; log " in err
    assert "toy.log; restarting in 0.05 s" in err
    assert len(err.strip().splitlines()) == 1
    wait_until(lambda: not stack.pid_alive(worker))  # the group went with its leader
    down = sup.describe(base).services[0]
    assert (down.state, down.pid, down.started_at_s, down.restarts) == ("restarting", None, None, 0)
    assert "toy" not in sup.describe(base).pids

    time.sleep(0.06)
    assert sup.check()
    err = capsys.readouterr().err
    assert f"toy is back: pid {service.pid}, ready at {service.url} (restart 1)" in err
    assert service.pid != first
    assert processes.probe(service.url)
    up = sup.describe(base)
    assert up.services[0].state == "running"
    assert up.services[0].restarts == 1
    assert up.services[0].region == "us-east"
    assert up.pids == {"toy": service.pid}
    assert sup.healthy()
    assert not sup.check()  # nothing new


def test_a_service_that_keeps_dying_is_given_up_on(
    sup: stack.Supervisor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service = toy(tmp_path, FAILING_SERVICE)
    service.spawn()
    sup.add_service("toy", service)
    sup.children[0].policy = fast()
    wait_until(lambda: stack.exit_status(service.pid) is not None)
    deadline = time.monotonic() + 10
    while sup.children[0].state != "failed":
        assert time.monotonic() < deadline
        sup.check()
        time.sleep(0.02)
    lines = capsys.readouterr().err.strip().splitlines()
    assert "died, exit code 3" in lines[0]
    assert "(last line: boom: TESSERA_NOTHING is not set)" in lines[0]
    assert all("did not come back: toy exited" in line for line in lines[1:])
    assert len(lines) == 1 + 3
    assert "giving up on it after 3 restarts within 60 s" in lines[-1]
    assert not sup.healthy()
    assert sup.describe(a_stack(tmp_path)).services[0].state == "failed"


# --- the state file ---


def test_the_state_file_is_replaced_whole_and_read_back(tmp_path: Path) -> None:
    base = a_stack(tmp_path)
    state = stackfile.ServiceState(
        name="writer",
        kind="service",
        region="us-east",
        url="http://127.0.0.1:2",
        log="w.log",
        pid=123,
        started_at_s=1.5,
        restarts=2,
    )
    stackfile.write_stack(msgspec.structs.replace(base, services=[state]))
    assert stackfile.read_stack(tmp_path).services == [state]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.json"]

    # A reader racing the supervisor's rewrites sees one version or the other, never a torn file.
    stop = threading.Event()
    seen: set[int] = set()

    def read() -> None:
        while not stop.is_set():
            seen.add(stackfile.read_stack(tmp_path).services[0].restarts)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for restarts in range(200):
            stackfile.write_stack(
                msgspec.structs.replace(
                    base, services=[msgspec.structs.replace(state, restarts=restarts)]
                )
            )
    finally:
        stop.set()
        reader.join()
    assert seen <= set(range(200)) | {2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stack.json"]


def test_a_stack_file_without_services_still_reads() -> None:
    old = msgspec.json.encode(a_stack(Path("/x")))
    assert b'"services":[]' in old
    legacy = old.replace(b',"services":[]', b"")
    assert msgspec.json.decode(legacy, type=stackfile.Stack).services == []


# --- tessera status ---


def test_status_probes_what_up_recorded(tmp_path: Path) -> None:
    closed = free_port()
    services = [
        stackfile.ServiceState(
            name="writer",
            kind="service",
            region="us-east",
            url=f"http://127.0.0.1:{closed}",
            log="w.log",
            pid=os.getpid(),
            started_at_s=time.time() - 65,
            restarts=1,
        ),
        stackfile.ServiceState(
            name="redis", kind="server", url=f"redis://127.0.0.1:{closed}", log="r.log"
        ),
    ]
    stackfile.write_stack(msgspec.structs.replace(a_stack(tmp_path), services=services))
    _, status = stack.status(tmp_path)
    assert [s.name for s in status] == ["writer", "redis"]
    assert not any(s.ready for s in status)  # nothing listens there
    assert status[0].uptime_s is not None and 65 <= status[0].uptime_s < 75
    assert status[0].restarts == 1
    assert status[1].uptime_s is None
    assert cli.main(["status", "--data-dir", str(tmp_path)]) == cli_stack.EXIT_NOT_READY


def test_status_without_a_stack_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--data-dir", str(tmp_path)]) == cli_stack.EXIT_NO_STACK
    assert "no stack running" in capsys.readouterr().err


def test_the_status_table_has_a_row_per_service() -> None:
    rows = [
        stackfile.ServiceStatus(
            name="edge-eu-west",
            region="eu-west",
            pid=41,
            uptime_s=3725.0,
            restarts=0,
            state="running",
            ready=True,
            url="http://127.0.0.1:3",
        ),
        stackfile.ServiceStatus(
            name="writer",
            region="us-east",
            pid=None,
            uptime_s=None,
            restarts=1,
            state="restarting",
            ready=False,
            url="http://127.0.0.1:4",
        ),
    ]
    lines = cli_stack.status_table(rows).splitlines()
    assert lines[0].split() == ["SERVICE", "REGION", "PID", "UPTIME", "RESTARTS", "READY", "URL"]
    assert lines[1].split() == ["edge-eu-west", "eu-west", "41", "1h02m", "0", "ready", rows[0].url]
    assert lines[2].split() == [
        "writer",
        "us-east",
        "-",
        "-",
        "1",
        "down",
        "(restarting)",
        rows[1].url,
    ]
    assert lines[3] == "1 of 2 ready"


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (90_061, "1d01h")],
)
def test_uptimes_read_at_a_glance(seconds: float, shown: str) -> None:
    assert cli_stack.duration(seconds) == shown


def test_probes_of_closed_ports_say_not_ready() -> None:
    port = free_port()
    for scheme in ("http", "redis", "postgresql", "nats"):
        assert not processes.probe(f"{scheme}://127.0.0.1:{port}", timeout_s=1)
    with pytest.raises(ValueError, match="no readiness probe"):
        processes.probe(f"mysql://127.0.0.1:{port}")


# --- signals while a process starts ---


def test_a_stop_signal_waits_for_the_start_under_way() -> None:
    gate = stack.SignalGate()
    previous = signal.signal(signal.SIGUSR1, gate.handle)
    noted: list[str | None] = []

    def start_under_way() -> None:
        with gate.deferred():
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.05)  # the handler has run by now: it only took note
            noted.append(gate.pending)

    def sleep_undisturbed() -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(1)

    try:
        with pytest.raises(stack.Stopped, match="SIGUSR1"):
            start_under_way()
        with pytest.raises(stack.Stopped):  # outside a deferred block: at once
            sleep_undisturbed()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert noted == ["SIGUSR1"]
    assert gate.pending is None
