"""The in-process GCRA (edge/ratelimit.py) on a fake clock, and the limiter's local paths."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from edge.metrics import EdgeMetrics
from edge.ratelimit import (
    Charge,
    Decision,
    LocalGcra,
    RateLimiter,
    address_budget_key,
    charges,
    refusal,
)
from edge.settings import Budget, Rate, RateLimits, RouteClass
from tessera import limits

START_S = 1_000.0


def outcome(decision: Decision) -> tuple[bool, str | None, object]:
    """For comparing with `(False, scope, pytest.approx(wait))`."""
    return decision.allowed, decision.scope, decision.retry_after_s


class FakeClock:
    def __init__(self, now: float = START_S) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ip_charge(rate: Rate, ip: str = "192.0.2.1") -> list[Charge]:
    return charges(RouteClass.holds, Budget(ip=rate), ip, None)


def test_burst_passes_at_once_then_the_sustained_rate() -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    charge = ip_charge(Rate(10, burst=5))
    assert [gcra.check(charge).allowed for _ in range(7)] == [True] * 5 + [False] * 2
    admitted = 0
    for _ in range(100):  # one second in 10 ms steps: exactly ten more
        clock.advance(0.01)
        admitted += gcra.check(charge).allowed
    assert admitted == 10


def test_retry_after_is_exactly_the_wait() -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    charge = ip_charge(Rate(4, burst=2))  # one every 0.25 s
    assert gcra.check(charge).allowed and gcra.check(charge).allowed
    refused = gcra.check(charge)
    assert outcome(refused) == (False, "ip", pytest.approx(0.25, abs=1e-9))
    # Refused requests are not charged: asking again does not lengthen the wait.
    clock.advance(0.1)
    assert gcra.check(charge).retry_after_s == pytest.approx(0.15, abs=1e-9)
    clock.advance(0.15 - 0.001)
    assert gcra.check(charge).retry_after_s == pytest.approx(0.001, abs=1e-9)
    clock.advance(0.001)  # exactly the advertised wait
    assert gcra.check(charge).allowed
    assert gcra.check(charge).retry_after_s == pytest.approx(0.25, abs=1e-9)


def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    charge = ip_charge(Rate(1, burst=3))
    assert sum(gcra.check(charge).allowed for _ in range(5)) == 3
    clock.advance(3_600)
    assert sum(gcra.check(charge).allowed for _ in range(5)) == 3


def test_fractional_rates() -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    charge = ip_charge(Rate(0.5))  # one every 2 s, no burst
    assert gcra.check(charge).allowed
    assert gcra.check(charge).retry_after_s == pytest.approx(2.0)
    clock.advance(2.0)
    assert gcra.check(charge).allowed


def test_all_or_nothing_across_scopes() -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    slow = 0.1  # one every 10 s: the budgets do not refill during the test
    budget = Budget(ip=Rate(slow, 3), user=Rate(slow / 2, 2), fleet=Rate(slow, 4))

    def check(user: str | None, ip: str) -> Decision:
        return gcra.check(charges(RouteClass.holds, budget, ip, user))

    assert check("u1", "A").allowed and check("u1", "A").allowed
    assert outcome(check("u1", "A")) == (False, "user", pytest.approx(20.0))
    assert check("u2", "A").allowed  # the refusal above charged neither the IP nor the fleet
    assert outcome(check("u2", "A")) == (False, "ip", pytest.approx(10.0))
    # Both the IP and the user refuse: the answer is the longer wait.
    assert outcome(check("u1", "A")) == (False, "user", pytest.approx(20.0))
    assert check(None, "B").allowed  # fourth of the fleet's burst of four
    assert outcome(check("u3", "C")) == (False, "fleet", pytest.approx(10.0))
    assert "tessera:rl:holds:user:u3" not in gcra  # refused: nothing recorded
    assert "tessera:rl:holds:ip:C" not in gcra
    assert "tessera:rl:holds:fleet:all" in gcra


def test_least_recently_used_keys_are_forgotten_past_the_bound() -> None:
    clock = FakeClock()
    gcra = LocalGcra(max_keys=3, clock=clock)
    rate = Rate(1, burst=1)
    for ip in ("a", "b", "c"):
        assert gcra.check(ip_charge(rate, ip)).allowed
    assert not gcra.check(ip_charge(rate, "a")).allowed  # a refusal does not refresh "a"
    assert gcra.check(ip_charge(rate, "d")).allowed
    assert len(gcra) == 3
    assert "tessera:rl:holds:ip:a" not in gcra  # the oldest went first
    for _ in range(1_000):
        gcra.check(ip_charge(rate, "x"))
        gcra.check(ip_charge(rate, str(clock.now)))
        clock.advance(0.001)
    assert len(gcra) == 3
    assert gcra.check(ip_charge(rate, "a")).allowed  # forgotten: a fresh budget


def test_max_keys_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_keys"):
        LocalGcra(max_keys=0)


@settings(max_examples=300, deadline=None)
@given(
    per_s=st.floats(0.5, 1_000),
    burst=st.integers(1, 50),
    # Gaps between requests, in emission intervals: dense runs and idle stretches.
    gaps=st.lists(st.floats(0, 3, allow_nan=False), min_size=1, max_size=150),
)
def test_admissions_never_exceed_burst_plus_rate_times_window(
    per_s: float, burst: int, gaps: list[float]
) -> None:
    clock = FakeClock()
    gcra = LocalGcra(clock=clock)
    charge = ip_charge(Rate(per_s, burst))
    interval = 1 / per_s
    admitted: list[float] = []
    for gap in gaps:
        clock.advance(gap * interval)
        since_last = clock.now - admitted[-1] if admitted else None
        decision = gcra.check(charge)
        if decision.allowed:
            admitted.append(clock.now)
        # Spaced one interval (plus float noise) after the last admission: always admitted.
        if since_last is not None and since_last >= interval + 1e-9:
            assert decision.allowed, (since_last, interval)
        if not decision.allowed:
            assert 0 < decision.retry_after_s <= interval + 1e-6
    # Every window [a_i, a_j] between two admissions holds at most burst + per_s·(a_j - a_i)
    # (GCRA's exact bound; the margin covers the microsecond comparison slack). Windows that do
    # not start and end on an admission hold no more than the tightest such window inside them.
    for (i, start), (j, end) in itertools.combinations(enumerate(admitted), 2):
        assert j - i + 1 <= burst + per_s * (end - start) + 0.01, (i, j, start, end)


# --- RateLimiter with a stand-in Redis: store choice, fallback, circuit breaker ---


class FakeRedis:
    """Stands in for redis.asyncio.Redis: its one script answers `reply`, raises `failure`,
    or waits for `release` first; `allowed_calls=False` fails any test that reaches it."""

    def __init__(self, *, allowed_calls: bool = True) -> None:
        self.allowed_calls = allowed_calls
        self.calls = 0
        self.failure: BaseException | None = None
        self.reply: list[object] = [1, b"0", 0]
        self.release: anyio.Event | None = None

    def register_script(self, _script: str) -> Callable[..., Awaitable[list[object]]]:
        async def run(keys: list[str], args: list[str]) -> list[object]:
            assert self.allowed_calls, "Redis was contacted"
            assert len(args) == 2 * len(keys)
            self.calls += 1
            if self.release is not None:
                await self.release.wait()
            if self.failure is not None:
                raise self.failure
            return self.reply

        return run


def local_limiter(
    config: RateLimits, clock: FakeClock, redis: FakeRedis | None = None
) -> tuple[RateLimiter, EdgeMetrics]:
    metrics = EdgeMetrics()
    redis = redis or FakeRedis(allowed_calls=False)
    limiter = RateLimiter(redis, config, metrics, clock=clock)  # type: ignore[arg-type]
    return limiter, metrics


def fallbacks(metrics: EdgeMetrics) -> float:
    return metrics.registry.get_sample_value("tessera_edge_rate_limit_local_fallbacks_total") or 0.0


HOLDS = RateLimits({RouteClass.holds: Budget(ip=Rate(1, 2), user=Rate(1, 5))})


@pytest.mark.anyio
async def test_local_store_and_unbudgeted_classes_never_touch_redis() -> None:
    clock = FakeClock()
    config = RateLimits(
        {
            RouteClass.reads: Budget(ip=Rate(1, 2), store="local"),
            RouteClass.queue: Budget(),  # no budget at all: always allowed
        }
    )
    limiter, metrics = local_limiter(config, clock)
    decisions = [await limiter.check(RouteClass.reads, "192.0.2.7", "u") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert outcome(decisions[-1]) == (False, "ip", pytest.approx(1.0))
    for _ in range(100):
        assert (await limiter.check(RouteClass.queue, "192.0.2.7", "u")).allowed
    sample = metrics.registry.get_sample_value(
        "tessera_edge_rate_limited_total", {"route_class": "reads", "scope": "ip"}
    )
    assert sample == 1.0


def test_check_local_is_the_synchronous_twin() -> None:
    clock = FakeClock()
    config = RateLimits({RouteClass.reads: Budget(ip=Rate(2, 1), user=Rate(1, 1), store="local")})
    limiter, metrics = local_limiter(config, clock)
    assert limiter.check_local(RouteClass.reads, "192.0.2.8", None).allowed
    assert limiter.check_local(RouteClass.reads, "192.0.2.8", None).scope == "ip"
    clock.advance(0.5)
    assert limiter.check_local(RouteClass.reads, "192.0.2.8", "fan").allowed
    clock.advance(0.5)
    assert limiter.check_local(RouteClass.reads, "192.0.2.8", "fan").scope == "user"
    labels = {"route_class": "reads", "scope": "user"}
    assert metrics.registry.get_sample_value("tessera_edge_rate_limited_total", labels) == 1.0


@pytest.mark.parametrize(
    ("decision", "route_class", "message", "retry_after"),
    [
        (Decision(False, 1.2, "ip"), RouteClass.holds, "too many holds from this IP address", "2"),
        (Decision(False, 0.004, "user"), RouteClass.orders, "too many orders from this acc", "1"),
        (Decision(False, 3.0000000001, "fleet"), RouteClass.queue, "on the site right now", "3"),
        (Decision(False, 0.0, "ip"), RouteClass.reads, "too many requests from this IP", "1"),
    ],
)
def test_refusal_is_a_429_naming_the_budget(
    decision: Decision, route_class: RouteClass, message: str, retry_after: str
) -> None:
    error = refusal(decision, route_class)
    assert (error.status, error.code) == (429, "rate_limited")
    assert message in error.message
    assert error.message.endswith(f"; retry in {retry_after} s")
    assert error.headers == {"Retry-After": retry_after}


@pytest.mark.anyio
async def test_redis_reply_becomes_the_decision() -> None:
    redis = FakeRedis()
    limiter, metrics = local_limiter(HOLDS, FakeClock(), redis)
    assert await limiter.check(RouteClass.holds, "192.0.2.9", "fan") == Decision(True)
    redis.reply = [0, b"1234.500", 2]  # the second budget charged: the user's
    refused = await limiter.check(RouteClass.holds, "192.0.2.9", "fan")
    assert outcome(refused) == (False, "user", pytest.approx(1.2345))
    assert redis.calls == 2 and fallbacks(metrics) == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    "failure",
    [
        RedisConnectionError("refused"),
        RedisTimeoutError("slow"),
        ConnectionResetError(),
        TimeoutError(),
        ReadOnlyError("You can't write against a read only replica."),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'. script: ab12"),
        ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL"),
    ],
    ids=lambda failure: type(failure).__name__,
)
async def test_redis_failures_fall_back_to_the_same_budgets(failure: Exception) -> None:
    redis = FakeRedis()
    redis.failure = failure
    limiter, metrics = local_limiter(HOLDS, FakeClock(), redis)
    decisions = [await limiter.check(RouteClass.holds, "192.0.2.10", None) for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]  # never fails open
    assert decisions[-1].scope == "ip"
    assert fallbacks(metrics) == 3
    assert redis.calls == 1  # the breaker kept the next two away from Redis
    assert limiter.redis_suspended


@pytest.mark.anyio
@pytest.mark.parametrize(
    "message",
    [
        "user_script:1: boom script: 82903a0434f1503e152f89c03c9acd881a0e8150, on @user_script:1.",
        "ERR Error running script (call to f_0123): @user_script:7: bad argument",
    ],
)
async def test_script_errors_are_raised_not_hidden(message: str) -> None:
    redis = FakeRedis()
    redis.failure = ResponseError(message)
    limiter, metrics = local_limiter(HOLDS, FakeClock(), redis)
    with pytest.raises(ResponseError):
        await limiter.check(RouteClass.holds, "192.0.2.11", None)
    assert fallbacks(metrics) == 0
    assert not limiter.redis_suspended


@pytest.mark.anyio
async def test_a_redis_slower_than_the_timeout_is_a_failure() -> None:
    redis = FakeRedis()
    redis.release = anyio.Event()  # never set: Redis never answers
    limiter, metrics = local_limiter(HOLDS, FakeClock(), redis)
    with anyio.fail_after(limits.edge_redis_timeout_s * 20):
        assert (await limiter.check(RouteClass.holds, "192.0.2.12", None)).allowed
    assert fallbacks(metrics) == 1 and limiter.redis_suspended


@pytest.mark.anyio
async def test_the_breaker_pauses_then_probes_once_then_closes() -> None:
    clock = FakeClock()
    redis = FakeRedis()
    redis.failure = RedisConnectionError("refused")
    limiter, metrics = local_limiter(HOLDS, clock, redis)

    async def check() -> Decision:
        return await limiter.check(RouteClass.holds, f"192.0.2.{redis.calls}", None)

    await check()
    for _ in range(10):
        await check()
        clock.advance(limits.edge_redis_retry_s / 20)
    assert redis.calls == 1 and fallbacks(metrics) == 11
    clock.advance(limits.edge_redis_retry_s / 2 + 0.001)
    await check()  # the pause is over: one probe, which fails and re-opens the breaker
    await check()
    assert redis.calls == 2 and limiter.redis_suspended

    # While a probe is in flight, every other request is decided locally at once.
    clock.advance(limits.edge_redis_retry_s)
    redis.failure, redis.release = None, anyio.Event()
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(check)
        await anyio.wait_all_tasks_blocked()
        assert redis.calls == 3
        for _ in range(5):
            await check()
        assert redis.calls == 3
        redis.release.set()
    redis.release = None
    assert not limiter.redis_suspended
    await check()
    await check()
    assert redis.calls == 5 and fallbacks(metrics) == 13 + 5


def test_ipv6_clients_are_counted_per_slash_64() -> None:
    assert address_budget_key("2001:db8:1:2:aaaa::1") == address_budget_key("2001:db8:1:2:bbbb::9")
    assert address_budget_key("2001:db8:1:2::1") != address_budget_key("2001:db8:1:3::1")
    assert address_budget_key("203.0.113.7") == "203.0.113.7"
    assert address_budget_key("unknown") == "unknown"
