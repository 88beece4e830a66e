"""Tessera's own services as processes (tests, `tessera up`): start, wait until ready, stop."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tessera import limits
from tessera_ops.servers import ServerStartError, free_port


@dataclass
class ServiceProcess:
    name: str
    url: str
    port: int
    log_path: Path
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        # Its own session, so `kill` reaches Granian's worker too: SIGKILL on the parent alone
        # left the forked worker running (found as orphans after timed-out test starts).
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_ready(self)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=limits.service_stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (Granian's parent and its workers)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def wait_ready(service: ServiceProcess) -> None:
    deadline = time.monotonic() + limits.service_start_timeout_s
    while time.monotonic() < deadline:
        assert service.process is not None
        if service.process.poll() is not None:
            raise ServerStartError(f"{service.name} exited:\n{service.log_tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/readyz", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    service.kill()
    raise ServerStartError(f"{service.name} not ready in time:\n{service.log_tail()}")


def start_service(
    module: str, workdir: Path, env: dict[str, str], port: int | None = None
) -> ServiceProcess:
    """`python -m <module> --port P` (a Granian-served tier), configured by `TESSERA_*` in
    `env`, started and waited for until `/readyz` answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    service = ServiceProcess(
        name=module,
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=workdir / f"{module}.log",
        command=[sys.executable, "-m", module, "--port", str(port)],
        env={**os.environ, **env},
    )
    service.start()
    return service


def start_writer(workdir: Path, env: dict[str, str], port: int | None = None) -> ServiceProcess:
    """The global writer (`python -m global_writer`)."""
    return start_service("global_writer", workdir, env, port)


def start_regional(workdir: Path, env: dict[str, str], port: int | None = None) -> ServiceProcess:
    """A regional read node (`python -m regional`): `TESSERA_NATS_URL` of its region,
    `TESSERA_WRITER_URL`, `TESSERA_JWT_SECRET`."""
    return start_service("regional", workdir, env, port)


def start_edge(workdir: Path, env: dict[str, str], port: int | None = None) -> ServiceProcess:
    """An edge (`python -m edge`): `TESSERA_ORIGIN_URLS` (the region's read nodes),
    `TESSERA_WRITER_URL`, `TESSERA_REDIS_URL` and its secrets (edge/settings.py)."""
    return start_service("edge", workdir, env, port)
