"""The regional read node against the real writer, PostgreSQL, Valkey and NATS: convergence
after sales, restarts, lost and duplicated messages and broker restarts; SSE; caching headers;
friends; bad input."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import brotli
import httpx
import nats
import pytest
import zstandard
from writer_support import ROOM, THEATRE, WRITER_JWT_SECRET, WriterApi, settings, writer_env

import tessera_core as tc
from tessera_ops.processes import ServiceProcess, start_regional, start_writer
from tessera_ops.servers import RunningServer

pytestmark = pytest.mark.anyio


@dataclass
class Stack:
    writer: ServiceProcess
    regional: ServiceProcess
    nats_url: str
    api: WriterApi
    reader: httpx.AsyncClient
    event: str


def regional_env(nats_url: str, writer_url: str) -> dict[str, str]:
    return {
        "TESSERA_NATS_URL": nats_url,
        "TESSERA_WRITER_URL": writer_url,
        "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
    }


async def open_stack(
    database_url: str, redis_url: str, nats_url: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    writer_settings = settings(database_url, redis_url, nats_url)
    writer = start_writer(tmp_path / "writer", writer_env(writer_settings))
    regional: ServiceProcess | None = None
    try:
        async with httpx.AsyncClient(base_url=writer.url, timeout=30) as client:
            api = WriterApi(client, writer_settings)
            event = await api.create_event(venue=ROOM, per_user_limit=40)
            regional = start_regional(tmp_path / "regional", regional_env(nats_url, writer.url))
            async with httpx.AsyncClient(base_url=regional.url, timeout=30) as reader:
                yield Stack(writer, regional, nats_url, api, reader, event)
    finally:
        if regional is not None:
            regional.stop()
        writer.stop()


@pytest.fixture
async def stack(
    database_url: str, redis_url: str, nats_url: str, tmp_path: Path
) -> AsyncIterator[Stack]:
    async for opened in open_stack(database_url, redis_url, nats_url, tmp_path):
        yield opened


async def writer_maps(stack: Stack) -> dict[str, tc.SeatMap]:
    maps = {}
    for section in ("S", "C"):
        response = await stack.api.client.get(
            f"/v1/events/{stack.event}/sections/{section}/snapshot"
        )
        maps[section] = tc.SeatMap.decode(response.content)
    return maps


async def reader_maps(reader: httpx.AsyncClient, event: str) -> dict[str, tc.SeatMap]:
    maps = {}
    for section in ("S", "C"):
        response = await reader.get(f"/v1/events/{event}/sections/{section}/seatmap")
        assert response.status_code == 200, response.text
        maps[section] = tc.SeatMap.decode(response.content)
    return maps


async def converged(
    stack: Stack, reader: httpx.AsyncClient | None = None, timeout_s: float = 10
) -> None:
    reader = reader or stack.reader
    deadline = time.monotonic() + timeout_s
    while True:
        want, got = await writer_maps(stack), await reader_maps(reader, stack.event)
        if want == got:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged: writer {want} reader {got}")
        await asyncio.sleep(0.05)


async def hold(stack: Stack, user: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    response = await stack.api.hold(stack.event, user, body, key)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_holds_releases_and_sales_reach_the_regional_map(stack: Stack) -> None:
    first = await hold(stack, "ann", {"seats": ["S:A:1", "S:A:2"]}, "a")
    second = await hold(stack, "bob", {"best_available": {"quantity": 3}}, "b")
    await converged(stack)
    await stack.api.release("ann", first["hold_id"])
    sold = await stack.api.order("bob", second["hold_id"], "tok_approve", "o")
    assert sold.status_code == 201
    await converged(stack)
    document = (await stack.reader.get(f"/v1/events/{stack.event}/seatmap?format=json")).json()
    stalls = next(s for s in document["sections"] if s["section_id"] == "S")
    assert "S:A:1" in stalls["available"]
    assert not set(second["seats"]) & set(stalls["available"])


async def test_restarted_node_bootstraps_and_converges(stack: Stack, tmp_path: Path) -> None:
    for n in range(5):
        await hold(stack, f"u{n}", {"best_available": {"quantity": 2}}, f"k{n}")
    stack.regional.stop()
    for n in range(5, 10):
        await hold(stack, f"u{n}", {"best_available": {"quantity": 2}}, f"k{n}")
    stack.regional.start()
    await converged(stack)
    ready = await stack.reader.get("/readyz")
    assert ready.status_code == 200


async def test_purged_stream_gap_is_detected_and_resynced(stack: Stack) -> None:
    await hold(stack, "ann", {"seats": ["S:A:1"]}, "a")
    await converged(stack)
    stack.regional.stop()
    await hold(stack, "ann", {"seats": ["S:A:2"]}, "b")
    await hold(stack, "ann", {"seats": ["S:A:3"]}, "c")
    nc = await nats.connect(stack.nats_url)
    try:
        await nc.jetstream().purge_stream("SEATS")  # a broker that lost the messages
    finally:
        await nc.close()
    stack.regional.start()
    await hold(stack, "ann", {"seats": ["S:A:4"]}, "d")
    await converged(stack)
    metrics = (await stack.reader.get("/metrics")).text
    assert "tessera_feed_resyncs_total" in metrics


async def test_duplicated_and_reordered_messages_change_nothing(stack: Stack) -> None:
    await hold(stack, "ann", {"seats": ["S:A:1"]}, "a")
    await hold(stack, "ann", {"seats": ["S:A:2"]}, "b")
    await converged(stack)
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        subscription = await js.subscribe(f"seats.{stack.event}.S", ordered_consumer=True)
        originals = [await subscription.next_msg(timeout=2) for _ in range(2)]
        for message in reversed(originals):  # older versions, again, out of order
            headers = {k: v for k, v in (message.headers or {}).items() if k != "Nats-Msg-Id"}
            await js.publish(message.subject, message.data, headers=headers)
        await js.publish(f"seats.{stack.event}.S", b"\x00garbage", headers={"Tessera-Event": "x"})
    finally:
        await nc.close()
    await asyncio.sleep(0.5)
    await converged(stack)
    metrics = (await stack.reader.get("/metrics")).text
    assert "tessera_feed_duplicates_total 2.0" in metrics
    assert "tessera_feed_malformed_total 1.0" in metrics
    assert (await stack.reader.get("/healthz")).status_code == 200


async def test_node_recovers_from_a_nats_restart_without_being_restarted(
    database_url: str, redis_url: str, fresh_nats: RunningServer, tmp_path: Path
) -> None:
    async for stack in open_stack(database_url, redis_url, fresh_nats.url, tmp_path):
        await hold(stack, "ann", {"seats": ["S:A:1"]}, "a")
        await converged(stack)
        fresh_nats.kill()
        fresh_nats.restart()
        await hold(stack, "bob", {"seats": ["S:A:2"]}, "b")
        await hold(stack, "cid", {"seats": ["C:A:1"]}, "c")
        await converged(stack, timeout_s=20)


async def read_sse(
    lines: AsyncIterator[str], until: Any, timeout_s: float
) -> list[tuple[str, str, str]]:
    """Frames `(event, id, data)` until `until(frames)` holds or the time runs out."""
    frames: list[tuple[str, str, str]] = []
    event = event_id = data = ""
    async with asyncio.timeout(timeout_s):
        async for line in lines:
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and event:
                frames.append((event, event_id, data))
                event = event_id = data = ""
                if until(frames):
                    return frames
    return frames


async def test_sse_sees_a_sale_within_500_ms_and_resumes_losslessly(stack: Stack) -> None:
    url = f"/v1/events/{stack.event}/seatmap/stream"
    async with stack.reader.stream("GET", url) as response:
        lines = response.aiter_lines()
        first = await read_sse(lines, lambda f: len(f) >= 1, 5)
        assert first[0][0] == "snapshot"
        started = time.monotonic()
        await hold(stack, "ann", {"seats": ["S:A:5"]}, "a")
        frames = await read_sse(lines, lambda f: any('"S:A:5"' in d for _, _, d in f), 2)
        assert time.monotonic() - started < 0.5, "the sale took too long to reach the stream"
        last_id = frames[-1][1]
    await hold(stack, "bob", {"seats": ["S:A:6"]}, "b")
    await hold(stack, "cid", {"seats": ["C:A:2"]}, "c")
    await asyncio.sleep(0.3)
    async with stack.reader.stream("GET", url, headers={"Last-Event-ID": last_id}) as response:
        resumed = await read_sse(response.aiter_lines(), lambda f: len(f) >= 1, 5)
    kind, _, data = resumed[0]
    assert kind == "delta", "resume from a known version needs no snapshot"
    assert '"S:A:6"' in data and '"C:A:2"' in data
    assert '"S:A:5"' not in data, "nothing sent twice"


async def test_caching_headers_and_encodings(stack: Stack) -> None:
    for n in range(1, 20, 3):
        await hold(stack, "ann", {"seats": [f"S:B:{n}"]}, f"k{n}")
    await converged(stack)
    url = f"/v1/events/{stack.event}/seatmap?format=json"
    plain = await stack.reader.get(url, headers={"Accept-Encoding": "identity"})
    assert plain.headers["cache-control"] == "public, max-age=1, stale-while-revalidate=5"
    assert plain.headers["vary"] == "Accept-Encoding"
    decompress = {
        "br": brotli.decompress,
        "zstd": lambda b: zstandard.ZstdDecompressor().decompress(b),
        "gzip": gzip.decompress,
    }
    for encoding, undo in decompress.items():
        # httpx decodes Content-Encoding by itself: read the bytes as they came on the wire.
        async with stack.reader.stream("GET", url, headers={"Accept-Encoding": encoding}) as raw:
            wire = b"".join([chunk async for chunk in raw.aiter_raw()])
        assert raw.headers["content-encoding"] == encoding
        assert undo(wire) == plain.content
        again = await stack.reader.get(
            url, headers={"Accept-Encoding": encoding, "If-None-Match": raw.headers["etag"]}
        )
        assert again.status_code == 304
    etag = plain.headers["etag"]
    assert (await stack.reader.get(url, headers={"If-None-Match": etag})).status_code == 304
    await hold(stack, "bob", {"seats": ["S:B:20"]}, "z")
    await converged(stack)
    assert (await stack.reader.get(url, headers={"If-None-Match": etag})).status_code == 200


async def test_friends_only_mutual_sharing_and_updated_on_purchase(stack: Stack) -> None:
    client, api = stack.api.client, stack.api

    async def friend(user: str, other: str) -> None:
        assert (
            await client.put(f"/v1/me/friends/{other}", headers=api.headers(user))
        ).status_code == 200

    async def share(user: str, value: bool) -> None:
        assert (
            await client.put("/v1/me/sharing", headers=api.headers(user), json={"share": value})
        ).status_code == 200

    await friend("ann", "bob")
    await friend("bob", "ann")
    await friend("ann", "cid")
    await friend("cid", "ann")
    await friend("ann", "dee")  # one-way: dee never added ann
    for user in ("bob", "dee"):
        await share(user, True)
    await share("cid", False)
    for user in ("bob", "cid", "dee", "eve"):
        held = await hold(stack, user, {"best_available": {"quantity": 1}}, f"h-{user}")
        assert (
            await api.order(user, held["hold_id"], "tok_approve", f"o-{user}")
        ).status_code == 201
    url = f"/v1/events/{stack.event}/friends"
    deadline = time.monotonic() + 5
    while True:
        found = (await stack.reader.get(url, headers=api.headers("ann"))).json()["friends"]
        if found or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert [f["user_id"] for f in found] == ["bob"], "only mutual friends who share"
    late = await hold(stack, "bob", {"best_available": {"quantity": 1}}, "h-bob-2")
    await api.order("bob", late["hold_id"], "tok_approve", "o-bob-2")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = (await stack.reader.get(url, headers=api.headers("ann"))).json()["friends"]
        if len(found[0]["seats"]) == 2:
            break
        await asyncio.sleep(0.05)
    assert len(found[0]["seats"]) == 2, "updated when they buy"
    assert (await stack.reader.get(url)).status_code == 401


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/events/{event}/seatmap?format=xml", 422, "invalid_request"),
        ("/v1/events/00000000-0000-4000-8000-000000000000/seatmap", 404, "not_found"),
        ("/v1/events/not-a-uuid/seatmap", 404, "not_found"),
        ("/v1/events/{event}/sections/NOPE/seatmap", 404, "not_found"),
        ("/v1/events/00000000-0000-4000-8000-000000000000/seatmap/stream", 404, "not_found"),
        ("/v1/events/{event}/friends", 401, "unauthorized"),
        ("/v1/nothing", 404, "not_found"),
    ],
)
async def test_bad_input(stack: Stack, path: str, status: int, code: str) -> None:
    response = await stack.reader.get(path.format(event=stack.event))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_sales_reach_both_regions_through_the_mirror(
    database_url: str,
    redis_url: str,
    nats_hub: RunningServer,
    nats_region: RunningServer,
    tmp_path: Path,
) -> None:
    """The writer publishes in the hub; one node reads the hub, one reads region `eu`'s mirror."""
    async for stack in open_stack(database_url, redis_url, nats_hub.url, tmp_path):
        remote = start_regional(
            tmp_path / "eu-node", regional_env(nats_region.url, stack.writer.url)
        )
        try:
            async with httpx.AsyncClient(base_url=remote.url, timeout=30) as far:
                first = await hold(stack, "ann", {"seats": ["S:A:1", "S:A:2"]}, "a")
                second = await hold(stack, "bob", {"best_available": {"quantity": 2}}, "b")
                await converged(stack)
                await converged(stack, far)
                await stack.api.release("ann", first["hold_id"])
                assert (
                    await stack.api.order("bob", second["hold_id"], "tok_approve", "o")
                ).status_code == 201
                await converged(stack)
                await converged(stack, far)
                near_json = (
                    await stack.reader.get(f"/v1/events/{stack.event}/seatmap?format=json")
                ).json()
                far_json = (await far.get(f"/v1/events/{stack.event}/seatmap?format=json")).json()
                assert near_json == far_json
        finally:
            remote.stop()


async def test_blocked_seats_are_unavailable_before_the_first_change(stack: Stack) -> None:
    """A fresh event's sections have no snapshot yet: the node must still not offer the venue's
    blocked seats (the theatre blocks 4 in ORCH row J)."""
    event = await stack.api.create_event(venue=json.loads(THEATRE.read_bytes()))
    deadline = time.monotonic() + 10
    while (
        answer := await stack.reader.get(f"/v1/events/{event}/sections/ORCH/seatmap")
    ).status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    writer = await stack.api.client.get(f"/v1/events/{event}/sections/ORCH/snapshot")
    assert tc.SeatMap.decode(answer.content) == tc.SeatMap.decode(writer.content)
    assert tc.SeatMap.decode(answer.content).available_count == 205
