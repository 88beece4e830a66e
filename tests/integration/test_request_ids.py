"""Following a request from the edge to the writer (tessera/requests.py, docs/operations.md):
a hold and a checkout sent with a W3C traceparent through a real edge are answered with that
trace id as `X-Request-Id`, and the writer's access lines and batch log lines carry it too."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from edge_support import EdgeStack, fan_headers

from tessera_ops.processes import ServiceProcess

TRACE_HOLD = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACE_ORDER = "0af7651916cd43dd8448eb211c80319c"


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-b7ad6b7169203331-01"


def log_entries(service: ServiceProcess, within_s: float = 5.0, wanted: int = 4) -> list[Any]:
    """The JSON lines of a service's log (access lines are written a few times a second)."""
    deadline = time.monotonic() + within_s
    while True:
        entries = []
        for line in service.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                entries.append(json.loads(line))
        found = [e for e in entries if e.get("request_id") in (TRACE_HOLD, TRACE_ORDER)]
        if len(found) >= wanted or time.monotonic() > deadline:
            return entries
        time.sleep(0.1)


def test_a_write_is_followed_from_the_edge_into_the_writers_batch(edge_stack: EdgeStack) -> None:
    edge = edge_stack.start_edge("edge-trace")
    event = edge_stack.create_event()
    edge_stack.wait_seen(event)
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        held = client.post(
            f"/v1/events/{event}/holds",
            json={"seats": ["C:A:9"]},
            headers={**fan_headers("tracy", "h"), "traceparent": traceparent(TRACE_HOLD)},
        )
        assert held.status_code == 201, held.text
        assert held.headers["x-request-id"] == TRACE_HOLD
        bought = client.post(
            f"/v1/events/{event}/orders",
            json={"hold_id": held.json()["hold_id"], "payment_token": "tok_approve"},
            headers={**fan_headers("tracy", "o"), "traceparent": traceparent(TRACE_ORDER)},
        )
        assert bought.status_code == 201, bought.text
        assert bought.headers["x-request-id"] == TRACE_ORDER
        plain = client.get(f"/v1/events/{event}/seatmap")
        assert len(plain.headers["x-request-id"]) == 32, "a request without one gets an id"
    writer = log_entries(edge_stack.writer)
    access = [e for e in writer if e.get("logger") == "access"]
    routes = {e["request_id"]: e["route"] for e in access}
    assert routes[TRACE_HOLD] == "/v1/events/{event_id}/holds"
    assert routes[TRACE_ORDER] == "/v1/events/{event_id}/orders"
    batches = [e for e in writer if e.get("message") == "batch committed"]
    assert any(TRACE_HOLD in e["request_ids"] for e in batches)
    assert any(TRACE_ORDER in e["request_ids"] for e in batches)
    at_edge = {e["request_id"] for e in log_entries(edge, wanted=2) if e.get("logger") == "access"}
    assert {TRACE_HOLD, TRACE_ORDER} <= at_edge
