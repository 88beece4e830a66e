"""The edge against real processes (writer, two regional read nodes, Valkey, NATS, PostgreSQL):
the micro-cache (single flight, revalidation, 304s, stale, 503, failover), writes passed through
(their bytes, their answers, an unreachable writer), SSE proxied, bad input."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from edge_support import (
    EdgeStack,
    concurrent_gets,
    fan_headers,
    origin_seatmap_requests,
    wait_seen_on,
)

from tessera_ops.processes import ServiceProcess, start_regional
from tessera_ops.servers import free_port

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def stack(edge_stack: EdgeStack) -> EdgeStack:
    return edge_stack


@pytest.fixture(scope="module")
def edge(stack: EdgeStack) -> ServiceProcess:
    """An edge whose entries live 30 s: a thousand requests fit in one TTL even on a loaded
    machine, so "one origin request" is exact, not a race."""
    return stack.start_edge("edge-main", TESSERA_CACHE_TTL_S="30")


async def test_a_thousand_fans_on_a_cold_key_make_one_origin_request(
    stack: EdgeStack, edge: ServiceProcess
) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    before = sum(origin_seatmap_requests(r) for r in stack.regionals)
    answers = await concurrent_gets(edge.url, f"/v1/events/{event}/seatmap", 1_000)
    assert {a.status for a in answers} == {200}
    outcomes = [a.headers["x-cache"] for a in answers]
    assert outcomes.count("MISS") == 1
    assert outcomes.count("HIT") == 999
    assert len({a.body for a in answers}) == 1
    assert sum(origin_seatmap_requests(r) for r in stack.regionals) - before == 1


async def test_revalidation_and_304s(stack: EdgeStack, tmp_path: Path) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    edge = stack.start_edge("edge-short", TESSERA_CACHE_TTL_S="0.3")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        first = await client.get(f"/v1/events/{event}/seatmap", headers={"Accept-Encoding": "br"})
        assert first.headers["x-cache"] == "MISS"
        etag = first.headers["etag"]
        again = await client.get(
            f"/v1/events/{event}/seatmap",
            headers={"Accept-Encoding": "br", "If-None-Match": etag},
        )
        assert again.status_code == 304
        assert again.headers["x-cache"] == "HIT"
        assert again.headers["etag"] == etag
        assert again.content == b""
        await asyncio.sleep(0.5)  # expired: the next fetch revalidates with If-None-Match
        renewed = await client.get(f"/v1/events/{event}/seatmap", headers={"Accept-Encoding": "br"})
        assert renewed.headers["x-cache"] == "MISS"
        assert renewed.headers["etag"] == etag
        assert renewed.content == first.content
        assert int(renewed.headers["age"]) == 0
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert 'tessera_edge_origin_requests_total{result="not_modified"} 1.0' in metrics


async def test_stale_within_the_window_then_503_then_fresh_again(
    stack: EdgeStack, tmp_path: Path
) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    origin = start_regional(tmp_path / "origin", stack.regional_env())
    edge = stack.start_edge(
        "edge-stale", origins=[origin], TESSERA_CACHE_TTL_S="1", TESSERA_STALE_S="3"
    )
    url = f"{edge.url}/v1/events/{event}/seatmap"
    try:
        fresh = httpx.get(url)
        fetched = time.monotonic()
        assert fresh.headers["x-cache"] == "MISS"
        origin.kill()
        await asyncio.sleep(fetched + 1.2 - time.monotonic())  # past the TTL
        stale = httpx.get(url)
        assert (stale.status_code, stale.headers["x-cache"]) == (200, "STALE")
        assert stale.content == fresh.content
        await asyncio.sleep(fetched + 4.3 - time.monotonic())  # past TTL + stale window
        gone = httpx.get(url)
        assert gone.status_code == 503
        assert gone.json()["error"]["code"] == "origin_unavailable"
        assert gone.headers["retry-after"] == "1"
        origin = start_regional(tmp_path / "origin", stack.regional_env(), port=origin.port)
        wait_seen_on(origin, event)
        deadline = time.monotonic() + 10
        while (back := httpx.get(url)).status_code != 200:
            assert time.monotonic() < deadline, back.text
            await asyncio.sleep(0.2)
        assert back.headers["x-cache"] == "MISS"
        assert httpx.get(url).headers["x-cache"] == "HIT"
    finally:
        origin.stop()


async def test_failover_to_the_next_origin(stack: EdgeStack, tmp_path: Path) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    first = start_regional(tmp_path / "first", stack.regional_env())
    edge = stack.start_edge(
        "edge-failover", origins=[first, stack.regionals[0]], TESSERA_CACHE_TTL_S="0.2"
    )
    url = f"{edge.url}/v1/events/{event}/seatmap"
    assert httpx.get(url).status_code == 200
    first.kill()
    await asyncio.sleep(0.3)
    answer = httpx.get(url)
    assert (answer.status_code, answer.headers["x-cache"]) == (200, "MISS")


async def test_writes_pass_through_unchanged(stack: EdgeStack, edge: ServiceProcess) -> None:
    """Hold, replay, extend, buy, release: the fast write path (edge/fastwrites.py) passes each
    to the writer on the event's path and its answer back as the writer gave it."""
    event = stack.create_event()
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        body = {"best_available": {"quantity": 2}}
        held = await client.post(
            f"/v1/events/{event}/holds", json=body, headers=fan_headers("ann", "h1")
        )
        assert held.status_code == 201, held.text
        hold = held.json()
        assert hold["event_id"] == event and len(hold["seats"]) == 2
        assert held.headers["location"] == f"/v1/holds/{hold['hold_id']}"
        assert held.headers["content-type"].startswith("application/json")
        assert "transfer-encoding" not in held.headers
        replay = await client.post(
            f"/v1/events/{event}/holds", json=body, headers=fan_headers("ann", "h1")
        )
        assert replay.status_code == 201
        assert replay.json() == hold
        assert replay.headers["idempotent-replayed"] == "true"
        mine = await client.get(f"/v1/holds/{hold['hold_id']}", headers=fan_headers("ann"))
        assert mine.json()["seats"] == hold["seats"]
        extended = await client.post(
            f"/v1/events/{event}/holds/{hold['hold_id']}/extend", headers=fan_headers("ann", "x1")
        )
        assert extended.status_code == 200, extended.text
        assert extended.json()["expires_at"] > hold["expires_at"]
        order = await client.post(
            f"/v1/events/{event}/orders",
            json={"hold_id": hold["hold_id"], "payment_token": "tok_approve"},
            headers=fan_headers("ann", "o1"),
        )
        assert order.status_code == 201, order.text
        assert order.json()["seats"] == hold["seats"]
        other = await client.get(
            f"/v1/orders/{order.json()['order_id']}", headers=fan_headers("bob")
        )
        assert other.status_code == 404
        second = await client.post(
            f"/v1/events/{event}/holds", json={"seats": ["S:B:1"]}, headers=fan_headers("ann", "h2")
        )
        assert second.status_code == 201, second.text
        released = await client.delete(
            f"/v1/events/{event}/holds/{second.json()['hold_id']}", headers=fan_headers("ann", "r")
        )
        assert released.status_code == 204, released.text
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert 'tessera_edge_writer_requests_total{result="2xx"}' in metrics
    assert 'route="/v1/events/{event_id}/holds",status="201"' in metrics


async def test_a_header_byte_outside_ascii_reaches_the_writer(
    stack: EdgeStack, edge: ServiceProcess
) -> None:
    """The fan's bytes go to the writer unchanged, which answers them: never an edge 500."""
    event = stack.create_event()
    headers = {**fan_headers("bytes"), "Idempotency-Key": "\xe9"}
    wire = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
    response = httpx.post(
        f"{edge.url}/v1/events/{event}/holds",
        headers=[*wire, (b"content-type", b"application/json")],
        content=b'{"seats": ["S:B:2"]}',
    )
    assert response.status_code < 500, response.text
    writer_direct = httpx.post(
        f"{stack.writer.url}/v1/events/{event}/holds",
        headers=[*wire, (b"content-type", b"application/json")],
        content=b'{"seats": ["S:B:3"]}',
    )
    assert response.status_code == writer_direct.status_code, (response.text, writer_direct.text)


async def test_an_unreachable_writer_is_a_502_with_retry_after(stack: EdgeStack) -> None:
    edge = stack.start_edge("edge-no-writer", TESSERA_WRITER_URL=f"http://127.0.0.1:{free_port()}")
    event = stack.create_event()
    for method, path in [
        ("POST", f"/v1/events/{event}/holds"),
        ("POST", f"/v1/events/{event}/orders"),
        ("GET", "/v1/me"),
    ]:
        response = httpx.request(
            method, f"{edge.url}{path}", headers=fan_headers("lost", "k"), json={"seats": ["S:A:1"]}
        )
        assert response.status_code == 502, (path, response.text)
        assert response.json()["error"]["code"] == "writer_unavailable"
        assert response.headers["retry-after"] == "1"


async def test_sse_is_proxied_without_buffering(stack: EdgeStack, edge: ServiceProcess) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        async with client.stream("GET", f"/v1/events/{event}/seatmap/stream") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.aiter_lines()
            held = await client.post(
                f"/v1/events/{event}/holds",
                json={"seats": ["S:A:1"]},
                headers=fan_headers("sse", "s1"),
            )
            assert held.status_code == 201
            deadline = time.monotonic() + 5
            seen = ""
            while "S" not in seen or "data:" not in seen:
                seen += await asyncio.wait_for(anext(lines), deadline - time.monotonic()) + "\n"
        assert "data:" in seen


# Status 0: the writer's own 4xx passes through (its codes are in docs/api.md).
BAD_INPUT: list[tuple[str, str, dict[str, object], int, str | None]] = [
    ("GET", "/v1/events/not-a-uuid/seatmap", {}, 404, "not_found"),
    ("GET", "/v1/events/{event}/sections/no%20such/seatmap", {}, 404, "not_found"),
    ("GET", "/v1/events/{event}/seatmap?format=xml", {}, 422, "invalid_request"),
    ("GET", "/v1/nothing/here", {}, 404, "not_found"),
    ("POST", "/v1/events/{event}/holds", {"content": b"{not json"}, 400, "malformed_json"),
    ("POST", "/v1/events/{event}/holds", {"json": {"seats": 7}}, 0, None),
    ("POST", "/v1/events/{event}/holds", {"json": {"extra": 1}}, 0, None),
    ("POST", "/v1/events/{event}/holds", {"content": b"x" * 70_000}, 413, "payload_too_large"),
    (
        "POST",
        "/v1/events/{event}/holds",
        {"content": b"seats=1", "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
    ),
    ("POST", "/v1/events/nope/holds", {"json": {}}, 404, "not_found"),
    ("POST", "/v1/events/{event}/holds/nope/extend", {}, 404, "not_found"),
    ("POST", "/v1/events/nope/holds/{event}/extend", {}, 404, "not_found"),
    ("DELETE", "/v1/events/{event}/holds/nope", {}, 404, "not_found"),
    ("DELETE", "/v1/events/{event}/holds", {}, 405, "method_not_allowed"),
    ("POST", "/v1/events/{event}/orders", {"content": b"[]"}, 0, None),
    ("POST", "/v1/events/{event}/orders", {"content": b"x" * 70_000}, 413, "payload_too_large"),
    ("POST", "/v1/events/nope/orders", {"json": {}}, 404, "not_found"),
    ("POST", "/v1/events/{event}/orders/", {"content": b"[]"}, 0, None),
    ("POST", "/v1/orders", {"json": {}}, 404, "not_found"),
    ("POST", "/v1/holds/{event}/extend", {}, 404, "not_found"),
    ("GET", "/v1/orders/nope", {}, 404, "not_found"),
    ("PUT", "/v1/me/friends/bad%20id", {}, 404, "not_found"),
]


@pytest.mark.parametrize("case", BAD_INPUT, ids=[f"{c[0]} {c[1]}" for c in BAD_INPUT])
async def test_bad_input_gets_a_clean_4xx(
    stack: EdgeStack,
    edge: ServiceProcess,
    case: tuple[str, str, dict[str, object], int, str | None],
) -> None:
    method, path, given, status, code = case
    kwargs = dict(given)
    event = stack.events[0] if stack.events else stack.create_event()
    extra = kwargs.pop("headers", {})
    assert isinstance(extra, dict)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        response = await client.request(
            method,
            path.format(event=event),
            headers={**fan_headers("bad", "k"), **extra},
            **kwargs,  # type: ignore[arg-type]
        )
    assert 400 <= response.status_code < 500, response.text
    if status:
        assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    if code is not None:
        assert error["code"] == code


async def test_writes_need_a_valid_token(stack: EdgeStack, edge: ServiceProcess) -> None:
    event = stack.create_event()
    response = httpx.post(
        f"{edge.url}/v1/events/{event}/holds",
        json={"seats": ["S:A:1"]},
        headers={"Authorization": "Bearer forged.token.here", "Idempotency-Key": "x"},
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
