"""The negative cache's bounds (TTL, entries) and which budgets a call without a token is
charged to (issue 15, items 1 and 2)."""

from __future__ import annotations

from edge.negative import NegativeCache
from edge.ratelimit import LocalGcra, charges
from edge.settings import Budget, Rate, RateLimits, RouteClass


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_remembered_path_is_forgotten_after_its_ttl() -> None:
    clock = Clock()
    cache = NegativeCache(ttl_s=5.0, entries_max=10, clock=clock)
    cache.remember("/v1/events/x")
    assert cache.known_missing("/v1/events/x")
    assert not cache.known_missing("/v1/events/y")
    clock.now += 4.9
    assert cache.known_missing("/v1/events/x")
    clock.now += 0.2
    assert not cache.known_missing("/v1/events/x")
    assert len(cache) == 0  # dropped when found expired
    assert cache.hits == 2


def test_the_cache_keeps_at_most_its_bound_oldest_out_first() -> None:
    cache = NegativeCache(ttl_s=60.0, entries_max=3, clock=Clock())
    for i in range(10):
        cache.remember(f"/p{i}")
    assert len(cache) == 3
    assert [cache.known_missing(f"/p{i}") for i in range(10)] == [False] * 7 + [True] * 3
    assert (cache.stored, cache.evicted) == (10, 7)


QUEUE = Budget(
    ip=Rate(5, 10),
    user=Rate(1, 5),
    fleet=Rate(100, 100),
    anonymous_ip=Rate(1, 2),
    anonymous_fleet=Rate(10, 3),
)


def test_calls_without_a_token_are_charged_to_the_anonymous_budgets_only() -> None:
    anonymous = charges(RouteClass.queue, QUEUE, "10.0.0.1", None)
    assert [(c.scope, c.rate) for c in anonymous] == [
        ("anonymous_ip", Rate(1, 2)),
        ("anonymous_fleet", Rate(10, 3)),
    ]
    fan = charges(RouteClass.queue, QUEUE, "10.0.0.1", "ann")
    assert [c.scope for c in fan] == ["ip", "user", "fleet"]
    assert not {c.key for c in anonymous} & {c.key for c in fan}
    # IPv6: one budget per /64, as for the signed-in ip budget.
    assert charges(RouteClass.queue, QUEUE, "2001:db8::1", None)[0].key.endswith("2001:db8::/64")


def test_a_class_without_anonymous_budgets_charges_as_before() -> None:
    plain = Budget(ip=Rate(5, 10), fleet=Rate(100, 100))
    assert [c.scope for c in charges(RouteClass.queue, plain, "10.0.0.1", None)] == ["ip", "fleet"]


def test_an_anonymous_flood_leaves_the_fans_budgets_whole() -> None:
    gcra = LocalGcra(clock=Clock())
    flood = [gcra.check(charges(RouteClass.queue, QUEUE, f"10.1.0.{i}", None)) for i in range(10)]
    assert [d.allowed for d in flood] == [True] * 3 + [False] * 7  # the anonymous fleet's burst
    assert {d.scope for d in flood if not d.allowed} == {"anonymous_fleet"}
    assert gcra.check(charges(RouteClass.queue, QUEUE, "10.1.0.1", "ann")).allowed


def test_the_defaults_give_challenges_and_reads_anonymous_budgets() -> None:
    defaults = RateLimits()
    queue = defaults.budget(RouteClass.queue)
    assert queue.anonymous_ip is not None and queue.ip is not None
    assert queue.anonymous_ip.per_s < queue.ip.per_s
    reads = defaults.budget(RouteClass.reads)
    assert reads.anonymous_ip is not None and reads.ip is not None
    assert reads.anonymous_ip.per_s < reads.ip.per_s
