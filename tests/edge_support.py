"""A writer, two regional read nodes and edges in front of them, as real processes, for the edge
tests (importable by name: `tests/` is on pytest's pythonpath)."""

from __future__ import annotations

import asyncio
import json
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

from tessera.auth import mint_token
from tessera.tooling.processes import ServiceProcess, start_edge, start_regional, start_writer

EDGE_SECRET = "test-edge-secret-" + "e" * 32
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
            "TESSERA_EDGE_SECRET": EDGE_SECRET,
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
    database_url: str, redis_url: str, nats_url: str, workdir: Path
) -> Iterator[EdgeStack]:
    writer = start_writer(
        workdir / "writer", writer_env(settings(database_url, redis_url, nats_url))
    )
    stack = EdgeStack(writer, [], redis_url, nats_url, workdir)
    try:
        for index in range(2):
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
