"""Rate limits: GCRA budgets per client IP, per fan and per edge fleet, checked all at once.

GCRA (the generic cell rate algorithm) keeps one number per budget: the theoretical arrival
time (TAT), when the budget would be fully drained again if requests had come at exactly the
sustained rate. For a rate of `per_s` with a burst of `burst`, the emission interval is
T = 1/per_s and the tolerance τ = (burst - 1)·T. A request at time `now` is admitted when
`max(TAT, now) - τ <= now`; admitting it moves TAT to `max(TAT, now) + T`. Otherwise it is refused
and may retry after `max(TAT, now) - τ - now`. So `burst` requests pass at once, then one every T.

A route class has up to three budgets (its `Budget`: ip, user, fleet), and for requests without
a valid fan token, when the class sets them, two of their own instead (anonymous_ip,
anonymous_fleet): an anonymous flood then spends only those. A request is charged to
all of them or to none: if any budget refuses, nothing is recorded, and the answer names the
refusing budget with the longest wait (retrying sooner would be refused again).

Two stores, with the same arithmetic:

- Redis (`store="redis"`): one Lua script checks and charges every budget atomically, with the
  Redis server's clock (`TIME`), so edge processes with skewed clocks agree. Each key lives until
  its TAT has drained (then its state equals "absent"), so idle fans cost nothing.
- In-process (`store="local"`, and the fallback when Redis is unreachable): an LRU-bounded dict.
  The fallback uses the same budgets per process, so an outage never lifts the limits (it does
  multiply the fleet budget by the number of edge processes, and forgets what Redis had counted).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Final

import msgspec
import redis.asyncio
from redis.exceptions import RedisError, ResponseError

from edge.errors import EdgeError
from edge.metrics import EdgeMetrics
from edge.settings import Budget, Rate, RateLimits, RouteClass
from tessera import limits

__all__ = ["Charge", "Decision", "LocalGcra", "RateLimiter", "charges", "refusal"]

KEY_PREFIX: Final = "tessera:rl"
FLEET_ID: Final = "all"
# Floating-point slack when comparing times: sums of emission intervals are not exact, and a
# client that waits exactly the advertised retry-after must be admitted. One microsecond is far
# below any interval a budget can have (edge_rate_per_s_max is 10^6/s).
_SLACK_S: Final = 1e-6

# KEYS[i]: the TAT key of budget i. ARGV[2i-1], ARGV[2i]: its emission interval and tolerance in
# microseconds. Returns {1, "0", 0} when admitted (every budget charged), else
# {0, retry-after in ms (a decimal string, µs precision), index of the refusing budget}.
#
# Several keys in one script: under Redis Cluster every key would have to share one hash slot
# (a `{hash tag}`), which would put a route class's whole traffic on one shard. We target one
# non-clustered Redis (primary with replicas) per region, where any keys may be combined.
# Calling TIME before writing is allowed from Redis 5 on (scripts replicate their effects).
# TATs are absolute microseconds (~1.8e15, exact in a double up to 9e15) written with
# string.format, because Lua's default number-to-string keeps only 14 significant digits.
GCRA_SCRIPT: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local new_tats = {}
local refused, wait = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local allow_at = tat - tolerance
  if allow_at - now > 1 and allow_at - now > wait then
    wait, refused = allow_at - now, i
  end
  new_tats[i] = tat + interval
end
if refused > 0 then
  return {0, string.format('%.3f', math.ceil(wait) / 1000), refused}
end
for i = 1, #KEYS do
  local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
  redis.call('SET', KEYS[i], string.format('%.3f', new_tats[i]), 'PX', string.format('%d', ttl_ms))
end
return {1, '0', 0}
"""


class Decision(msgspec.Struct, frozen=True):
    allowed: bool
    # How long until the refusing budget would admit this request (0 when allowed).
    retry_after_s: float = 0.0
    # The refusing budget: "ip", "user" or "fleet"; None when allowed.
    scope: str | None = None


ALLOWED: Final = Decision(True)


class Charge(msgspec.Struct, frozen=True):
    """One budget a request is charged to: its scope, its state key and its rate."""

    scope: str
    key: str
    rate: Rate


def charges(route_class: RouteClass, budget: Budget, ip: str, user_id: str | None) -> list[Charge]:
    """The budgets that apply to this request (the user budget only for a known fan; without
    one, the anonymous budgets when the class has them)."""
    wanted: tuple[tuple[str, Rate | None, str | None], ...]
    if user_id is None and (budget.anonymous_ip is not None or budget.anonymous_fleet is not None):
        wanted = (
            ("anonymous_ip", budget.anonymous_ip, address_budget_key(ip)),
            ("anonymous_fleet", budget.anonymous_fleet, FLEET_ID),
        )
    else:
        wanted = (
            ("ip", budget.ip, address_budget_key(ip)),
            ("user", budget.user if user_id is not None else None, user_id),
            ("fleet", budget.fleet, FLEET_ID),
        )
    return [
        Charge(scope, f"{KEY_PREFIX}:{route_class.value}:{scope}:{ident}", rate)
        for scope, rate, ident in wanted
        if rate is not None and ident is not None
    ]


def address_budget_key(ip: str) -> str:
    """What an IP budget is counted per: the address, but the /64 for IPv6, because one
    subscriber gets a whole /64 and could otherwise rotate through 2^64 fresh budgets."""
    if ":" not in ip:
        return ip
    try:
        network = ipaddress.IPv6Network(f"{ip}/64", strict=False)
    except ValueError:
        return ip
    return str(network)


def _interval_and_tolerance_s(rate: Rate) -> tuple[float, float]:
    interval = 1.0 / rate.per_s
    return interval, (rate.burst - 1) * interval


class LocalGcra:
    """GCRA in this process: at most `max_keys` TATs, the least recently used forgotten first
    (forgetting one grants that key a fresh burst, so the bound trades memory for precision
    only under more distinct clients than it holds)."""

    def __init__(
        self,
        max_keys: int = limits.edge_local_rate_keys_max,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        self.max_keys = max_keys
        self._clock = clock
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def __contains__(self, key: object) -> bool:
        return key in self._tats

    def check(self, to_charge: Sequence[Charge]) -> Decision:
        now = self._clock()
        new_tats: list[float] = []
        refused: Decision | None = None
        for charge in to_charge:
            interval, tolerance = _interval_and_tolerance_s(charge.rate)
            tat = max(self._tats.get(charge.key, now), now)
            wait = tat - tolerance - now
            if wait > _SLACK_S and (refused is None or wait > refused.retry_after_s):
                refused = Decision(False, wait, charge.scope)
            new_tats.append(tat + interval)
        if refused is not None:
            return refused
        for charge, tat in zip(to_charge, new_tats, strict=True):
            self._tats[charge.key] = tat
            self._tats.move_to_end(charge.key)
        while len(self._tats) > self.max_keys:
            self._tats.popitem(last=False)
        return ALLOWED


def _is_script_error(error: ResponseError) -> bool:
    """An error raised by the script itself (a bug, or a key of the wrong type): not an outage,
    so it must surface rather than be hidden by the fallback. Redis 7 and Valkey append
    "script: <sha>" to such errors, Redis 6 says "Error running script"; server conditions such
    as READONLY (a failover) or OOM have their own exception classes and mean "fall back"."""
    if type(error) is not ResponseError:
        return False
    message = str(error)
    return "script: " in message or "Error running script" in message or "user_script" in message


class RateLimiter:
    """The edge's rate limiter: Redis-shared budgets, falling back to in-process ones.

    When Redis fails (error or `edge_redis_timeout_s`), the decision is taken locally and Redis
    is left alone for `edge_redis_retry_s` (a circuit breaker: an outage must not cost every
    request a timeout); then one request at a time probes it until it answers.
    """

    def __init__(
        self,
        redis: redis.asyncio.Redis,
        config: RateLimits,
        metrics: EdgeMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._script = redis.register_script(GCRA_SCRIPT)
        self.local = LocalGcra(limits.edge_local_rate_keys_max, clock)
        self._charges: dict[tuple[RouteClass, str, str | None], list[Charge]] = {}
        # None: Redis is believed healthy. Otherwise the breaker is open until this time.
        self._redis_down_until: float | None = None
        self._probing = False

    @property
    def config(self) -> RateLimits:
        return self._config

    @property
    def redis_suspended(self) -> bool:
        """Whether Redis is being left alone after a failure (the breaker is open)."""
        return self._redis_down_until is not None and self._clock() < self._redis_down_until

    async def check(self, route_class: RouteClass, ip: str, user_id: str | None) -> Decision:
        budget = self._config.budget(route_class)
        to_charge = charges(route_class, budget, ip, user_id)
        if not to_charge:
            return ALLOWED
        if budget.store == "local":
            decision = self.local.check(to_charge)
        else:
            decision = await self._check_shared(to_charge)
        return self._counted(route_class, decision)

    def check_local(self, route_class: RouteClass, ip: str, user_id: str | None) -> Decision:
        """Decide in this process whatever the class's store (for a synchronous fast path;
        meant for `store="local"` classes, where it equals `check`). The budgets a client is
        charged to are remembered (they depend only on the fixed config and the arguments):
        building them cost about as much as the check."""
        key = (route_class, ip, user_id)
        to_charge = self._charges.get(key)
        if to_charge is None:
            to_charge = charges(route_class, self._config.budget(route_class), ip, user_id)
            if len(self._charges) >= limits.edge_rate_charges_cached_max:
                self._charges.clear()
            self._charges[key] = to_charge
        if not to_charge:
            return ALLOWED
        return self._counted(route_class, self.local.check(to_charge))

    def _counted(self, route_class: RouteClass, decision: Decision) -> Decision:
        if not decision.allowed:
            scope = decision.scope or "unknown"
            self._metrics.rate_limited.labels(route_class.value, scope).inc()
        return decision

    async def _check_shared(self, to_charge: Sequence[Charge]) -> Decision:
        down_until = self._redis_down_until
        probe = down_until is not None
        if down_until is not None:
            # Open breaker: wait out the pause, then let exactly one request try Redis.
            if self._probing or self._clock() < down_until:
                return self._fallback(to_charge)
            self._probing = True
        try:
            decision = await self._ask_redis(to_charge)
        except ResponseError as error:
            if _is_script_error(error):
                raise
            return self._redis_failed(to_charge)
        except (RedisError, OSError):  # OSError covers the built-in ConnectionError and Timeout
            return self._redis_failed(to_charge)
        finally:
            if probe:
                self._probing = False
        self._redis_down_until = None
        return decision

    async def _ask_redis(self, to_charge: Sequence[Charge]) -> Decision:
        args: list[str] = []
        for charge in to_charge:
            interval, tolerance = _interval_and_tolerance_s(charge.rate)
            args += [repr(interval * 1e6), repr(tolerance * 1e6)]
        async with asyncio.timeout(limits.edge_redis_timeout_s):
            reply = await self._script(keys=[charge.key for charge in to_charge], args=args)
        allowed, retry_after_ms, refused = reply
        if allowed:
            return ALLOWED
        return Decision(False, float(retry_after_ms) / 1000, to_charge[int(refused) - 1].scope)

    def _redis_failed(self, to_charge: Sequence[Charge]) -> Decision:
        self._redis_down_until = self._clock() + limits.edge_redis_retry_s
        return self._fallback(to_charge)

    def _fallback(self, to_charge: Sequence[Charge]) -> Decision:
        self._metrics.rate_limit_fallbacks.inc()
        return self.local.check(to_charge)


_NOUNS: Final = {
    RouteClass.reads: "requests",
    RouteClass.queue: "waiting-room requests",
    RouteClass.holds: "holds",
    RouteClass.orders: "orders",
}
_WHERE: Final = {
    "ip": "from this IP address",
    "user": "from this account",
    "fleet": "on the site right now",
    "anonymous_ip": "from this IP address without signing in",
    "anonymous_fleet": "without signing in on the site right now",
}


def refusal(decision: Decision, route_class: RouteClass) -> EdgeError:
    """The 429 for a refused decision, e.g. "too many holds from this IP address; retry in 2 s"."""
    # Rounded to the millisecond first so float noise (2.0000000001) does not add a second.
    seconds = max(1, math.ceil(round(decision.retry_after_s, 3)))
    where = _WHERE.get(decision.scope or "", "")
    message = f"too many {_NOUNS[route_class]} {where}".rstrip() + f"; retry in {seconds} s"
    return EdgeError(429, "rate_limited", message, {"Retry-After": str(seconds)})
