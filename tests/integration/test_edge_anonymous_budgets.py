"""Anonymous calls have budgets of their own (issue 15, item 2), tried as a botnet would: a
flood of challenge requests from many addresses, and of seat-map reads from a fan's own
address (a shared NAT), must not push that fan's joins and reads into 429; a forged token is a
401 with a challenge and charged to nobody."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from edge_support import EdgeStack, fan_headers, token

from tessera_ops.processes import ServiceProcess

pytestmark = pytest.mark.anyio

# Nothing refills during a test (one request per 1,000 s): a budget is exactly its burst.
SLOW = 0.001
LIMITS = {
    "budgets": {
        "queue": {
            "ip": {"per_s": SLOW, "burst": 3},
            "user": {"per_s": SLOW, "burst": 3},
            "fleet": {"per_s": SLOW, "burst": 3},
            "anonymous_ip": {"per_s": SLOW, "burst": 2},
            "anonymous_fleet": {"per_s": SLOW, "burst": 6},
            "store": "local",  # kept in the edge process: the module's Redis stays clean
        },
        "reads": {
            "ip": {"per_s": SLOW, "burst": 3},
            "user": {"per_s": SLOW, "burst": 3},
            "anonymous_ip": {"per_s": SLOW, "burst": 4},
            "store": "local",
        },
    }
}


@pytest.fixture(scope="module")
def stack(edge_stack: EdgeStack) -> EdgeStack:
    return edge_stack


def edge_with_budgets(stack: EdgeStack, name: str) -> ServiceProcess:
    return stack.start_edge(name, TESSERA_RATE_LIMITS=json.dumps(LIMITS))


def from_address(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def test_a_challenge_flood_spends_its_own_budgets_not_the_joins(stack: EdgeStack) -> None:
    event = stack.create_event()
    edge = edge_with_budgets(stack, "edge-anon-queue")
    fan_address = "10.9.0.1"
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        path = f"/v1/events/{event}/queue/challenge"
        statuses = [
            client.get(path, headers=from_address(f"10.8.{i}.1")).status_code for i in range(20)
        ]
        assert 429 not in statuses[:6]  # the anonymous fleet budget's burst, then refused
        assert set(statuses[6:]) == {429}
        refused = client.get(path, headers=from_address(fan_address))
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "without signing in" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        # The fan's join, from an address the flood also used, is charged to other budgets.
        joined = client.post(
            f"/v1/events/{event}/queue", headers=from_address(fan_address, **fan_headers("ann"))
        )
        assert joined.status_code == 201, joined.text
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert 'tessera_edge_rate_limited_total{route_class="queue",scope="anonymous_fleet"}' in metrics


def test_anonymous_reads_from_a_fans_address_leave_the_fans_budget(stack: EdgeStack) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    edge = edge_with_budgets(stack, "edge-anon-reads")
    shared = "10.7.0.1"  # one NAT: the bots and the fan behind it
    path = f"/v1/events/{event}/seatmap"
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        bots = [client.get(path, headers=from_address(shared)).status_code for _ in range(10)]
        assert bots == [200] * 4 + [429] * 6
        fan = from_address(shared, Authorization=f"Bearer {token('bea')}")
        assert [client.get(path, headers=fan).status_code for _ in range(4)] == [200] * 3 + [429]


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not.a.token",
        f"Bearer {token('cy')[:-4]}AAAA",  # a real token's signature, altered
        "Basic Y3k6cGFzc3dvcmQ=",
    ],
)
def test_a_forged_token_is_a_401_with_a_challenge_and_costs_the_fan_nothing(
    stack: EdgeStack, authorization: str
) -> None:
    event = stack.create_event()
    stack.wait_seen(event)
    edge = stack.edges[-1] if stack.edges else edge_with_budgets(stack, "edge-anon-401")
    address = f"10.6.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    paths = [
        f"/v1/events/{event}/seatmap",
        f"/v1/events/{event}",
        f"/v1/events/{event}/queue/challenge",
        "/v1/queue/qt.e30.AAAA",
    ]
    with httpx.Client(base_url=edge.url, timeout=30) as client:
        for _ in range(5):
            for path in paths:
                answer = client.get(
                    path, headers=from_address(address, Authorization=authorization)
                )
                assert answer.status_code == 401, (path, answer.text)
                assert answer.json()["error"]["code"] == "unauthorized"
                assert answer.headers["www-authenticate"].startswith('Bearer realm="tessera"')
        # Twenty refusals later, the fan's own budgets (burst 3) are untouched.
        fan = from_address(address, **fan_headers(f"cy-{uuid.uuid4().hex[:8]}"))
        seatmap = client.get(paths[0], headers=fan)
        assert seatmap.status_code == 200, seatmap.text
        assert client.post(f"/v1/events/{event}/queue", headers=fan).status_code == 201
