"""A writer, two regional read nodes and edges in front of them, as real processes, for the edge
tests (importable by name: `tests/` is on pytest's pythonpath); and a slow stub writer
(`start_slow_writer`: this file run as a script serves it under Granian)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from writer_support import (
    ROOM,
    WRITER_ADMIN_KEY,
    WRITER_JWT_SECRET,
    event_body,
    settings,
    writer_env,
)

from tessera import limits
from tessera.auth import mint_token
from tessera_ops.processes import ServiceProcess, start_edge, start_regional, start_writer
from tessera_ops.servers import free_port

ADMISSION_SECRET = "test-admission-secret-" + "e" * 32
# One secret per purpose, as deployed: the edges' own admin key, and their credential at the
# writer (the shared stack leaves both off, so tests may call the writer as a fan; the tests of
# the separation set them: tests/integration/test_edge_secrets.py).
EDGE_ADMIN_KEY = "test-edge-admin-key-" + "k" * 32
EDGE_WRITER_CREDENTIAL = "test-edge-writer-credential-" + "c" * 32
# Generous by default: the tests come from one address; the rate-limit tests set their own.
OPEN_LIMITS = {
    "budgets": {
        cls: {"ip": {"per_s": 100_000, "burst": 100_000}, "store": "local"}
        for cls in ("reads", "queue", "holds", "orders")
    }
}


def token(user_id: str) -> str:
    return mint_token(user_id, WRITER_JWT_SECRET)


def fan_headers(user_id: str, key: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token(user_id)}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


@dataclass
class EdgeStack:
    writer: ServiceProcess
    regionals: list[ServiceProcess]
    redis_url: str
    nats_url: str
    workdir: Path
    events: list[str] = field(default_factory=list)
    edges: list[ServiceProcess] = field(default_factory=list)

    def create_event(self, venue: dict[str, Any] | None = None, **options: Any) -> str:
        response = httpx.post(
            f"{self.writer.url}/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(venue or ROOM, **{"per_user_limit": 40, **options}),
            timeout=30,
        )
        assert response.status_code == 201, response.text
        event_id: str = response.json()["event_id"]
        self.events.append(event_id)
        return event_id

    def edge_env(self, origins: list[ServiceProcess] | None = None, **env: str) -> dict[str, str]:
        return {
            "TESSERA_ORIGIN_URLS": ",".join(r.url for r in (origins or self.regionals)),
            "TESSERA_WRITER_URL": self.writer.url,
            "TESSERA_REDIS_URL": self.redis_url,
            "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
            "TESSERA_ADMIN_KEY": WRITER_ADMIN_KEY,
            "TESSERA_ADMISSION_SECRET": ADMISSION_SECRET,
            "TESSERA_RATE_LIMITS": json.dumps(OPEN_LIMITS),
            **env,
        }

    def start_edge(
        self, name: str, origins: list[ServiceProcess] | None = None, **env: str
    ) -> ServiceProcess:
        edge = start_edge(self.workdir / name, self.edge_env(origins, **env))
        self.edges.append(edge)
        return edge

    def regional_env(self) -> dict[str, str]:
        return {
            "TESSERA_NATS_URL": self.nats_url,
            "TESSERA_WRITER_URL": self.writer.url,
            "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
        }

    def wait_seen(self, event_id: str, timeout_s: float = 15.0) -> None:
        """Until every read node serves the event."""
        for regional in self.regionals:
            wait_seen_on(regional, event_id, timeout_s)

    def stop(self) -> None:
        for service in [*self.edges, *self.regionals, self.writer]:
            service.stop()


def open_edge_stack(
    database_url: str,
    redis_url: str,
    nats_url: str,
    workdir: Path,
    *,
    regionals: int = 2,
    writer_port: int | None = None,
    **writer_settings: Any,
) -> Iterator[EdgeStack]:
    writer = start_writer(
        workdir / "writer",
        writer_env(settings(database_url, redis_url, nats_url, **writer_settings)),
        writer_port,
    )
    stack = EdgeStack(writer, [], redis_url, nats_url, workdir)
    try:
        for index in range(regionals):
            stack.regionals.append(
                start_regional(workdir / f"regional{index}", stack.regional_env())
            )
        yield stack
    finally:
        stack.stop()


def origin_seatmap_requests(regional: ServiceProcess) -> float:
    """Seat-map GETs a read node has answered, from its /metrics."""
    text = httpx.get(f"{regional.url}/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("tessera_http_request_duration_seconds_count{") and (
            'route="/v1/events/{event_id}/seatmap"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_seen_on(regional: ServiceProcess, event_id: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while httpx.get(f"{regional.url}/v1/events/{event_id}/seatmap").status_code != 200:
        assert time.monotonic() < deadline, f"{regional.url} never saw {event_id}"
        time.sleep(0.05)


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


async def _read_answer(reader: asyncio.StreamReader) -> RawAnswer:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return RawAnswer(int(status_line.split()[1]), headers, body)


async def concurrent_gets(url: str, path: str, count: int) -> list[RawAnswer]:
    """`count` GETs of `path` in flight at once, each on its own keep-alive connection: the
    connections are opened first (in batches, within the listen backlog), then every request is
    written before any answer is read. Raw sockets: a client library's per-request overhead would
    spread the burst over seconds."""
    host, port = url.removeprefix("http://").split(":")
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, count, 100):
        connections += await asyncio.gather(
            *(asyncio.open_connection(host, int(port)) for _ in range(min(100, count - start)))
        )
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: br\r\n\r\n".encode()
    try:
        for _, writer in connections:
            writer.write(request)
        await asyncio.gather(*(writer.drain() for _, writer in connections))
        return list(await asyncio.gather(*(_read_answer(reader) for reader, _ in connections)))
    finally:
        for _, writer in connections:
            writer.close()


async def timed_burst(url: str, requests: list[bytes]) -> list[tuple[RawAnswer, float]]:
    """Each request on its own connection, all in flight at once (as `concurrent_gets`): every
    answer with the seconds from the moment all requests were written until it was read."""
    host, port = url.removeprefix("http://").split(":")
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for start in range(0, len(requests), 100):
        batch = min(100, len(requests) - start)
        connections += await asyncio.gather(
            *(asyncio.open_connection(host, int(port)) for _ in range(batch))
        )

    async def answer(reader: asyncio.StreamReader, sent: float) -> tuple[RawAnswer, float]:
        got = await _read_answer(reader)
        return got, time.monotonic() - sent

    try:
        for (_, writer), data in zip(connections, requests, strict=True):
            writer.write(data)
        await asyncio.gather(*(writer.drain() for _, writer in connections))
        sent = time.monotonic()
        return list(await asyncio.gather(*(answer(reader, sent) for reader, _ in connections)))
    finally:
        for _, writer in connections:
            writer.close()


def raw_post(url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    host = url.removeprefix("http://")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# --- a slow stub writer, in a process of its own ---

SLOW_WRITER_DELAY_ENV = "TESSERA_TEST_SLOW_WRITER_DELAY_S"
SLOW_HOLD = b'{"hold_id":"00000000-0000-4000-8000-000000000001","seats":["S:A:1"]}'


def create_slow_writer() -> Any:
    """Answers every `POST .../holds` with a 201 after the delay; `/readyz` (so it can stand in
    for a read node too) 200 at once; anything else 404."""
    delay_s = float(os.environ[SLOW_WRITER_DELAY_ENV])
    json_header = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "POST" and scope["path"].endswith("/holds"):
            await asyncio.sleep(delay_s)
            status, body = 201, SLOW_HOLD
        elif scope["path"] == "/readyz":
            status, body = 200, b'{"status":"ready"}'
        else:
            status, body = 404, b'{"error":{"code":"not_found","message":"stub"}}'
        await send({"type": "http.response.start", "status": status, "headers": json_header})
        await send({"type": "http.response.body", "body": body})

    return app


def start_slow_writer(workdir: Path, delay_s: float) -> ServiceProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    service = ServiceProcess(
        name="slow-writer",
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=workdir / "slow-writer.log",
        command=[sys.executable, str(Path(__file__).resolve()), "--port", str(port)],
        env={**os.environ, SLOW_WRITER_DELAY_ENV: str(delay_s)},
    )
    service.start()
    return service


def main() -> None:
    """`python tests/edge_support.py --port P`: the slow stub writer, served as the tiers are."""
    from granian import Granian  # noqa: PLC0415  (only the stub's process needs it)
    from granian.constants import Interfaces  # noqa: PLC0415

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    Granian(
        f"{Path(__file__).stem}:create_slow_writer",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
        backlog=limits.serve_backlog_max,
        backpressure=limits.serve_concurrent_requests_max,
    ).serve()


if __name__ == "__main__":
    main()
