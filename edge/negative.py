"""Answers for ids that name nothing, kept apart from the micro-cache (docs/api.md, "Unknown ids").

A flood of random event ids would otherwise cost an origin request per id, and, stored in the
micro-cache, push the seat maps fans want out of it. Here a 404 from an origin is remembered per
path for `limits.edge_negative_ttl_s`, at most `limits.edge_negative_entries_max` paths, the
oldest forgotten first; the fast path answers a remembered path with its own 404 before it looks
at the micro-cache's origin.

`EventCheckedOrigin` spares the writer the same flood: event details come from the writer, but
whether an event exists is answered by a read node from memory (`…/seatmap` with
`If-None-Match: *`: 304 or 404), so the
writer is asked only about events a read node knows.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final

from edge.origins import OriginAnswer, OriginPool
from tessera import limits
from tessera.web import error_body

NOT_FOUND_HEADERS: Final = (("content-type", "application/json"), ("cache-control", "no-store"))
NO_SUCH_EVENT: Final = error_body("not_found", "no such event")


class NegativeCache:
    def __init__(
        self,
        *,
        ttl_s: float = limits.edge_negative_ttl_s,
        entries_max: int = limits.edge_negative_entries_max,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.entries_max = entries_max
        self.clock = clock
        self.until: OrderedDict[str, float] = OrderedDict()
        # Plain integers on the request path, moved into Prometheus when scraped (as the cache's).
        self.hits = 0
        self.stored = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.until)

    def known_missing(self, path: str) -> bool:
        until = self.until.get(path)
        if until is None:
            return False
        if self.clock() >= until:
            del self.until[path]
            return False
        self.hits += 1
        return True

    def remember(self, path: str) -> None:
        self.until[path] = self.clock() + self.ttl_s
        self.until.move_to_end(path)
        self.stored += 1
        while len(self.until) > self.entries_max:
            self.until.popitem(last=False)
            self.evicted += 1


class EventCheckedOrigin:
    """The writer, asked for `/v1/events/{id}` only once a read node has said the event exists.
    When no read node answers, neither is the writer asked (`OriginUnavailable`: the cache serves
    what it has stale, else 503): a flood that overwhelms the read nodes must not pass through
    to the pool that commits holds."""

    def __init__(self, readers: OriginPool, writer: OriginPool) -> None:
        self.readers = readers
        self.writer = writer
        self.spared = 0  # writer requests answered by a read node's 404 instead

    async def get(self, path_and_query: str, headers: Mapping[str, str]) -> OriginAnswer:
        path = path_and_query.split("?", 1)[0]
        # `If-None-Match: *`: a read node that has the event answers 304, without a body.
        probe = await self.readers.get(
            path + "/seatmap", {"accept-encoding": "identity", "if-none-match": "*"}
        )
        if probe.status == 404:
            self.spared += 1
            return OriginAnswer(404, NOT_FOUND_HEADERS, NO_SUCH_EVENT)
        return await self.writer.get(path_and_query, headers)
