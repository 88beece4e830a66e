"""Tessera's own services as processes (tests, `tessera up`): start, wait until ready, stop;
and `probe`, the readiness check `tessera status` makes of services and servers alike."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

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
        """Run it and wait until `/readyz` answers (`ServerStartError` otherwise)."""
        self.spawn()
        wait_ready(self)

    def spawn(self) -> None:
        """Run it, without waiting (its log is appended to: a restart keeps the earlier runs)."""
        with self.log_path.open("ab") as log:
            # Its own session, so `kill` reaches Granian's worker too: SIGKILL on the parent alone
            # left the forked worker running (found as orphans after timed-out test starts).
            self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The process id of the current (or last) run; 0 before the first."""
        return self.process.pid if self.process is not None else 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=limits.service_stop_timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group (Granian's parent and its workers), then reap it.
        Also right after the parent died, while it is unreaped: its worker may outlive it."""
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
    `TESSERA_WRITER_URL`, and how it verifies fans' tokens (`TESSERA_JWKS_URL`, or the
    development-only `TESSERA_JWT_SECRET`: docs/identity.md)."""
    return start_service("regional", workdir, env, port)


def start_edge(workdir: Path, env: dict[str, str], port: int | None = None) -> ServiceProcess:
    """An edge (`python -m edge`): `TESSERA_ORIGIN_URLS` (the region's read nodes),
    `TESSERA_WRITER_URL`, `TESSERA_REDIS_URL` and its secrets (edge/settings.py)."""
    return start_service("edge", workdir, env, port)


# The PostgreSQL startup message (protocol 3.0) as the embedded server's superuser, and the
# Terminate message that ends the session without an "unexpected EOF" in the server's log.
_PG_STARTUP: Final = b"user\0postgres\0database\0postgres\0\0"
_PG_HELLO: Final = struct.pack("!ii", 8 + len(_PG_STARTUP), 196_608) + _PG_STARTUP
_PG_BYE: Final = b"X" + struct.pack("!i", 4)


def probe(url: str, timeout_s: float = limits.server_probe_timeout_s) -> bool:
    """Whether what `url` names is ready to serve: `GET <url>/readyz` answers 200 (http), Valkey
    answers PING (redis), PostgreSQL accepts a session rather than answering "starting up" or
    "shutting down" (postgresql), NATS greets with INFO (nats). Credentials in `url` are ignored.
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        try:
            response = httpx.get(f"{url.rstrip('/')}/readyz", timeout=timeout_s)
        except httpx.HTTPError:
            return False
        return response.status_code == 200
    greeting = {
        "redis": (b"PING\r\n", b"+PONG"),
        "postgresql": (_PG_HELLO, b"R"),  # an authentication request (trust: AuthenticationOk)
        "nats": (b"", b"INFO "),
    }.get(parts.scheme)
    if greeting is None or parts.hostname is None or parts.port is None:
        raise ValueError(f"no readiness probe for {url!r}")
    hello, expected = greeting
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
            if hello:
                sock.sendall(hello)
            answer = _read_at_least(sock, len(expected))
            if parts.scheme == "postgresql" and answer.startswith(b"R"):
                sock.sendall(_PG_BYE)
    except OSError:
        return False
    return answer.startswith(expected)


def _read_at_least(sock: socket.socket, size: int) -> bytes:
    received = b""
    while len(received) < size:
        chunk = sock.recv(4096)
        if not chunk:
            break
        received += chunk
    return received
