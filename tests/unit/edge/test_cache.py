"""The micro-cache's rules with a scripted origin and a controlled clock (the real read nodes are
in tests/integration/test_edge.py): single flight, TTLs, revalidation, stale, bounds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edge.cache import MicroCache, base_etag
from edge.origins import OriginAnswer, OriginUnavailable
from tessera import limits

pytestmark = pytest.mark.anyio
KEY = ("/v1/events/e/seatmap", "binary", "br")


class ScriptedOrigin:
    """Answers from a script; records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.answer = OriginAnswer(
            200,
            (("etag", '"v1-br"'), ("content-encoding", "br"), ("cache-control", "max-age=1")),
            b"map",
        )
        self.fail = False
        self.delay_s = 0.0

    async def get(self, path_and_query: str, headers: dict[str, str]) -> OriginAnswer:
        self.calls.append(headers)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise OriginUnavailable("down")
        if headers.get("if-none-match") == '"v1-br"':
            return OriginAnswer(304, (), b"")
        return self.answer


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def cache(
    origin: ScriptedOrigin, clock: Clock, ttl_s: float | None = None, stale_s: float = 5.0
) -> MicroCache:
    pool: Any = origin
    return MicroCache(pool, ttl_s=ttl_s, stale_s=stale_s, clock=clock)


async def test_concurrent_misses_share_one_fetch() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    origin.delay_s = 0.05
    micro = cache(origin, clock)
    results = await asyncio.gather(*(micro.get(KEY, "/p") for _ in range(100)))
    assert len(origin.calls) == 1
    outcomes = [outcome for _, outcome in results]
    assert outcomes.count("MISS") == 1 and outcomes.count("HIT") == 99
    assert {entry.body for entry, _ in results} == {b"map"}
    assert micro.inflight == {}


async def test_a_cancelled_leader_does_not_fail_the_waiters() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    origin.delay_s = 0.05
    micro = cache(origin, clock)
    leader = asyncio.create_task(micro.get(KEY, "/p"))
    await asyncio.sleep(0)
    waiter = asyncio.create_task(micro.get(KEY, "/p"))
    await asyncio.sleep(0.01)
    leader.cancel()
    entry, outcome = await waiter
    assert (entry.body, outcome) == (b"map", "HIT")
    assert len(origin.calls) == 1


async def test_expiry_revalidates_with_if_none_match() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    micro = cache(origin, clock)
    await micro.get(KEY, "/p")
    clock.now += 0.5
    assert (await micro.get(KEY, "/p"))[1] == "HIT"
    clock.now += 0.6
    entry, outcome = await micro.get(KEY, "/p")
    assert outcome == "MISS"
    assert origin.calls[-1]["if-none-match"] == '"v1-br"'
    assert entry.body == b"map" and entry.stored_at == clock.now
    assert entry.base_etag == '"v1"'


async def test_stale_within_the_window_then_unavailable() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    micro = cache(origin, clock, stale_s=5.0)
    await micro.get(KEY, "/p")
    origin.fail = True
    clock.now += 3.0
    entry, outcome = await micro.get(KEY, "/p")
    assert (entry.body, outcome) == (b"map", "STALE")
    clock.now += 3.1  # 6.1 s after the fetch: past TTL (1 s) + stale (5 s)
    with pytest.raises(OriginUnavailable):
        await micro.get(KEY, "/p")
    origin.fail = False
    origin.answer = OriginAnswer(200, (("etag", '"v2"'),), b"new")
    entry, outcome = await micro.get(KEY, "/p")
    assert outcome == "MISS"


async def test_a_cold_key_with_no_origin_raises() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    origin.fail = True
    with pytest.raises(OriginUnavailable):
        await cache(origin, clock).get(KEY, "/p")


@pytest.mark.parametrize(
    ("status", "control", "override", "ttl"),
    [
        (200, "public, max-age=1, stale-while-revalidate=5", None, 1.0),
        (200, "max-age=30", None, 30.0),
        (200, "max-age=100000", None, limits.edge_cache_ttl_s_max),
        (200, "max-age=0", None, limits.edge_cache_ttl_s_min),
        (200, "", None, limits.edge_cache_ttl_default_s),
        (200, "no-store", None, 0.0),
        (200, "private, max-age=5", None, 0.0),
        (200, "no-cache", 3.0, 0.0),
        (200, "max-age=1", 3.0, 3.0),
        (404, "", None, limits.edge_cache_ttl_default_s),
        (503, "max-age=1", None, 0.0),
        (422, "", None, 0.0),
    ],
)
def test_ttl_follows_the_origin(
    status: int, control: str, override: float | None, ttl: float
) -> None:
    micro = cache(ScriptedOrigin(), Clock(), ttl_s=override)
    answer = OriginAnswer(status, (("cache-control", control),) if control else (), b"x")
    assert micro.ttl_for(answer) == ttl


async def test_uncacheable_answers_are_served_but_not_kept() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    origin.answer = OriginAnswer(200, (("cache-control", "no-store"),), b"private")
    micro = cache(origin, clock)
    for _ in range(2):
        entry, outcome = await micro.get(KEY, "/p")
        assert (entry.body, outcome) == (b"private", "MISS")
    assert len(origin.calls) == 2 and micro.entries == {}


async def test_entries_are_bounded() -> None:
    origin, clock = ScriptedOrigin(), Clock()
    micro = cache(origin, clock)
    for index in range(limits.edge_cache_entries_max + 10):
        await micro.get((f"/p{index}", "binary", "br"), "/p")
    assert len(micro.entries) == limits.edge_cache_entries_max
    assert ("/p0", "binary", "br") not in micro.entries


def test_base_etag_strips_the_encoding_suffix() -> None:
    assert base_etag('"abc-br"', "br") == '"abc"'
    assert base_etag('"abc"', None) == '"abc"'
    assert base_etag('"abc-gzip"', "br") == '"abc-gzip"'
    assert base_etag(None, "br") is None


def test_wire_headers_are_encoded_once() -> None:
    micro = cache(ScriptedOrigin(), Clock())
    entry = micro._entry(OriginAnswer(200, (("etag", '"x"'), ("content-type", "a/b")), b"12345"))
    assert (b"content-length", b"5") in entry.wire_headers
    assert entry.wire_headers_304 == ((b"etag", b'"x"'),)
