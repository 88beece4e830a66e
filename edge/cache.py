"""The micro-cache: a flash crowd of identical GETs becomes one origin request per key per TTL.

- **Keys** are path + the one query parameter that changes the answer (`format`) + the encoding
  chosen for the fan (br, zstd, gzip or identity); anything else in the query is ignored, so a
  random query string cannot bust the cache.
- **TTL** is the origin's `max-age` (clamped; 1 s when it gives none) unless the operator fixed
  one. `no-store`, `no-cache` and `private` answers are passed on, never stored.
- **Single flight**: the first request for a missing or expired key starts one origin fetch (a
  task of its own, so a fan who disconnects does not cancel it for the others); every request
  that arrives meanwhile waits for that fetch. Only the request that started it reports `MISS`.
- **Revalidation**: an expired entry is fetched with `If-None-Match`; a 304 renews it without
  moving the body again.
- **Serve-stale**: when every origin fails, an entry is served (`STALE`) until `stale_s` past its
  TTL; after that the fan gets 503.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from edge.origins import OriginAnswer, OriginPool, OriginUnavailable
from tessera import limits

Outcome = Literal["HIT", "MISS", "STALE"]
CacheKey = tuple[str, str, str]  # (path, format, encoding)

MAX_AGE: Final = re.compile(r"(?:^|[,\s])max-age=(\d+)")
UNCACHEABLE: Final = ("no-store", "no-cache", "private")
CACHEABLE_STATUSES: Final = frozenset({200, 404})


@dataclass(frozen=True, slots=True)
class Entry:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    etag: str | None
    # The ETag without its encoding suffix: a fan's `If-None-Match` of any variant matches.
    base_etag: str | None
    stored_at: float
    fresh_until: float
    stale_until: float
    # Encoded once per entry, not per request: the full answer's headers and a 304's.
    wire_headers: tuple[tuple[bytes, bytes], ...]
    wire_headers_304: tuple[tuple[bytes, bytes], ...]


NOT_MODIFIED_HEADERS: Final = frozenset({"etag", "cache-control", "vary"})


def wire(
    answer: OriginAnswer,
) -> tuple[tuple[tuple[bytes, bytes], ...], tuple[tuple[bytes, bytes], ...]]:
    full = tuple((name.encode(), value.encode("latin-1")) for name, value in answer.headers)
    full += ((b"content-length", str(len(answer.body)).encode()),)
    short = tuple(pair for pair in full if pair[0].decode() in NOT_MODIFIED_HEADERS)
    return full, short


@dataclass(frozen=True, slots=True)
class Fetched:
    entry: Entry
    stale: bool


def base_etag(etag: str | None, encoding: str | None) -> str | None:
    if etag is None or encoding is None:
        return etag
    suffix = f'-{encoding}"'
    return etag[: -len(suffix)] + '"' if etag.endswith(suffix) else etag


class Origin(Protocol):
    """What the cache fetches from: an `OriginPool`, or edge/negative.py's event check."""

    async def get(self, path_and_query: str, headers: Mapping[str, str]) -> OriginAnswer: ...


class MicroCache:
    def __init__(
        self,
        pool: OriginPool | Origin,
        *,
        ttl_s: float | None,
        stale_s: float,
        clock: Callable[[], float] = time.monotonic,
        stored_statuses: frozenset[int] = CACHEABLE_STATUSES,
    ) -> None:
        self.pool = pool
        # The edge keeps 404s out (edge/negative.py): random ids would flush the entries fans use.
        self.stored_statuses = stored_statuses
        self.ttl_s = ttl_s
        self.stale_s = stale_s
        self.clock = clock
        self.entries: OrderedDict[CacheKey, Entry] = OrderedDict()
        self.inflight: dict[CacheKey, asyncio.Task[Fetched]] = {}

    def fresh(self, key: CacheKey) -> Entry | None:
        """The entry when it can be served without asking anyone: the hot path."""
        entry = self.entries.get(key)
        if entry is not None and self.clock() < entry.fresh_until:
            return entry
        return None

    async def get(self, key: CacheKey, path_and_query: str) -> tuple[Entry, Outcome]:
        """The entry for `key`, fetching it once however many callers ask; raises
        `OriginUnavailable` when there is nothing fresh or stale enough to serve."""
        entry = self.fresh(key)
        if entry is not None:
            return entry, "HIT"
        task = self.inflight.get(key)
        leader = task is None
        if task is None:
            task = asyncio.create_task(self._fetch(key, path_and_query))
            self.inflight[key] = task
            task.add_done_callback(lambda done: self._settle(key, done))
        fetched = await asyncio.shield(task)
        if fetched.stale:
            return fetched.entry, "STALE"
        return fetched.entry, "MISS" if leader else "HIT"

    def _settle(self, key: CacheKey, task: asyncio.Task[Fetched]) -> None:
        if self.inflight.get(key) is task:
            del self.inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here: waiters re-raise it; nobody waiting is fine too

    async def _fetch(self, key: CacheKey, path_and_query: str) -> Fetched:
        previous = self.entries.get(key)
        headers = {"accept-encoding": key[2]}
        if previous is not None and previous.etag is not None:
            headers["if-none-match"] = previous.etag
        try:
            answer = await self.pool.get(path_and_query, headers)
        except OriginUnavailable:
            if previous is not None and self.clock() < previous.stale_until:
                return Fetched(previous, stale=True)
            raise
        if answer.status == 304:
            if previous is None:
                raise OriginUnavailable("origin answered 304 to an unconditional request")
            answer = OriginAnswer(previous.status, previous.headers, previous.body)
        entry = self._entry(answer)
        if entry.fresh_until > entry.stored_at and entry.status in self.stored_statuses:
            self._store(key, entry)
        return Fetched(entry, stale=False)

    def _entry(self, answer: OriginAnswer) -> Entry:
        now = self.clock()
        ttl = self.ttl_for(answer)
        etag = answer.header("etag")
        full, short = wire(answer)
        return Entry(
            status=answer.status,
            headers=answer.headers,
            body=answer.body,
            etag=etag,
            base_etag=base_etag(etag, answer.header("content-encoding")),
            stored_at=now,
            fresh_until=now + ttl,
            stale_until=now + ttl + self.stale_s,
            wire_headers=full,
            wire_headers_304=short,
        )

    def ttl_for(self, answer: OriginAnswer) -> float:
        """Seconds to keep `answer`; 0 when it must not be stored."""
        if answer.status not in CACHEABLE_STATUSES:
            return 0.0
        if len(answer.body) > limits.edge_cache_body_bytes_max:
            return 0.0
        control = (answer.header("cache-control") or "").lower()
        if any(directive in control for directive in UNCACHEABLE):
            return 0.0
        if self.ttl_s is not None:
            return self.ttl_s
        match = MAX_AGE.search(control)
        ttl = float(match.group(1)) if match else limits.edge_cache_ttl_default_s
        return min(max(ttl, limits.edge_cache_ttl_s_min), limits.edge_cache_ttl_s_max)

    def _store(self, key: CacheKey, entry: Entry) -> None:
        self.entries[key] = entry
        self.entries.move_to_end(key)
        while len(self.entries) > limits.edge_cache_entries_max:
            self.entries.popitem(last=False)
