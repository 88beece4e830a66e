"""The edge's gatekeeping over HTTP, against real processes: the waiting room in front of holds
and orders (order of admission, the admission rate, tokens), proof-of-work, and rate limits
(including with Redis stopped)."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from edge_support import ADMISSION_SECRET, OPEN_LIMITS, EdgeStack, fan_headers
from writer_support import WRITER_ADMIN_KEY

from edge.pow import meets, solve
from edge.signing import Admission, Signer
from tessera_ops.processes import ServiceProcess
from tessera_ops.servers import start_valkey

pytestmark = pytest.mark.anyio
ADMIN = {"X-Admin-Key": WRITER_ADMIN_KEY}


@pytest.fixture(scope="module")
def stack(edge_stack: EdgeStack) -> EdgeStack:
    return edge_stack


@pytest.fixture(scope="module")
def edge(stack: EdgeStack) -> ServiceProcess:
    return stack.start_edge("edge-gate")


def room(edge: ServiceProcess, event: str, action: str = "", **settings: Any) -> dict[str, Any]:
    url = f"{edge.url}/v1/admin/events/{event}/waiting-room{action}"
    if action:
        response = httpx.post(url, headers=ADMIN)
    else:
        response = httpx.put(url, headers=ADMIN, json=settings)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    return view


async def join(client: httpx.AsyncClient, event: str, user: str, **body: str) -> dict[str, Any]:
    response = await client.post(
        f"/v1/events/{event}/queue", headers=fan_headers(user), json=body or None
    )
    assert response.status_code in (200, 201), response.text
    joined: dict[str, Any] = response.json()
    return joined


async def hold(
    client: httpx.AsyncClient, event: str, user: str, admission: str | None, seat: str
) -> httpx.Response:
    headers = fan_headers(user, secrets.token_hex(8))
    if admission is not None:
        headers["X-Admission-Token"] = admission
    return await client.post(f"/v1/events/{event}/holds", json={"seats": [seat]}, headers=headers)


async def test_the_room_randomizes_the_early_crowd_then_admits_fifo_at_its_rate(
    stack: EdgeStack, edge: ServiceProcess
) -> None:
    event = stack.create_event()
    room(edge, event, enabled=True, rate_per_s=20)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        early = [await join(client, event, f"early{i}") for i in range(40)]
        assert {t["state"] for t in early} == {"waiting"}
        assert {t["position"] for t in early} == {None}  # not revealed before opening
        opened = room(edge, event, "/open")
        opened_at = time.time()
        late = [await join(client, event, f"late{i}") for i in range(20)]
        early_positions = [await position(client, t["ticket"]) for t in early]
        assert sorted(early_positions) == list(range(1, 41))
        assert early_positions != sorted(early_positions)  # not join order: p = 1/40!
        assert [t["position"] for t in late] == list(range(41, 61))  # FIFO after the lobby
        assert opened["gate"] == "open"
        await asyncio.sleep(2.0)
        admitted = await count_admitted(client, [t["ticket"] for t in early + late])
        elapsed = time.time() - opened_at
        # Positions up to floor(rate * elapsed) are in: within 10% of the configured rate.
        assert abs(admitted - 20 * elapsed) <= 0.1 * 20 * elapsed + 1, (admitted, elapsed)


async def position(client: httpx.AsyncClient, ticket: str) -> int:
    response = await client.get(f"/v1/queue/{ticket}")
    assert response.status_code == 200, response.text
    value: int = response.json()["position"]
    return value


async def count_admitted(client: httpx.AsyncClient, tickets: list[str]) -> int:
    answers = await asyncio.gather(*(client.get(f"/v1/queue/{t}") for t in tickets))
    return sum(a.json()["state"] == "admitted" for a in answers)


async def admitted_token(client: httpx.AsyncClient, event: str, user: str) -> str:
    ticket = (await join(client, event, user))["ticket"]
    deadline = time.monotonic() + 10
    while True:
        status = (await client.get(f"/v1/queue/{ticket}")).json()
        if status["state"] == "admitted":
            token: str = status["admission_token"]
            return token
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.1)


async def test_writes_need_a_valid_admission_token_while_the_room_is_on(
    stack: EdgeStack, edge: ServiceProcess
) -> None:
    event, other_event = stack.create_event(), stack.create_event()
    for gated in (event, other_event):
        room(edge, gated, enabled=True, rate_per_s=1_000)
        room(edge, gated, "/open")
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        token = await admitted_token(client, event, "ada")
        elsewhere = await admitted_token(client, other_event, "ada")
        signer = Signer(ADMISSION_SECRET)
        good = signer.verify_admission(token, time.time())
        expired = signer.sign(
            Admission(
                good.event_id, good.region, "ada", good.ticket_id, good.epoch, int(time.time()) - 5
            )
        )
        forged = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
        refusals = {
            "missing": await hold(client, event, "ada", None, "S:A:1"),
            "forged": await hold(client, event, "ada", forged, "S:A:1"),
            "expired": await hold(client, event, "ada", expired, "S:A:1"),
            "other user": await hold(client, event, "bea", token, "S:A:1"),
            "other event": await hold(client, event, "ada", elsewhere, "S:A:1"),
        }
        for why, response in refusals.items():
            assert response.status_code == 403, (why, response.text)
            expected = "admission_wrong_event" if why == "other event" else "admission_required"
            assert response.json()["error"]["code"] == expected, why
        held = await hold(client, event, "ada", token, "S:A:1")
        assert held.status_code == 201, held.text
        # Every write names its event in its path: extend, buy and release are checked too.
        hold_path = f"/v1/events/{event}/holds/{held.json()['hold_id']}"
        guarded = {**fan_headers("ada", "x"), "X-Admission-Token": token}
        refused_extend = await client.post(f"{hold_path}/extend", headers=fan_headers("ada", "x"))
        assert refused_extend.status_code == 403, refused_extend.text
        assert (await client.post(f"{hold_path}/extend", headers=guarded)).status_code == 200
        order = {"hold_id": held.json()["hold_id"], "payment_token": "tok_approve"}
        orders = f"/v1/events/{event}/orders"
        refused = await client.post(orders, json=order, headers=fan_headers("ada", "o"))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "admission_required"
        elsewhere_order = await client.post(
            orders,
            json=order,
            headers={**fan_headers("ada", "o"), "X-Admission-Token": elsewhere},
        )
        assert elsewhere_order.status_code == 403
        assert elsewhere_order.json()["error"]["code"] == "admission_wrong_event"
        bought = await client.post(
            orders,
            json=order,
            headers={**fan_headers("ada", "o"), "X-Admission-Token": token},
        )
        assert bought.status_code == 201, bought.text
        spare = await hold(client, event, "ada", token, "S:A:3")
        release = f"/v1/events/{event}/holds/{spare.json()['hold_id']}"
        assert (await client.delete(release, headers=fan_headers("ada"))).status_code == 403
        released = await client.delete(
            release, headers={**fan_headers("ada"), "X-Admission-Token": token}
        )
        assert released.status_code == 204, released.text
        room(edge, event, enabled=False)
        assert (await hold(client, event, "cy", None, "S:A:2")).status_code == 201


async def test_proof_of_work_only_when_under_attack(stack: EdgeStack, edge: ServiceProcess) -> None:
    event = stack.create_event()
    room(edge, event, enabled=True, rate_per_s=100)
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        await join(client, event, "calm")  # no challenge needed
        room(edge, event, under_attack=True, pow_difficulty=8)
        refused = await client.post(f"/v1/events/{event}/queue", headers=fan_headers("bot"))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "proof_of_work_required"
        challenge = (await client.get(f"/v1/events/{event}/queue/challenge")).json()
        assert challenge["required"] is True and challenge["difficulty"] == 8
        # A wrong answer: at difficulty 8 one string in 256 is right by chance, so pick one that
        # is certainly wrong.
        wrong_answer = next(
            answer
            for answer in (f"nope{i}" for i in range(1_000))
            if not meets(challenge["challenge"], answer, challenge["difficulty"])
        )
        wrong = await client.post(
            f"/v1/events/{event}/queue",
            headers=fan_headers("bot"),
            json={"challenge": challenge["challenge"], "solution": wrong_answer},
        )
        assert wrong.status_code == 403
        solution = solve(challenge["challenge"], challenge["difficulty"])
        body = {"challenge": challenge["challenge"], "solution": solution}
        await join(client, event, "human", **body)
        replay = await client.post(
            f"/v1/events/{event}/queue", headers=fan_headers("bot2"), json=body
        )
        assert replay.status_code == 403  # each challenge buys one place


async def test_rate_limits_answer_429_with_retry_after(stack: EdgeStack) -> None:
    limits = json.loads(json.dumps(OPEN_LIMITS))
    limits["budgets"]["holds"] = {"ip": {"per_s": 2, "burst": 2}, "store": "redis"}
    edge = stack.start_edge("edge-limited", TESSERA_RATE_LIMITS=json.dumps(limits))
    event = stack.create_event()
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
        answers = [await hold(client, event, f"fan{i}", None, f"S:B:{i + 1}") for i in range(5)]
        statuses = [a.status_code for a in answers]
        assert statuses.count(201) == 2, statuses
        refused = [a for a in answers if a.status_code == 429]
        assert len(refused) == 3
        for answer in refused:
            assert answer.json()["error"]["code"] == "rate_limited"
            assert 1 <= int(answer.headers["retry-after"]) <= 1
        await asyncio.sleep(float(refused[-1].headers["retry-after"]))
        assert (await hold(client, event, "late", None, "S:B:10")).status_code == 201


async def test_with_redis_stopped_the_local_limiter_still_caps_writes(
    stack: EdgeStack, tmp_path: Path
) -> None:
    valkey = start_valkey(tmp_path / "valkey")
    limits = json.loads(json.dumps(OPEN_LIMITS))
    limits["budgets"]["holds"] = {"ip": {"per_s": 1, "burst": 3}, "store": "redis"}
    edge = stack.start_edge(
        "edge-no-redis", TESSERA_REDIS_URL=valkey.url, TESSERA_RATE_LIMITS=json.dumps(limits)
    )
    event = stack.create_event()
    try:
        async with httpx.AsyncClient(base_url=edge.url, timeout=30) as client:
            assert (await hold(client, event, "warm", None, "S:A:20")).status_code == 201
            valkey.stop()
            await asyncio.sleep(1.1)  # the budget refills one; the burst is spent down to 2
            answers = [await hold(client, event, f"x{i}", None, f"S:A:{i + 1}") for i in range(8)]
    finally:
        valkey.stop()
    statuses = [a.status_code for a in answers]
    assert 500 not in statuses and 503 not in statuses, statuses
    # The in-process limiter starts afresh: one burst (3) passes, the rest is refused.
    assert statuses.count(201) == 3, statuses
    assert statuses.count(429) == 5, statuses
    metrics = httpx.get(f"{edge.url}/metrics").text
    assert "tessera_edge_rate_limit_local_fallbacks_total" in metrics
