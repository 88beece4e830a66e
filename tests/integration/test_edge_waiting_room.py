"""The waiting room (edge/waiting_room.py) against a real Valkey, on a fake clock; then its HTTP
handlers (edge/controllers/queue.py, admin.py) in-process with litestar.testing.

Every test uses its own event ids (uuid4), so tests share the session's Valkey safely."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from edge import pow as proof_of_work
from edge.clientip import parse_networks
from edge.controllers import admin, queue
from edge.errors import EdgeError
from edge.metrics import EdgeMetrics
from edge.ratelimit import RateLimiter
from edge.settings import Budget, Rate, RateLimits, RouteClass, Settings
from edge.waiting_room import ADMISSION_HEADER, RoomUpdate, WaitingRoom
from tessera import auth, limits
from tessera.identity import Verifier
from tessera.web import exception_handlers

pytestmark = pytest.mark.anyio

# A whole number of seconds: fake-clock arithmetic stays exact in binary floating point.
T0 = 1_800_000_000.0
JWT_SECRET = "j" * 40
ADMIN_KEY = "a" * 40
ADMISSION_SECRET = "e" * 40


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def edge_settings(redis_url: str) -> Settings:
    return Settings(
        origin_urls=["http://127.0.0.1:9"],
        writer_url="http://127.0.0.1:9",
        redis_url=redis_url,
        jwt_secret=JWT_SECRET,
        admin_key=ADMIN_KEY,
        admission_secret=ADMISSION_SECRET,
        admission_ttl_s=600,
    )


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def monotonic() -> Clock:
    return Clock(0.0)


@pytest.fixture
def metrics() -> EdgeMetrics:
    return EdgeMetrics()


@pytest.fixture
def room(
    redis: Redis, redis_url: str, clock: Clock, monotonic: Clock, metrics: EdgeMetrics
) -> WaitingRoom:
    return WaitingRoom(redis, edge_settings(redis_url), metrics, clock=clock, monotonic=monotonic)


def refused(metrics: EdgeMetrics, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "tessera_edge_admission_refused_total", {"reason": reason}
    )
    return value or 0.0


async def join_all(room: WaitingRoom, event: uuid.UUID, users: list[str]) -> list[str]:
    tickets = []
    for user in users:
        status, created = await room.join(event, user)
        assert created
        assert status.ticket is not None
        tickets.append(status.ticket)
    return tickets


async def positions(room: WaitingRoom, tickets: list[str]) -> list[int]:
    found = []
    for ticket in tickets:
        status = await room.status(ticket)
        assert status.position is not None
        found.append(status.position)
    return found


def spearman(xs: list[int], ys: list[int]) -> float:
    """Rank correlation of two permutations of 1..n."""
    n = len(xs)
    squares = sum((x - y) ** 2 for x, y in zip(xs, ys, strict=True))
    return 1 - 6 * squares / (n * (n * n - 1))


# --- order: random lobby, FIFO after ---


async def test_lobby_is_random_and_later_arrivals_are_fifo(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=1.0))
    users = [f"early{n}" for n in range(200)]
    tickets = await join_all(room, event, users)
    before = await room.status(tickets[0])
    assert (before.state, before.position, before.eta_s) == ("waiting", None, None)
    assert (await room.view(event)).stats.lobby_size == 200

    clock.advance(60)
    view = await room.open(event)
    assert view.gate == "open"
    assert view.opened_at == datetime.fromtimestamp(clock.now, UTC)
    assert view.stats.lobby_size == view.stats.joined == 200
    lobby = await positions(room, tickets)
    assert sorted(lobby) == list(range(1, 201))
    assert lobby != list(range(1, 201))
    assert abs(spearman(list(range(1, 201)), lobby)) < 0.3
    assert await positions(room, tickets) == lobby  # fixed once the gate opened

    late = await join_all(room, event, [f"late{n}" for n in range(5)])
    assert await positions(room, late) == [201, 202, 203, 204, 205]
    assert (await room.view(event)).stats.joined == 205


async def test_the_lobby_order_does_not_depend_on_join_order(room: WaitingRoom) -> None:
    """Two rooms joined in the same order come out in different orders."""
    orders = []
    for _ in range(2):
        event = uuid.uuid4()
        await room.configure(event, RoomUpdate())
        tickets = await join_all(room, event, [f"fan{n}" for n in range(30)])
        await room.open(event)
        orders.append(await positions(room, tickets))
    assert orders[0] != orders[1]


async def test_the_gate_opens_by_itself_at_opens_at(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    opens_at = datetime.fromtimestamp(T0 + 100, UTC)
    view = await room.configure(event, RoomUpdate(rate_per_s=2.0, opens_at=opens_at))
    assert (view.gate, view.opens_at) == ("pending", opens_at)
    tickets = await join_all(room, event, ["a", "b", "c"])
    clock.advance(99.5)
    assert (await room.status(tickets[0])).position is None
    clock.advance(1.0)  # 0.5 s past opens_at: the next call opens the gate, as of opens_at
    (late,) = await join_all(room, event, ["d"])
    assert (await room.status(late)).position == 4
    view = await room.view(event)
    assert (view.gate, view.opened_at, view.stats.lobby_size) == ("open", opens_at, 3)
    assert view.stats.admitted == 1  # floor(2/s * 0.5 s)
    assert sorted(await positions(room, tickets)) == [1, 2, 3]


async def test_opens_at_in_the_past_opens_at_once(room: WaitingRoom) -> None:
    event = uuid.uuid4()
    view = await room.configure(event, RoomUpdate(opens_at=datetime.fromtimestamp(T0 - 5, UTC)))
    assert view.gate == "open"
    assert view.opened_at == datetime.fromtimestamp(T0 - 5, UTC)


async def test_close_before_opening_cancels_the_schedule(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(opens_at=datetime.fromtimestamp(T0 + 10, UTC)))
    view = await room.close(event)
    assert (view.gate, view.opens_at) == ("pending", None)
    clock.advance(60)
    assert (await room.view(event)).gate == "pending"
    assert (await room.open(event)).gate == "open"


# --- admission arithmetic ---


async def test_admitted_count_is_floor_of_rate_times_elapsed(
    room: WaitingRoom, clock: Clock
) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=7.5))
    tickets = await join_all(room, event, [f"fan{n}" for n in range(100)])
    opened = clock.now
    await room.open(event)
    by_position = dict(zip(await positions(room, tickets), tickets, strict=True))
    for step in range(0, 60):  # 0 .. 14.75 s in quarter seconds
        clock.now = opened + step * 0.25
        expected = min(100, math.floor(7.5 * step * 0.25))
        assert (await room.view(event)).stats.admitted == expected
        for position in (expected, expected + 1):
            if 1 <= position <= 100:
                status = await room.status(by_position[position])
                assert status.state == ("admitted" if position <= expected else "waiting")
    clock.now = opened + 2.0  # 15 admitted: position 20 is 5 away at 7.5/s
    waiting = await room.status(by_position[20])
    assert waiting.eta_s == pytest.approx(5 / 7.5, abs=0.001)
    assert waiting.admission_token is None


async def test_rate_change_close_and_reopen_rebase(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=10.0))
    tickets = await join_all(room, event, [f"fan{n}" for n in range(1000)])
    by_position = dict(zip(await positions_after_open(room, event, tickets), tickets, strict=True))
    start = clock.now

    clock.now = start + 10
    assert (await room.view(event)).stats.admitted == 100
    await room.configure(event, RoomUpdate(rate_per_s=20.0))  # 100 so far, +20/s from now
    clock.now = start + 15
    assert (await room.view(event)).stats.admitted == 200
    closed = await room.close(event)
    assert (closed.gate, closed.stats.admitted) == ("closed", 200)
    clock.now = start + 100
    assert (await room.view(event)).stats.admitted == 200  # frozen
    assert (await room.status(by_position[200])).state == "admitted"  # admitted stay admitted
    frozen = await room.status(by_position[201])
    assert (frozen.state, frozen.eta_s) == ("waiting", None)
    await room.configure(event, RoomUpdate(rate_per_s=50.0))  # while closed: no credit
    clock.now = start + 200
    reopened = await room.open(event)
    assert (reopened.gate, reopened.stats.admitted) == ("open", 200)
    clock.now = start + 202
    assert (await room.view(event)).stats.admitted == 300
    clock.now = start + 1_000
    view = await room.view(event)
    assert (view.stats.admitted, view.stats.waiting) == (1000, 0)
    await room.configure(event, RoomUpdate(rate_per_s=0.0))
    clock.now = start + 2_000
    (late,) = await join_all(room, event, ["late"])
    status = await room.status(late)
    assert (status.state, status.position, status.eta_s) == ("waiting", 1001, None)


async def positions_after_open(
    room: WaitingRoom, event: uuid.UUID, tickets: list[str]
) -> list[int]:
    await room.open(event)
    return await positions(room, tickets)


async def test_an_idle_open_gate_banks_no_credit(room: WaitingRoom, clock: Clock) -> None:
    """Open for 100 s with nobody queuing at 10/s: a burst arriving then still waits its turn."""
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=10.0))
    await room.open(event)
    clock.advance(100)
    tickets = await join_all(room, event, [f"fan{n}" for n in range(50)])
    assert await positions(room, tickets) == list(range(1, 51))
    assert (await room.view(event)).stats.admitted == 0
    first = await room.status(tickets[0])
    assert first.eta_s == pytest.approx(0.1)
    clock.advance(1.0)
    assert (await room.view(event)).stats.admitted == 10
    assert (await room.status(tickets[9])).state == "admitted"
    assert (await room.status(tickets[10])).state == "waiting"
    clock.advance(100)  # everyone through; then one more fan, alone
    (alone,) = await join_all(room, event, ["alone"])
    assert (await room.status(alone)).state == "waiting"
    clock.advance(0.1)
    assert (await room.status(alone)).state == "admitted"


async def test_admitted_joiner_gets_a_token_straight_away(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=100.0))
    await room.open(event)
    status, _ = await room.join(event, "first")
    assert status.state == "waiting"
    clock.advance(0.01)
    status, created = await room.join(event, "first")
    assert not created
    assert status.state == "admitted"
    assert status.admission_token is not None
    assert status.admission_expires_at == datetime.fromtimestamp(int(clock.now) + 600, UTC)


# --- one ticket per fan ---


async def test_one_ticket_per_fan(room: WaitingRoom, clock: Clock, metrics: EdgeMetrics) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=1.0))
    first, created = await room.join(event, "alice")
    assert created
    again, created = await room.join(event, "alice")
    assert not created
    assert again.ticket == first.ticket
    racing = await asyncio.gather(*(room.join(event, "bob") for _ in range(20)))
    assert sum(created for _, created in racing) == 1
    assert len({status.ticket for status, _ in racing}) == 1
    await room.open(event)
    clock.advance(1)
    (carol,) = await join_all(room, event, ["carol"])
    repeat, created = await room.join(event, "carol")
    assert (repeat.ticket, created, repeat.position) == (carol, False, 3)
    assert (await room.view(event)).stats.joined == 3
    assert metrics.registry.get_sample_value("tessera_edge_queue_joins_total") == 3


async def test_a_ticket_is_refreshed_past_half_its_life(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(rate_per_s=0.0))
    first, _ = await room.join(event, "alice")
    await room.open(event)
    clock.advance(limits.edge_ticket_ttl_s // 2 + 1)
    await join_all(room, event, ["bob"])  # keeps the queue alive
    again, created = await room.join(event, "alice")
    assert not created
    assert again.ticket != first.ticket
    assert again.ticket is not None
    assert (await room.status(again.ticket)).position == 1  # the same place


# --- admission tokens on the write path ---


async def admitted_token(room: WaitingRoom, clock: Clock, event: uuid.UUID, user: str) -> str:
    await room.configure(event, RoomUpdate(rate_per_s=1_000.0))
    await room.open(event)
    await room.join(event, user)
    clock.advance(1)
    status, _ = await room.join(event, user)
    assert status.admission_token is not None
    return status.admission_token


async def refusal_reason(
    room: WaitingRoom,
    event: uuid.UUID,
    user: str,
    token: str | None,
    code: str = "admission_required",
) -> str:
    with pytest.raises(EdgeError) as raised:
        await room.check_admission(event, user, token)
    assert (raised.value.status, raised.value.code) == (403, code)
    return raised.value.message


async def test_admission_tokens_are_checked(
    room: WaitingRoom, clock: Clock, metrics: EdgeMetrics
) -> None:
    event, other_event = uuid.uuid4(), uuid.uuid4()
    token = await admitted_token(room, clock, event, "alice")
    await room.check_admission(event, "alice", token)

    assert "waiting room" in await refusal_reason(room, event, "alice", None)
    assert "waiting room" in await refusal_reason(room, event, "alice", "")
    assert "signature" in await refusal_reason(
        room, event, "alice", token[:-3] + ("B" if token[-3] == "A" else "A") + token[-2:]
    )
    assert "not a signed" in await refusal_reason(room, event, "alice", "garbage")
    assert "another user" in await refusal_reason(room, event, "bob", token)
    await room.configure(other_event, RoomUpdate())
    assert "another event" in await refusal_reason(
        room, other_event, "alice", token, "admission_wrong_event"
    )
    ticket_token = (await room.join(event, "alice"))[0].ticket
    assert ticket_token is not None
    assert "not a admission" in await refusal_reason(room, event, "alice", ticket_token)
    clock.advance(600)
    assert "expired" in await refusal_reason(room, event, "alice", token)
    for reason, count in (
        ("missing", 2),
        ("forged", 1),
        ("malformed", 2),
        ("other_user", 1),
        ("other_event", 1),
        ("expired", 1),
    ):
        assert refused(metrics, reason) == count, reason


async def test_a_regions_tokens_are_refused_by_every_other_regions_room(
    redis: Redis, redis_url: str, room: WaitingRoom, clock: Clock, metrics: EdgeMetrics
) -> None:
    """Each region's room counts its own queue: a token valid everywhere would let a fan join
    every region's queue and write with the first admission. Here both regions even share one
    Redis (so one room, one epoch): only the token's region differs, and that is refused."""
    elsewhere = WaitingRoom(
        redis,
        msgspec.structs.replace(edge_settings(redis_url), region="far-away"),
        metrics,
        clock=clock,
    )
    event = uuid.uuid4()
    token = await admitted_token(room, clock, event, "alice")
    await room.check_admission(event, "alice", token)
    message = await refusal_reason(elsewhere, event, "alice", token, "admission_wrong_region")
    assert "region 'local'" in message
    assert refused(metrics, "other_region") == 1
    ticket = (await room.join(event, "alice"))[0].ticket
    assert ticket is not None
    with pytest.raises(EdgeError) as raised:
        await elsewhere.status(ticket)
    assert (raised.value.status, raised.value.code) == (404, "ticket_not_found")
    assert "region 'local'" in raised.value.message
    # Its own region's token passes there.
    own = (await elsewhere.join(event, "alice"))[0]
    clock.advance(1)
    assert own.ticket is not None
    admitted = await elsewhere.status(own.ticket)
    assert admitted.admission_token is not None
    await elsewhere.check_admission(event, "alice", admitted.admission_token)


async def test_a_token_minted_while_the_room_was_off_is_stale_once_it_is_on(
    room: WaitingRoom, clock: Clock, metrics: EdgeMetrics
) -> None:
    event = uuid.uuid4()
    early, created = await room.join(event, "alice")  # no room yet: admitted at once
    assert created
    assert (early.state, early.position) == ("admitted", None)
    assert early.admission_token is not None
    await room.check_admission(event, "alice", early.admission_token)  # not required while off
    await room.configure(event, RoomUpdate(rate_per_s=1_000.0))
    assert "predates" in await refusal_reason(room, event, "alice", early.admission_token)
    assert refused(metrics, "stale") == 1
    assert early.ticket is not None
    with pytest.raises(EdgeError) as raised:
        await room.status(early.ticket)  # an off-room ticket is in no queue
    assert (raised.value.status, raised.value.code) == (404, "ticket_not_found")
    # Switched off and on again: the epoch moves on, so tokens from before are refused.
    await room.open(event)
    await room.join(event, "alice")
    clock.advance(1)
    status, _ = await room.join(event, "alice")
    assert status.admission_token is not None
    await room.check_admission(event, "alice", status.admission_token)
    await room.configure(event, RoomUpdate(enabled=False))
    await room.check_admission(event, "alice", None)
    view = await room.configure(event, RoomUpdate(enabled=True))
    assert view.epoch == 2
    assert "predates" in await refusal_reason(room, event, "alice", status.admission_token)
    assert status.ticket is not None
    fresh = await room.status(status.ticket)  # the place is kept: a new token on the next poll
    assert fresh.state == "admitted"
    assert fresh.admission_token is not None
    await room.check_admission(event, "alice", fresh.admission_token)


async def test_room_off_needs_no_token(room: WaitingRoom) -> None:
    never_configured, disabled = uuid.uuid4(), uuid.uuid4()
    await room.check_admission(never_configured, "alice", None)
    await room.check_admission(never_configured, "alice", "garbage")
    await room.configure(disabled, RoomUpdate(enabled=False))
    await room.check_admission(disabled, "alice", None)
    status, _ = await room.join(disabled, "alice")
    assert status.state == "admitted"
    assert status.ticket is not None
    polled = await room.status(status.ticket)
    assert polled.state == "admitted"
    assert polled.admission_token is not None


async def test_settings_are_cached_per_process(
    room: WaitingRoom, redis: Redis, redis_url: str, clock: Clock, monotonic: Clock
) -> None:
    """Another edge process sees a room switched on within edge_room_config_cache_s."""
    other = WaitingRoom(
        redis, edge_settings(redis_url), EdgeMetrics(), clock=clock, monotonic=monotonic
    )
    event = uuid.uuid4()
    await other.check_admission(event, "alice", None)
    await room.configure(event, RoomUpdate())
    await other.check_admission(event, "alice", None)  # cached: still off for `other`
    monotonic.advance(limits.edge_room_config_cache_s)
    with pytest.raises(EdgeError):
        await other.check_admission(event, "alice", None)


async def test_concurrent_checks_read_the_settings_once(
    room: WaitingRoom, redis: Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(enabled=False))
    calls = 0
    hgetall = redis.hgetall

    def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return hgetall(*args)

    other = WaitingRoom(redis, edge_settings(redis_url), EdgeMetrics(), clock=room.clock)
    monkeypatch.setattr(redis, "hgetall", counting)
    await asyncio.gather(*(other.check_admission(event, f"fan{n}", None) for n in range(50)))
    assert calls == 1


async def test_unreachable_redis_is_503_but_known_settings_still_serve(
    redis: Redis, redis_url: str, clock: Clock, monotonic: Clock
) -> None:
    settings = edge_settings(redis_url)
    room = WaitingRoom(redis, settings, EdgeMetrics(), clock=clock, monotonic=monotonic)
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate())
    dead = Redis.from_url("redis://127.0.0.1:9", socket_connect_timeout=0.2)
    try:
        blind = WaitingRoom(dead, settings, EdgeMetrics(), clock=clock, monotonic=monotonic)
        for call in (blind.join(event, "alice"), blind.view(event), blind.challenge(event)):
            with pytest.raises(EdgeError) as raised:
                await call
            assert (raised.value.status, raised.value.code) == (503, "unavailable")
            assert raised.value.headers == {"Retry-After": "1"}
        # `room` knows the settings: with Redis gone it keeps enforcing them.
        room.redis = dead
        monotonic.advance(10)
        with pytest.raises(EdgeError) as refusal:
            await room.check_admission(event, "alice", None)
        assert refusal.value.code == "admission_required"
    finally:
        await dead.aclose()


async def test_admin_calls_on_an_event_without_a_room_are_404(room: WaitingRoom) -> None:
    event = uuid.uuid4()
    for call in (room.view, room.open, room.close):
        with pytest.raises(EdgeError) as raised:
            await call(event)
        assert (raised.value.status, raised.value.code) == (404, "not_found")


async def test_defaults_and_partial_updates(room: WaitingRoom) -> None:
    event = uuid.uuid4()
    view = await room.configure(event, RoomUpdate())
    assert (view.enabled, view.rate_per_s, view.opens_at) == (True, 50.0, None)
    assert (view.under_attack, view.pow_difficulty, view.gate, view.epoch) == (
        False,
        18,
        "pending",
        1,
    )
    view = await room.configure(event, RoomUpdate(under_attack=True, pow_difficulty=20))
    assert (view.rate_per_s, view.under_attack, view.pow_difficulty) == (50.0, True, 20)
    opens_at = datetime(2030, 1, 1, tzinfo=UTC)
    assert (await room.configure(event, RoomUpdate(opens_at=opens_at))).opens_at == opens_at
    assert (await room.configure(event, RoomUpdate(opens_at=None))).opens_at is None
    assert (await room.configure(event, RoomUpdate(enabled=False))).epoch == 1


# --- proof of work ---


async def solved(room: WaitingRoom, event: uuid.UUID) -> tuple[str, str]:
    challenge = await room.challenge(event)
    return challenge.challenge, proof_of_work.solve(challenge.challenge, challenge.difficulty)


async def test_proof_of_work_only_under_attack(room: WaitingRoom) -> None:
    event, elsewhere = uuid.uuid4(), uuid.uuid4()
    await room.configure(event, RoomUpdate(pow_difficulty=8))
    assert not (await room.challenge(event)).required
    await room.join(event, "calm")  # no proof needed
    await room.configure(event, RoomUpdate(under_attack=True))
    challenge = await room.challenge(event)
    assert (challenge.required, challenge.difficulty) == (True, 8)
    assert challenge.algorithm == "sha256-leading-zero-bits"

    async def code(user: str, token: str | None, solution: str | None) -> str:
        with pytest.raises(EdgeError) as raised:
            await room.join(event, user, challenge=token, solution=solution)
        assert raised.value.status == 403
        return raised.value.code

    assert await code("alice", None, None) == "proof_of_work_required"
    token, solution = await solved(room, event)
    status, created = await room.join(event, "alice", challenge=token, solution=solution)
    assert created
    assert status.state == "waiting"
    assert await code("bob", token, solution) == "proof_of_work_invalid"  # spent
    other_token, other_solution = await solved(room, elsewhere)
    assert await code("bob", other_token, other_solution) == "proof_of_work_invalid"
    easy, easy_solution = await solved(room, event)
    await room.configure(event, RoomUpdate(pow_difficulty=9))
    assert await code("bob", easy, easy_solution) == "proof_of_work_invalid"
    fresh, fresh_solution = await solved(room, event)
    wrong = next(str(n) for n in range(1000) if not proof_of_work.meets(fresh, str(n), 9))
    assert await code("bob", fresh, wrong) == "proof_of_work_invalid"
    await room.join(event, "bob", challenge=fresh, solution=fresh_solution)
    await room.configure(event, RoomUpdate(under_attack=False))
    await room.join(event, "carol")


async def test_an_expired_challenge_is_refused(room: WaitingRoom, clock: Clock) -> None:
    event = uuid.uuid4()
    await room.configure(event, RoomUpdate(under_attack=True, pow_difficulty=4))
    token, solution = await solved(room, event)
    clock.advance(limits.edge_pow_challenge_ttl_s)
    with pytest.raises(EdgeError) as raised:
        await room.join(event, "alice", challenge=token, solution=solution)
    assert raised.value.code == "proof_of_work_invalid"
    assert "expired" in raised.value.message


# --- HTTP handlers, in-process ---


def make_app(redis_url: str, clock: Clock, rate_limits: RateLimits | None = None) -> Litestar:
    settings = edge_settings(redis_url)
    unlimited = RateLimits(
        budgets={RouteClass.queue: Budget(), RouteClass.reads: Budget(store="local")}
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        redis = Redis.from_url(redis_url)
        metrics = EdgeMetrics()
        state = app.state
        state.settings, state.metrics = settings, metrics
        state.room = WaitingRoom(redis, settings, metrics, clock=clock)
        state.limiter = RateLimiter(redis, rate_limits or unlimited, metrics)
        state.trusted = parse_networks(settings.trusted_proxies)
        state.verifier = Verifier(settings.identity)
        try:
            yield
        finally:
            await redis.aclose()

    return Litestar(
        route_handlers=[*queue.ROUTE_HANDLERS, *admin.ROUTE_HANDLERS],
        lifespan=[lifespan],
        exception_handlers=exception_handlers(),
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(make_app(redis_url, Clock(T0))) as test_client:
        yield test_client


def fan(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {auth.mint_token(user, JWT_SECRET)}"}


ADMIN = {"X-Admin-Key": ADMIN_KEY}


def room_path(event: uuid.UUID | str) -> str:
    return f"/v1/admin/events/{event}/waiting-room"


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message"}
    assert body["error"]["message"]
    code: str = body["error"]["code"]
    return code


async def test_http_onsale_flow(client: AsyncTestClient[Litestar]) -> None:
    app = client.app
    clock: Callable[[], float] = app.state.room.clock
    assert isinstance(clock, Clock)
    event = uuid.uuid4()
    response = await client.put(room_path(event), json={"rate_per_s": 10}, headers=ADMIN)
    assert response.status_code == 200
    view = response.json()
    assert view["event_id"] == str(event)
    assert (view["enabled"], view["rate_per_s"], view["gate"]) == (True, 10.0, "pending")
    assert view["stats"] == {"lobby_size": 0, "joined": 0, "admitted": 0, "waiting": 0}

    joined = await client.post(f"/v1/events/{event}/queue", headers=fan("alice"))
    assert joined.status_code == 201
    body = joined.json()
    assert set(body) == {"ticket", "event_id", "state", "position", "eta_s"}
    assert (body["state"], body["position"], body["eta_s"]) == ("waiting", None, None)
    again = await client.post(f"/v1/events/{event}/queue", headers=fan("alice"), json={})
    assert again.status_code == 200
    assert again.json()["ticket"] == body["ticket"]

    opened = await client.post(f"{room_path(event)}/open", headers=ADMIN)
    assert opened.status_code == 200
    assert opened.json()["gate"] == "open"
    polled = await client.get(f"/v1/queue/{body['ticket']}")
    assert polled.status_code == 200
    assert polled.json() == {
        "event_id": str(event),
        "state": "waiting",
        "position": 1,
        "eta_s": 0.1,
    }
    clock.advance(0.25)
    admitted = (await client.get(f"/v1/queue/{body['ticket']}")).json()
    assert admitted["state"] == "admitted"
    assert admitted["admission_expires_at"].endswith("Z")
    room: WaitingRoom = app.state.room
    await room.check_admission(event, "alice", admitted["admission_token"])
    stats = (await client.get(room_path(event), headers=ADMIN)).json()["stats"]
    assert stats == {"lobby_size": 1, "joined": 1, "admitted": 1, "waiting": 0}
    closed = await client.post(f"{room_path(event)}/close", headers=ADMIN)
    assert (closed.status_code, closed.json()["gate"]) == (200, "closed")
    assert ADMISSION_HEADER == "X-Admission-Token"


async def test_http_room_off_admits_at_once(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(f"/v1/events/{uuid.uuid4()}/queue", headers=fan("alice"))
    assert response.status_code == 201
    body = response.json()
    assert (body["state"], body["position"], body["eta_s"]) == ("admitted", None, 0.0)
    assert body["admission_token"].startswith("at.")


async def test_http_proof_of_work(client: AsyncTestClient[Litestar]) -> None:
    event = uuid.uuid4()
    calm = (await client.get(f"/v1/events/{event}/queue/challenge")).json()
    assert calm["required"] is False
    update = {"under_attack": True, "pow_difficulty": 6}
    assert (await client.put(room_path(event), json=update, headers=ADMIN)).status_code == 200
    challenge = (await client.get(f"/v1/events/{event}/queue/challenge")).json()
    assert set(challenge) == {"required", "challenge", "difficulty", "algorithm", "expires_at"}
    assert (challenge["required"], challenge["difficulty"]) == (True, 6)
    path = f"/v1/events/{event}/queue"
    missing = await client.post(path, headers=fan("alice"))
    assert (missing.status_code, error_code(missing)) == (403, "proof_of_work_required")
    proof = {
        "challenge": challenge["challenge"],
        "solution": proof_of_work.solve(challenge["challenge"], 6),
    }
    assert (await client.post(path, headers=fan("alice"), json=proof)).status_code == 201
    replayed = await client.post(path, headers=fan("bob"), json=proof)
    assert (replayed.status_code, error_code(replayed)) == (403, "proof_of_work_invalid")


async def test_http_queue_is_rate_limited_per_fan(redis_url: str) -> None:
    tight = RateLimits(
        budgets={
            RouteClass.queue: Budget(user=Rate(per_s=0.001, burst=2)),
            RouteClass.reads: Budget(),
        }
    )
    async with AsyncTestClient(make_app(redis_url, Clock(T0), tight)) as client:
        user = f"fan-{uuid.uuid4().hex[:8]}"
        path = f"/v1/events/{uuid.uuid4()}/queue"
        statuses = [(await client.post(path, headers=fan(user))).status_code for _ in range(3)]
        assert statuses == [201, 201, 429]


BAD_ROOM_BODIES: list[tuple[str, bytes]] = [
    ("malformed JSON", b"{"),
    ("not an object", b"[]"),
    ("unknown field", b'{"enabled": true, "colour": "red"}'),
    ("wrong type", b'{"rate_per_s": "fast"}'),
    ("wrong type bool", b'{"enabled": "yes"}'),
    ("negative rate", b'{"rate_per_s": -1}'),
    ("rate too high", b'{"rate_per_s": 1e9}'),
    ("difficulty 0", b'{"pow_difficulty": 0}'),
    ("difficulty too high", b'{"pow_difficulty": 33}'),
    ("difficulty float", b'{"pow_difficulty": 18.5}'),
    ("naive datetime", b'{"opens_at": "2030-01-01T10:00:00"}'),
    ("not a datetime", b'{"opens_at": "tomorrow"}'),
    ("empty body", b""),
]


@pytest.mark.parametrize(("case", "body"), BAD_ROOM_BODIES, ids=[c for c, _ in BAD_ROOM_BODIES])
async def test_http_bad_room_bodies(
    client: AsyncTestClient[Litestar], case: str, body: bytes
) -> None:
    headers = {**ADMIN, "Content-Type": "application/json"}
    response = await client.put(room_path(uuid.uuid4()), content=body, headers=headers)
    assert (response.status_code, error_code(response)) == (422, "invalid_request"), case


BAD_JOIN_BODIES: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"challenge": '),
    ("not an object", b'"hello"'),
    ("unknown field", b'{"challenge": "x", "solution": "1", "extra": 1}'),
    ("wrong type", b'{"challenge": 5, "solution": "1"}'),
    ("solution too long", b'{"challenge": "x", "solution": "' + b"1" * 65 + b'"}'),
    ("solution with spaces", b'{"challenge": "x", "solution": "a b"}'),
    ("challenge too long", b'{"challenge": "' + b"x" * 1025 + b'"}'),
    ("empty challenge", b'{"challenge": ""}'),
]


@pytest.mark.parametrize(("case", "body"), BAD_JOIN_BODIES, ids=[c for c, _ in BAD_JOIN_BODIES])
async def test_http_bad_join_bodies(
    client: AsyncTestClient[Litestar], case: str, body: bytes
) -> None:
    headers = {**fan("alice"), "Content-Type": "application/json"}
    response = await client.post(f"/v1/events/{uuid.uuid4()}/queue", content=body, headers=headers)
    assert (response.status_code, error_code(response)) == (422, "invalid_request"), case


_BIG = b'{"enabled": true, "pad": "' + b"x" * (limits.fan_request_body_bytes_max + 1) + b'"}'
_JOIN = "/v1/events/{event}/queue"
_ROOM = "/v1/admin/events/{event}/waiting-room"
_FAN = {"Authorization": "<fan>"}  # a fresh fan JWT, minted when the test runs
_ADMIN = {"X-Admin-Key": ADMIN_KEY}
_TEXT = {"Content-Type": "text/plain"}
_OTHER_SECRET = "z" * 40
_STALE = auth.mint_token("alice", JWT_SECRET, ttl_s=1, now=T0 - 10_000_000)


@dataclass(frozen=True)
class Bad:
    """A bad request: `path` may hold `{event}` (a fresh uuid4); header values `<fan>` and
    `<other>` become a valid fan JWT and one signed with another secret."""

    case: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    status: int
    code: str


BAD_REQUESTS: list[Bad] = [
    Bad("no JWT", "POST", _JOIN, {}, None, 401, "unauthorized"),
    Bad("bad JWT", "POST", _JOIN, {"Authorization": "Bearer nope"}, None, 401, "unauthorized"),
    Bad("not bearer", "POST", _JOIN, {"Authorization": "Basic eA=="}, None, 401, "unauthorized"),
    Bad(
        "expired JWT",
        "POST",
        _JOIN,
        {"Authorization": f"Bearer {_STALE}"},
        None,
        401,
        "unauthorized",
    ),
    Bad(
        "JWT of another secret",
        "POST",
        _JOIN,
        {"Authorization": "<other>"},
        None,
        401,
        "unauthorized",
    ),
    Bad("join bad event id", "POST", "/v1/events/nope/queue", _FAN, None, 404, "not_found"),
    Bad("join oversize", "POST", _JOIN, _FAN, _BIG, 413, "payload_too_large"),
    Bad("join text body", "POST", _JOIN, {**_FAN, **_TEXT}, b"hi", 415, "unsupported_media_type"),
    Bad(
        "challenge bad event id",
        "GET",
        "/v1/events/123/queue/challenge",
        {},
        None,
        404,
        "not_found",
    ),
    Bad("forged ticket", "GET", "/v1/queue/qt.e30.AAAA", {}, None, 404, "ticket_not_found"),
    Bad("garbage ticket", "GET", "/v1/queue/%00%FF", {}, None, 404, "ticket_not_found"),
    Bad("long ticket", "GET", "/v1/queue/" + "A" * 3000, {}, None, 404, "ticket_not_found"),
    Bad("wrong method", "DELETE", _JOIN, _FAN, None, 405, "method_not_allowed"),
    Bad("admin no key", "PUT", _ROOM, {}, b"{}", 401, "unauthorized"),
    Bad("admin wrong key", "PUT", _ROOM, {"X-Admin-Key": "b" * 40}, b"{}", 401, "unauthorized"),
    Bad("view no key", "GET", _ROOM, {}, None, 401, "unauthorized"),
    Bad("open no key", "POST", _ROOM + "/open", {}, None, 401, "unauthorized"),
    Bad("close no key", "POST", _ROOM + "/close", {}, None, 401, "unauthorized"),
    Bad("admin bad event id", "PUT", room_path("x"), _ADMIN, b"{}", 404, "not_found"),
    Bad("view bad event id", "GET", room_path("x"), _ADMIN, None, 404, "not_found"),
    Bad("view no room", "GET", _ROOM, _ADMIN, None, 404, "not_found"),
    Bad("open no room", "POST", _ROOM + "/open", _ADMIN, None, 404, "not_found"),
    Bad("close no room", "POST", _ROOM + "/close", _ADMIN, None, 404, "not_found"),
    Bad("admin oversize", "PUT", _ROOM, _ADMIN, _BIG, 413, "payload_too_large"),
    Bad("admin text body", "PUT", _ROOM, {**_ADMIN, **_TEXT}, b"{}", 415, "unsupported_media_type"),
]


@pytest.mark.parametrize("bad", BAD_REQUESTS, ids=[bad.case for bad in BAD_REQUESTS])
async def test_http_bad_requests(client: AsyncTestClient[Litestar], bad: Bad) -> None:
    minted = {
        "<fan>": fan("alice")["Authorization"],
        "<other>": f"Bearer {auth.mint_token('alice', _OTHER_SECRET)}",
    }
    headers = {name: minted.get(value, value) for name, value in bad.headers.items()}
    url = bad.path.format(event=uuid.uuid4())
    response = await client.request(bad.method, url, headers=headers, content=bad.body)
    assert (response.status_code, error_code(response)) == (bad.status, bad.code), bad.case


async def test_http_ticket_of_a_room_switched_on_later_is_404(
    client: AsyncTestClient[Litestar],
) -> None:
    event = uuid.uuid4()
    ticket = (await client.post(f"/v1/events/{event}/queue", headers=fan("alice"))).json()["ticket"]
    assert (await client.get(f"/v1/queue/{ticket}")).status_code == 200
    await client.put(room_path(event), json={}, headers=ADMIN)
    response = await client.get(f"/v1/queue/{ticket}")
    assert (response.status_code, error_code(response)) == (404, "ticket_not_found")
    rejoined = await client.post(f"/v1/events/{event}/queue", headers=fan("alice"))
    assert rejoined.status_code == 201
    assert rejoined.json()["ticket"] != ticket
