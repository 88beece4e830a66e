"""Three writers behind one address (called round-robin, as a load balancer would): a write for an
event reaches the writer holding its lease whichever writer receives it
(global_writer/forwarding.py), and when that writer is SIGKILLed mid-sale, nothing it
acknowledged is lost and writes resume on a new owner soon after its lease lapses."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import writer_support
from writer_support import WRITER_ADMIN_KEY, WriterApi, event_body, writer_env

from global_writer.forwarding import FORWARDED_HEADER
from global_writer.settings import Settings
from tessera import limits
from tessera_ops.audit import audit
from tessera_ops.processes import ServiceProcess, start_writer
from tessera_ops.servers import free_port

pytestmark = pytest.mark.anyio

WRITERS = 3
# From the lease's lapse to the first write acknowledged by a new owner: the receiving writer
# adopts the event on the first request after the lapse (its adoption loop would within
# lease_renew_s), loading a 500-seat event in well under a second; the rest is the fans' backoff.
FAILOVER_SLACK_S = 5.0
FANS = 8


@dataclass
class Cluster:
    writers: list[ServiceProcess]
    urls: list[str]
    database_url: str
    settings: Settings


@pytest.fixture
def cluster(database_url: str, redis_url: str, nats_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Three writers on one database, each advertising its own URL in the leases it holds."""
    started: list[ServiceProcess] = []
    first: Settings | None = None
    try:
        for n in range(WRITERS):
            port = free_port()
            settings = writer_support.settings(
                database_url,
                redis_url,
                nats_url,
                writer_id=f"w{n}",
                writer_advertise_url=f"http://127.0.0.1:{port}",
            )
            first = first or settings
            started.append(start_writer(tmp_path / f"w{n}", writer_env(settings), port))
        assert first is not None
        yield Cluster(started, [w.url for w in started], database_url, first)
    finally:
        for writer in started:
            writer.stop()


async def create_event(url: str) -> str:
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(
            f"{url}/v1/admin/events", headers={"X-Admin-Key": WRITER_ADMIN_KEY}, json=event_body()
        )
    assert response.status_code == 201, response.text
    event_id: str = response.json()["event_id"]
    return event_id


def lease_of(database_url: str, event_id: str) -> tuple[str, float]:
    """The lease's owner, and the seconds until it lapses."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT owner, extract(epoch FROM expires_at - now()) FROM event_leases"
            " WHERE event_id = %s",
            (event_id,),
        ).fetchone()
    assert row is not None
    return row[0], float(row[1])


async def test_writes_sent_to_every_writer_all_succeed(cluster: Cluster) -> None:
    event_id = await create_event(cluster.urls[0])
    owner, _ = lease_of(cluster.database_url, event_id)
    assert owner == f"w0 {cluster.urls[0]}", "the lease names its holder and where it is reached"
    async with httpx.AsyncClient(timeout=30) as client:
        api = WriterApi(client, cluster.settings)
        holds: list[str] = []
        for n in range(12):
            url = cluster.urls[n % WRITERS]
            response = await client.post(
                f"{url}/v1/events/{event_id}/holds",
                headers={**api.headers(f"fan{n}", f"hold-{n}"), "X-Request-Id": f"req-{n}"},
                json={"best_available": {"quantity": 2}},
            )
            assert response.status_code == 201, (url, response.text)
            assert response.headers["x-request-id"] == f"req-{n}"
            assert response.headers["location"] == f"/v1/holds/{response.json()['hold_id']}"
            holds.append(response.json()["hold_id"])
            api.hold_events[holds[-1]] = event_id
        # The same key at another writer: the stored answer, not a second hold.
        replay = await client.post(
            f"{cluster.urls[2]}/v1/events/{event_id}/holds",
            headers=api.headers("fan1", "hold-1"),
            json={"best_available": {"quantity": 2}},
        )
        assert replay.status_code == 201, replay.text
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["hold_id"] == holds[1]
        for n, hold_id in enumerate(holds[:6]):
            url = cluster.urls[(n + 1) % WRITERS]
            bought = await client.post(
                f"{url}/v1/events/{event_id}/orders",
                headers=api.headers(f"fan{n}", f"order-{n}"),
                json={"hold_id": hold_id, "payment_token": "tok_approve"},
            )
            assert bought.status_code == 201, (url, bought.text)
        extended = await client.post(
            f"{cluster.urls[1]}{api.hold_path(holds[7])}/extend", headers=api.headers("fan7", "x7")
        )
        assert extended.status_code == 200, extended.text
        released = await client.delete(
            f"{cluster.urls[2]}{api.hold_path(holds[8])}", headers=api.headers("fan8")
        )
        assert released.status_code == 204, released.text
        document = await client.get(f"{cluster.urls[2]}/v1/events/{event_id}")
        assert document.status_code == 200, document.text
        section = document.json()["sections"][0]["section_id"]
        snapshot = await client.get(
            f"{cluster.urls[1]}/v1/events/{event_id}/sections/{section}/snapshot"
        )
        assert snapshot.status_code == 200, snapshot.text
        # A request already forwarded once is never forwarded again: a non-owner refuses it.
        refused = await client.post(
            f"{cluster.urls[1]}/v1/events/{event_id}/holds",
            headers={**api.headers("fan99", "hold-99"), FORWARDED_HEADER.decode(): "w2"},
            json={"best_available": {"quantity": 1}},
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "unavailable"
        # 8 holds, the replay, 4 orders, the extension and the release reached a non-owner.
        forwarded = [await forwards(client, url) for url in cluster.urls]
        assert forwarded[0] == 0, "the owner forwards nothing"
        assert sum(forwarded) >= 15, forwarded
    # The request id went with the forwarded request: the owner logged it.
    await wait_logged(cluster.writers[0], '"request_id":"req-1"')
    report = audit(cluster.database_url)
    assert report.ok, report


async def forwards(client: httpx.AsyncClient, url: str) -> float:
    """The writer's `tessera_writes_forwarded_total{result="answered"}`."""
    text = (await client.get(f"{url}/metrics")).text
    prefix = 'tessera_writes_forwarded_total{result="answered"} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


async def wait_logged(writer: ServiceProcess, text: str, within_s: float = 5.0) -> None:
    deadline = time.monotonic() + within_s
    while text not in writer.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text} not in {writer.name}'s log"
        await asyncio.sleep(limits.access_log_flush_s)


@dataclass
class Stream:
    """Fans holding one seat and buying it, round-robin over the writers that answer, resending
    with the same key after a refused connection, a 503, or a 409 `idempotency_key_in_flight`
    (a key the killed owner had claimed: taken over once the claim is
    `limits.idempotency_in_flight_s_max` old, docs/guarantees.md), as docs/api.md tells clients."""

    urls: list[str]
    event_id: str
    holds: set[str] = field(default_factory=set)
    orders: set[str] = field(default_factory=set)
    acked_at: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    stopping: bool = False

    async def send(
        self, client: httpx.AsyncClient, fan: int, path: str, headers: dict[str, str], body: Any
    ) -> httpx.Response | None:
        for attempt in range(10_000):
            if self.stopping:
                return None
            url = self.urls[(fan + attempt) % len(self.urls)]
            with contextlib.suppress(httpx.TransportError):
                response = await client.post(url + path, headers=headers, json=body)
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
                if response.status_code != 503 and not in_flight(response):
                    return response
            await asyncio.sleep(0.05)
        return None

    async def fan(self, client: httpx.AsyncClient, fan: int) -> None:
        user = f"fan{fan}"
        token = {"Authorization": f"Bearer {WriterApi.token(user)}"}
        for n in range(4):
            held = await self.send(
                client,
                fan,
                f"/v1/events/{self.event_id}/holds",
                {**token, "Idempotency-Key": f"h{fan}-{n}"},
                {"best_available": {"quantity": 1}},
            )
            if held is None:
                return
            assert held.status_code == 201, held.text
            self.holds.add(held.json()["hold_id"])
            self.acked_at.append(time.monotonic())
            bought = await self.send(
                client,
                fan,
                f"/v1/events/{self.event_id}/orders",
                {**token, "Idempotency-Key": f"o{fan}-{n}"},
                {"hold_id": held.json()["hold_id"], "payment_token": "tok_approve"},
            )
            if bought is None:
                return
            assert bought.status_code == 201, bought.text
            self.orders.add(bought.json()["order_id"])
            self.acked_at.append(time.monotonic())
            await asyncio.sleep(0.3)


def in_flight(response: httpx.Response) -> bool:
    if response.status_code != 409:
        return False
    code: str = response.json().get("error", {}).get("code", "")
    return code == "idempotency_key_in_flight"


async def test_owner_sigkilled_mid_stream_loses_nothing_and_writes_resume(
    cluster: Cluster,
) -> None:
    event_id = await create_event(cluster.urls[0])
    stream = Stream(list(cluster.urls), event_id)
    async with httpx.AsyncClient(timeout=30) as client:
        fans = [asyncio.create_task(stream.fan(client, n)) for n in range(FANS)]
        await asyncio.sleep(0.5)
        assert stream.acked_at, "the stream is under way before the kill"
        _, lease_left_s = lease_of(cluster.database_url, event_id)
        cluster.writers[0].kill()
        killed = time.monotonic()
        stream.urls.remove(cluster.urls[0])  # the load balancer's health check drops it
        bound_s = lease_left_s + FAILOVER_SLACK_S
        async with asyncio.timeout(bound_s + 30):
            await asyncio.gather(*fans)
    resumed = [at - killed for at in stream.acked_at if at > killed]
    assert resumed, "no write was acknowledged after the kill"
    print(f"\n  lease left {lease_left_s:.1f} s; first write after the kill at {resumed[0]:.1f} s")
    assert resumed[0] <= bound_s, f"writes resumed {resumed[0]:.1f} s after the kill"
    owner, _ = lease_of(cluster.database_url, event_id)
    assert owner.split()[0] in ("w1", "w2"), owner
    with psycopg.connect(cluster.database_url) as conn:
        holds = {
            str(row[0])
            for row in conn.execute(
                "SELECT hold_id FROM holds WHERE event_id = %s", (event_id,)
            ).fetchall()
        }
        orders = {
            str(row[0])
            for row in conn.execute(
                "SELECT order_id FROM orders WHERE event_id = %s AND status = 'confirmed'",
                (event_id,),
            ).fetchall()
        }
    assert stream.holds <= holds, f"acknowledged holds lost: {stream.holds - holds}"
    assert stream.orders <= orders, f"acknowledged orders lost: {stream.orders - orders}"
    assert len(stream.orders) == FANS * 4
    report = audit(cluster.database_url)
    assert report.ok, report
