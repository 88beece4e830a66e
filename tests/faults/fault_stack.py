"""The fault suite's own stack, shared by a test module: PostgreSQL, Valkey, a NATS hub and a
regional NATS domain (`eu`) leaf-connected to it through a TCP proxy that can cut the link, a global
writer on the hub, and two regional read nodes (one on the hub, one on `eu`'s mirror). Every server
and process here belongs to the module, so a test may kill, restart, purge or partition any of them;
`ensure_running` brings back whatever a failed test left down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
from edge_support import wait_seen_on
from link_proxy import LinkProxy
from writer_support import WRITER_ADMIN_KEY, WRITER_JWT_SECRET, event_body, settings, writer_env

from global_writer.settings import Settings
from tessera.jetstream import load_definitions, load_regional_definitions
from tessera_ops.processes import ServiceProcess, start_regional, start_writer
from tessera_ops.servers import (
    NatsDomainServer,
    RunningServer,
    create_database,
    start_nats_hub,
    start_nats_region,
    start_postgres,
    start_valkey,
)
from tessera_ops.stack import apply_definitions

# 3 sections x 6 rows x 25 seats: small enough to race on, big enough not to sell out in a case.
VENUE: dict[str, Any] = {
    "name": "Fault hall",
    "sections": [
        {
            "id": section,
            "name": f"Section {section}",
            "rows": [
                {"id": row, "seats": 25, "rank": rank * 6 + n + 1} for n, row in enumerate("ABCDEF")
            ],
        }
        for rank, section in enumerate(("L", "M", "R"))
    ],
}
# Short holds, so expiry runs (and is checked) under every fault.
HOLD_TTL_S = 3
PER_USER_LIMIT = 8


def pause(service: ServiceProcess) -> None:
    """SIGSTOP the service's process group (Granian's parent and workers): a stalled process."""
    assert service.process is not None
    os.killpg(service.process.pid, signal.SIGSTOP)


def signal_server(server: RunningServer, signum: signal.Signals) -> None:
    """Signal a server and every process it started: PostgreSQL's backends each lead a process
    group of their own, so a signal to the postmaster's group reaches none of them."""
    root = psutil.Process(server.pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signum)


def resume(service: ServiceProcess) -> None:
    assert service.process is not None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.process.pid, signal.SIGCONT)


def is_up(service: ServiceProcess) -> bool:
    return service.process is not None and service.process.poll() is None


@dataclass
class FaultStack:
    workdir: Path
    postgres: RunningServer
    database_url: str
    valkey: RunningServer
    hub: NatsDomainServer
    region: NatsDomainServer
    link: LinkProxy
    writer_settings: Settings
    writer: ServiceProcess
    regionals: dict[str, ServiceProcess] = field(default_factory=dict)

    @property
    def regional_urls(self) -> dict[str, str]:
        return {name: node.url for name, node in self.regionals.items()}

    def regional_env(self, nats_url: str, region: str) -> dict[str, str]:
        return {
            "TESSERA_NATS_URL": nats_url,
            "TESSERA_WRITER_URL": self.writer.url,
            "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
            "TESSERA_REGION": region,
        }

    async def create_event(
        self, writer_url: str | None = None, *, hold_ttl_s: int = HOLD_TTL_S
    ) -> str:
        """A fresh event on the module's venue, served by every read node when this returns."""
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{writer_url or self.writer.url}/v1/admin/events",
                headers={"X-Admin-Key": WRITER_ADMIN_KEY},
                json=event_body(VENUE, hold_ttl_s=hold_ttl_s, per_user_limit=PER_USER_LIMIT),
            )
        assert response.status_code == 201, response.text
        event_id: str = response.json()["event_id"]
        for node in self.regionals.values():
            await asyncio.to_thread(wait_seen_on, node, event_id)
        return event_id

    def ensure_running(self) -> None:
        """Restart whatever an earlier test left down (it failed between fault and heal)."""
        for server in (self.postgres, self.valkey, self.hub):
            if not server.running:
                server.restart()
        self.link.heal()
        if not self.region.running:
            self.region.restart()
        self.region.wait_for_leaf()
        for service in (self.writer, *self.regionals.values()):
            if service.process is not None and service.process.poll() is None:
                resume(service)  # in case a test left it stopped
            if not is_up(service):
                service.start()

    def stop(self) -> None:
        for service in (*self.regionals.values(), self.writer):
            with contextlib.suppress(Exception):
                resume(service)
            service.stop()
        for server in (self.region, self.hub, self.valkey, self.postgres):
            server.stop()
        self.link.close()


def _start_nats(workdir: Path) -> tuple[NatsDomainServer, NatsDomainServer, LinkProxy]:
    hub = start_nats_hub(workdir / "nats-hub")
    apply_definitions(hub.url, load_definitions())
    assert hub.leafnode_url is not None
    leaf = urlsplit(hub.leafnode_url)
    assert leaf.port is not None
    link = LinkProxy(leaf.port)
    through_link = leaf._replace(
        netloc=f"{leaf.username}:{leaf.password}@127.0.0.1:{link.port}"
    ).geturl()
    region = start_nats_region(workdir / "nats-eu", domain="eu", hub=hub, hub_url=through_link)
    apply_definitions(region.url, load_regional_definitions(hub_domain=hub.domain))
    return hub, region, link


def open_fault_stack(workdir: Path) -> Iterator[FaultStack]:
    postgres = start_postgres(workdir / "postgres")
    valkey = start_valkey(workdir / "valkey")
    hub, region, link = _start_nats(workdir)
    database_url = create_database(postgres.url, "tessera")
    writer_settings = settings(database_url, valkey.url, hub.url)
    stack: FaultStack | None = None
    try:
        writer = start_writer(workdir / "writer", writer_env(writer_settings))
        stack = FaultStack(
            workdir, postgres, database_url, valkey, hub, region, link, writer_settings, writer
        )
        stack.regionals["hub"] = start_regional(
            workdir / "regional-hub", stack.regional_env(hub.url_for("reader"), "hub")
        )
        stack.regionals["eu"] = start_regional(
            workdir / "regional-eu", stack.regional_env(region.url_for("reader"), "eu")
        )
        yield stack
    finally:
        if stack is not None:
            stack.stop()
        else:
            for server in (region, hub, valkey, postgres):
                server.stop()
            link.close()
