"""Unknown ids tried as a scraper or a botnet would (issue 15, item 1): random event ids from
many addresses cost the writer nothing, and the read nodes one request per path per negative
TTL; malformed ids are refused by the edge alone."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from edge_support import EdgeStack

from tessera import limits
from tessera_ops.processes import ServiceProcess

pytestmark = pytest.mark.anyio

FLOOD = 300
SPELLED = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


@pytest.fixture(scope="module")
def stack(edge_stack: EdgeStack) -> EdgeStack:
    return edge_stack


def writer_event_requests(writer: ServiceProcess) -> float:
    """`GET /v1/events/{id}` the writer has answered (any status), from its /metrics."""
    total = 0.0
    for line in httpx.get(f"{writer.url}/metrics").text.splitlines():
        if line.startswith("tessera_http_request_duration_seconds_count{") and (
            'route="/v1/events/{event_id}"' in line or 'route="/v1/events/{event_id:str}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


READ_ROUTES = (
    'route="/v1/events/{event_id}/seatmap"',
    'route="/v1/events/{event_id}/sections/{section_id}/seatmap"',
)


def read_node_requests(stack: EdgeStack) -> float:
    """Seat-map and section GETs the read nodes have answered (any status)."""
    total = 0.0
    for regional in stack.regionals:
        for line in httpx.get(f"{regional.url}/metrics").text.splitlines():
            if line.startswith("tessera_http_request_duration_seconds_count{") and any(
                route in line for route in READ_ROUTES
            ):
                total += float(line.rsplit(" ", 1)[1])
    return total


async def flood(edge: ServiceProcess, paths: list[str]) -> list[httpx.Response]:
    """Every path once, each from an address of its own (the edge believes loopback's
    X-Forwarded-For), so no per-address budget is what stops them."""
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        return await asyncio.gather(
            *(
                client.get(path, headers={"X-Forwarded-For": f"10.{i // 250}.{i % 250}.1"})
                for i, path in enumerate(paths)
            )
        )


async def test_random_event_ids_reach_neither_the_writer_nor_twice_the_read_nodes(
    stack: EdgeStack,
) -> None:
    edge = stack.start_edge("edge-unknown")
    known = stack.create_event()
    stack.wait_seen(known)
    writer_before = writer_event_requests(stack.writer)
    readers_before = read_node_requests(stack)
    ids = [str(uuid.uuid4()) for _ in range(FLOOD)]
    details = [f"/v1/events/{event}" for event in ids]
    first = await flood(edge, details)
    assert {a.status_code for a in first} == {404}
    assert {a.json()["error"]["code"] for a in first} == {"not_found"}
    assert writer_event_requests(stack.writer) == writer_before  # the writer saw none
    # One existence check per id, answered by a read node from memory.
    assert read_node_requests(stack) - readers_before == FLOOD
    again = await flood(edge, details)
    assert {(a.status_code, a.headers["x-cache"]) for a in again} == {(404, "NEGATIVE")}
    assert {a.json()["error"]["code"] for a in again} == {"not_found"}
    assert read_node_requests(stack) - readers_before == FLOOD  # none this time
    assert writer_event_requests(stack.writer) == writer_before
    # A real event's details still come from the writer.
    real = httpx.get(f"{edge.url}/v1/events/{known}")
    assert real.status_code == 200, real.text
    assert writer_event_requests(stack.writer) == writer_before + 1
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert f'tessera_edge_unknown_ids_total{{result="writer_spared"}} {FLOOD}.0' in metrics
    assert f'tessera_edge_unknown_ids_total{{result="stored"}} {FLOOD}.0' in metrics
    assert f'tessera_edge_cache_requests_total{{outcome="NEGATIVE"}} {FLOOD}.0' in metrics
    assert f"tessera_edge_negative_cache_entries {FLOOD}.0" in metrics


async def test_unknown_seat_maps_and_sections_are_remembered_then_forgotten(
    stack: EdgeStack,
) -> None:
    edge = stack.start_edge("edge-unknown-maps")
    known = stack.create_event()
    stack.wait_seen(known)
    paths = [f"/v1/events/{uuid.uuid4()}/seatmap" for _ in range(50)]
    paths += [f"/v1/events/{known}/sections/NOPE{i}/seatmap" for i in range(50)]
    before = read_node_requests(stack)
    first = await flood(edge, paths)
    assert {a.status_code for a in first} == {404}
    assert read_node_requests(stack) - before == 100
    second = await flood(edge, paths)
    assert {a.headers["x-cache"] for a in second} == {"NEGATIVE"}
    assert read_node_requests(stack) - before == 100
    await asyncio.sleep(limits.edge_negative_ttl_s + 0.2)  # an event created since would show
    third = await flood(edge, paths[:1])
    assert (third[0].status_code, third[0].headers["x-cache"]) == (404, "MISS")
    assert read_node_requests(stack) - before == 101
    # The seat map fans use is still served from the micro-cache, not pushed out.
    assert httpx.get(f"{edge.url}/v1/events/{known}/seatmap").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/events/not-a-uuid",
        "/v1/events/not-a-uuid/seatmap",
        f"/v1/events/{{{SPELLED}}}/seatmap",  # one event, spelled another way
        f"/v1/events/{SPELLED.upper()}/seatmap",
        f"/v1/events/urn:uuid:{SPELLED}",
        f"/v1/events/{SPELLED}/sections/bad%20id/seatmap",
    ],
)
async def test_malformed_ids_are_refused_by_the_edge_alone(stack: EdgeStack, path: str) -> None:
    edge = stack.edges[0] if stack.edges else stack.start_edge("edge-malformed")
    writer_before = writer_event_requests(stack.writer)
    readers_before = read_node_requests(stack)
    answer = httpx.get(f"{edge.url}{path}")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["error"]["code"] == "not_found"
    assert read_node_requests(stack) == readers_before
    assert writer_event_requests(stack.writer) == writer_before
