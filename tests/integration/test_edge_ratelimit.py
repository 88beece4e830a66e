"""The edge's rate limiter (edge/ratelimit.py) against a real Redis (Valkey).

The session's Redis is shared with other tests, and the fleet key of a route class has a fixed
name, so these tests use a database of their own (`ISOLATED_DB`) and delete the limiter's keys
there before and after each test; IPs and fan ids are unique per test as well. Timing
assertions leave room for a loaded two-core machine: they check what the limiter decides, not
how fast.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import pytest
from redis.asyncio import Redis

from edge.metrics import EdgeMetrics
from edge.ratelimit import Decision, RateLimiter
from edge.settings import Budget, Rate, RateLimits, RouteClass
from tessera import limits
from tessera_ops.servers import RunningServer, start_valkey

pytestmark = pytest.mark.anyio

ISOLATED_DB = 11
KEYS = "tessera:rl:*"
# Budgets this slow do not refill noticeably while a test runs (one request every 10 s).
SLOW_PER_S = 0.1


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


async def _delete_limiter_keys(client: Redis) -> None:
    keys = [key async for key in client.scan_iter(match=KEYS, count=1_000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(_with_db(redis_url, ISOLATED_DB))
    await _delete_limiter_keys(client)
    try:
        yield client
    finally:
        await _delete_limiter_keys(client)
        await client.aclose()


def outcome(decision: Decision) -> tuple[bool, str | None, object]:
    """For comparing with `(False, scope, pytest.approx(wait))`."""
    return decision.allowed, decision.scope, decision.retry_after_s


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def holds_limiter(
    redis: Redis,
    budget: Budget,
    metrics: EdgeMetrics | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> RateLimiter:
    config = RateLimits({RouteClass.holds: budget})
    return RateLimiter(redis, config, metrics or EdgeMetrics(), clock=clock)


def fallbacks(metrics: EdgeMetrics) -> float:
    return metrics.registry.get_sample_value("tessera_edge_rate_limit_local_fallbacks_total") or 0.0


async def test_sustained_rate_admits_rate_times_duration_plus_burst(redis: Redis) -> None:
    per_s, burst, duration_s = 20.0, 5, 2.0
    limiter = holds_limiter(redis, Budget(ip=Rate(per_s, burst)))
    ip = unique("ip")
    admitted = refused = 0
    started = time.monotonic()
    while time.monotonic() - started < duration_s:
        decision = await limiter.check(RouteClass.holds, ip, None)
        if decision.allowed:
            admitted += 1
        else:
            refused += 1
            assert decision.scope == "ip"
            # Hammering keeps the budget drained: the next slot is at most one interval away.
            assert 0 < decision.retry_after_s <= 1 / per_s + 0.001
        await anyio.sleep(0.002)
    elapsed = time.monotonic() - started
    # GCRA's bound, measured on our clock (which spans the server's): never more than this.
    assert admitted <= burst + per_s * elapsed + 1
    # A stall of the test loop longer than a burst's worth (0.25 s) forfeits credit: allow it.
    assert admitted >= per_s * duration_s
    assert refused > admitted  # the loop asked far more often than the budget allows


async def test_retrying_after_retry_after_is_admitted(redis: Redis) -> None:
    limiter = holds_limiter(redis, Budget(ip=Rate(2, burst=1), user=Rate(1, burst=1)))
    ip, fan = unique("ip"), unique("fan")
    started = time.monotonic()
    assert (await limiter.check(RouteClass.holds, ip, fan)).allowed
    refused = await limiter.check(RouteClass.holds, ip, fan)
    elapsed = time.monotonic() - started
    # Both budgets refuse; the user's (1/s) has the longer wait.
    assert refused.scope == "user"
    assert 1.0 - elapsed - 0.002 <= refused.retry_after_s <= 1.0 + 0.001
    # A refusal is not charged: asking again right away does not lengthen the wait.
    again = await limiter.check(RouteClass.holds, ip, fan)
    assert again.scope == "user" and again.retry_after_s <= refused.retry_after_s
    await anyio.sleep(again.retry_after_s)
    assert (await limiter.check(RouteClass.holds, ip, fan)).allowed
    # Only the IP's budget applies to a request without a fan (ip: one every 0.5 s).
    ip_refusal = await limiter.check(RouteClass.holds, ip, None)
    assert ip_refusal.scope == "ip" and 0.4 <= ip_refusal.retry_after_s <= 0.501
    await anyio.sleep(ip_refusal.retry_after_s)
    assert (await limiter.check(RouteClass.holds, ip, None)).allowed


async def test_all_or_nothing_across_ip_user_and_fleet(redis: Redis) -> None:
    budget = Budget(ip=Rate(SLOW_PER_S, 3), user=Rate(SLOW_PER_S / 2, 2), fleet=Rate(SLOW_PER_S, 4))
    metrics = EdgeMetrics()
    limiter = holds_limiter(redis, budget, metrics)
    a, b, c = unique("ip-a"), unique("ip-b"), unique("ip-c")
    u1, u2, u3 = unique("fan1"), unique("fan2"), unique("fan3")

    async def check(user: str | None, ip: str) -> Decision:
        return await limiter.check(RouteClass.holds, ip, user)

    assert (await check(u1, a)).allowed and (await check(u1, a)).allowed
    assert outcome(await check(u1, a)) == (False, "user", pytest.approx(20.0, abs=0.5))
    assert (await check(u2, a)).allowed  # the refusal above charged neither the IP nor the fleet
    assert outcome(await check(u2, a)) == (False, "ip", pytest.approx(10.0, abs=0.5))
    # The IP and the user both refuse: the answer is the longer wait, the user's.
    assert outcome(await check(u1, a)) == (False, "user", pytest.approx(20.0, abs=0.5))
    assert (await check(None, b)).allowed  # the fleet's fourth
    assert outcome(await check(u3, c)) == (False, "fleet", pytest.approx(10.0, abs=0.5))
    assert await redis.exists(f"tessera:rl:holds:user:{u3}", f"tessera:rl:holds:ip:{c}") == 0
    assert await redis.exists("tessera:rl:holds:user:None") == 0
    assert await redis.exists("tessera:rl:holds:fleet:all") == 1
    limited = {
        scope: metrics.registry.get_sample_value(
            "tessera_edge_rate_limited_total", {"route_class": "holds", "scope": scope}
        )
        for scope in ("ip", "user", "fleet")
    }
    assert limited == {"ip": 1.0, "user": 2.0, "fleet": 1.0}


async def test_keys_expire_when_their_budget_has_drained(redis: Redis) -> None:
    limiter = holds_limiter(redis, Budget(ip=Rate(20, burst=3), user=Rate(10, burst=1)))
    ip, fan = unique("ip"), unique("fan")
    ip_key, user_key = f"tessera:rl:holds:ip:{ip}", f"tessera:rl:holds:user:{fan}"
    assert (await limiter.check(RouteClass.holds, ip, fan)).allowed
    assert 0 < await redis.pttl(ip_key) <= 50  # one interval of 20/s
    assert 0 < await redis.pttl(user_key) <= 100  # one interval of 10/s
    await anyio.sleep(0.1)
    assert (await limiter.check(RouteClass.holds, ip, None)).allowed
    assert (await limiter.check(RouteClass.holds, ip, None)).allowed
    assert 50 < await redis.pttl(ip_key) <= 100  # two intervals ahead
    deadline = time.monotonic() + 5.0
    while await redis.exists(ip_key, user_key) and time.monotonic() < deadline:
        await anyio.sleep(0.05)
    assert await redis.exists(ip_key, user_key) == 0


async def test_two_edge_processes_share_the_fleet_budget(redis: Redis, redis_url: str) -> None:
    other = Redis.from_url(_with_db(redis_url, ISOLATED_DB))  # its own connections
    try:
        budget = Budget(ip=Rate(SLOW_PER_S, 5), fleet=Rate(SLOW_PER_S, 6))
        # Their clocks disagree by an hour: the script uses the Redis server's time only.
        first_metrics, skewed_metrics = EdgeMetrics(), EdgeMetrics()
        first = holds_limiter(redis, budget, first_metrics)
        skewed = holds_limiter(
            other, budget, skewed_metrics, clock=lambda: time.monotonic() + 3_600
        )
        decisions = [
            await limiter.check(RouteClass.holds, unique("ip"), None)
            for _ in range(5)
            for limiter in (first, skewed)
        ]
        assert [d.allowed for d in decisions] == [True] * 6 + [False] * 4
        assert {d.scope for d in decisions[6:]} == {"fleet"}
        assert fallbacks(first_metrics) == fallbacks(skewed_metrics) == 0
    finally:
        await other.aclose()


# --- Redis going away and coming back ---


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[RunningServer]:
    server = start_valkey(tmp_path / "valkey")
    try:
        yield server
    finally:
        if server.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGCONT)
        server.stop()


async def _hammer(limiter: RateLimiter, ip: str, count: int) -> tuple[int, int, float]:
    """`count` holds from `ip`: (admitted, requests slower than half the Redis timeout, seconds)."""
    admitted = slow = 0
    started = time.monotonic()
    for _ in range(count):
        before = time.monotonic()
        decision = await limiter.check(RouteClass.holds, ip, None)
        slow += time.monotonic() - before > limits.edge_redis_timeout_s / 2
        if decision.allowed:
            admitted += 1
        else:
            assert decision.scope == "ip"
    return admitted, slow, time.monotonic() - started


async def test_redis_outage_falls_back_to_local_budgets_and_recovers(
    own_valkey: RunningServer,
) -> None:
    per_s, burst, count = 1.0, 5, 40
    client = Redis.from_url(own_valkey.url)
    try:
        metrics = EdgeMetrics()
        limiter = holds_limiter(client, Budget(ip=Rate(per_s, burst)), metrics)
        ip = unique("ip")
        assert (await limiter.check(RouteClass.holds, ip, None)).allowed
        assert await client.exists(f"tessera:rl:holds:ip:{ip}") == 1
        assert fallbacks(metrics) == 0

        # Frozen: connections open but nothing answers. One request waits out the timeout,
        # then the breaker sends the rest to the local limiter without asking Redis.
        outage_started = time.monotonic()
        os.kill(own_valkey.pid, signal.SIGSTOP)
        admitted, slow, elapsed = await _hammer(limiter, ip, count)
        assert 1 <= slow <= 2, "one timeout per pause, not one per request"
        assert elapsed < count * limits.edge_redis_timeout_s / 4
        # The local limiter knows nothing of Redis's count: a fresh burst, but no more.
        assert burst <= admitted <= burst + math.ceil(per_s * elapsed) + 1
        assert fallbacks(metrics) == count
        assert limiter.redis_suspended

        # After the pause one request probes the (still frozen) Redis, and only one.
        await anyio.sleep(limits.edge_redis_retry_s + 0.1)
        more, slow, _ = await _hammer(limiter, ip, 10)
        assert slow == 1
        assert fallbacks(metrics) == count + 10
        locally_s = time.monotonic() - outage_started
        assert admitted + more <= burst + math.ceil(per_s * locally_s) + 1

        # Stopped: connection refused, still decided locally.
        os.kill(own_valkey.pid, signal.SIGCONT)
        own_valkey.stop()
        await anyio.sleep(limits.edge_redis_retry_s + 0.1)
        decision = await limiter.check(RouteClass.holds, unique("ip"), None)
        assert decision.allowed and limiter.redis_suspended
        assert fallbacks(metrics) == count + 11

        # Back on the same port (empty): after the pause, Redis decides again.
        own_valkey.restart()
        await anyio.sleep(limits.edge_redis_retry_s + 0.1)
        back = unique("ip")
        assert (await limiter.check(RouteClass.holds, back, None)).allowed
        assert not limiter.redis_suspended
        assert await client.exists(f"tessera:rl:holds:ip:{back}") == 1
        assert fallbacks(metrics) == count + 11
    finally:
        await client.aclose()
