"""A request for an event this writer does not serve goes to the writer that holds the event's
lease, once, over a keep-alive connection (tessera/http1.py `Pool`).

Several writers sit behind one load balancer and only an event's lease holder may write it
(global_writer/ownership.py), so about (N-1)/N of the requests for an event reach a writer that
cannot serve them. The receiving writer reads the lease (cached for `writer_owner_cache_s`), takes
the URL its holder advertises there, and relays the request and its answer byte for byte. Edges
and clients keep one writer URL; nothing outside the writers knows who owns what.

No request is forwarded twice: a forwarded request carries `Tessera-Forwarded-By`, and a writer
serves such a request itself, or answers the 503 with Retry-After that a non-owner answers; the
client retries with the same Idempotency-Key and finds the new owner. A request is served here
when this writer holds the lease, when nobody holds it (the owner died: this writer adopts the
event if it can, as its adoption loop would a little later), and for events of another region.
The Idempotency-Key, the token, the edges' credential (`X-Edge-Credential`, checked here before
forwarding and again by the owner) and the request id (`X-Request-Id`, `traceparent`) go with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Final

from global_writer import errors
from global_writer.metrics import ForwardingMetrics
from global_writer.ownership import OwnedEvents, owner_url
from global_writer.settings import Settings
from tessera import contracts, limits
from tessera.http1 import Header, HttpError, Pool
from tessera.requests import current_request_id
from tessera.web import asgi_error

log = logging.getLogger("global_writer.forwarding")

FORWARDED_HEADER: Final = b"tessera-forwarded-by"
EVENTS_PREFIX: Final = "/v1/events/"
FORWARDED_TEMPLATE: Final = "/v1/events/{event_id}/* (forwarded)"
# What the owner needs of the request; everything else (Host, Connection, Content-Length, the
# incoming X-Request-Id, which is replaced by the id this request runs under) is this hop's.
PASSED_REQUEST_HEADERS: Final = frozenset(
    {
        b"authorization",
        b"idempotency-key",
        b"content-type",
        b"accept",
        b"accept-encoding",
        b"traceparent",
        b"tracestate",
        b"x-forwarded-for",
        # The edges' credential: the owner checks it too (global_writer/fastpath.py).
        contracts.HEADER_EDGE_CREDENTIAL.lower().encode(),
    }
)
# Hop-by-hop, or added again by this writer's server and access log.
DROPPED_ANSWER_HEADERS: Final = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"date",
        b"server",
        b"x-request-id",
    }
)


class Forwarding:
    def __init__(self, settings: Settings, events: OwnedEvents, metrics: ForwardingMetrics) -> None:
        self.region = settings.region
        self.forwarded = metrics.forwarded
        self.me = settings.writer_id.encode("latin-1")
        self.events = events
        # Event → (the owner's URL, when to read the lease again).
        self.owners: dict[uuid.UUID, tuple[str, float]] = {}
        self.pools: dict[str, Pool] = {}
        self.closing: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        pools, self.pools = self.pools, {}
        for pool in pools.values():
            await pool.close()

    async def maybe_forward(self, scope: dict[str, Any], receive: Any, send: Any) -> bool:
        """Forward the request if another writer serves its event: True once it was answered
        here (the owner's answer, or a 503), False to serve it locally."""
        event_id = event_of(scope["path"])
        if event_id is None or self.served_here(event_id, scope):
            return False
        try:
            url = await self.owner_of(event_id)
        except Exception:
            # The lease could not be read (the database is down): served here, which answers
            # as a writer without the event does.
            log.warning("could not read the lease of event %s", event_id, exc_info=True)
            return False
        if url is None:
            return False
        scope["path_template"] = FORWARDED_TEMPLATE  # for the access log (tessera/requests.py)
        try:
            body = await read_body(receive)
        except errors.WriterError as error:
            await asgi_error(send, error)
            return True
        await self.relay(scope, send, event_id, url, body)
        return True

    def served_here(self, event_id: uuid.UUID, scope: dict[str, Any]) -> bool:
        handle = self.events.handles.get(event_id)
        if handle is not None and handle.runtime.owner:
            return True  # the common case on the owner: one dict lookup
        # Forwarded once already: served here, which is a 503 with Retry-After if not the owner.
        return any(name == FORWARDED_HEADER for name, _ in scope["headers"])

    async def owner_of(self, event_id: uuid.UUID) -> str | None:
        """The URL of the writer serving the event, or None to serve it here."""
        cached = self.owners.get(event_id)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        lease = await self.events.lease(event_id)
        if lease is None or lease.home_region != self.region:
            return None  # no such event (404 here), or another region's (503 naming it)
        if lease.owner is None:
            # Nobody serves it (its owner died): take it now rather than at the next round of
            # the adoption loop. Failing that, the request gets the non-owner's 503.
            try:
                await self.events.adopt(event_id)
            except Exception:
                log.warning("could not adopt event %s on demand", event_id, exc_info=True)
            return None
        url = owner_url(lease.owner)
        if url is None or lease.owner == self.events.owner:
            return None
        if len(self.owners) >= limits.writer_owner_cache_events_max:
            self.owners.clear()  # each entry is worth a second at most: cheaply read again
        self.owners[event_id] = (url, now + limits.writer_owner_cache_s)
        return url

    async def relay(
        self, scope: dict[str, Any], send: Any, event_id: uuid.UUID, url: str, body: bytes
    ) -> None:
        headers: list[Header] = [(n, v) for n, v in scope["headers"] if n in PASSED_REQUEST_HEADERS]
        headers.append((b"x-request-id", current_request_id().encode()))
        headers.append((FORWARDED_HEADER, self.me))
        target = scope.get("raw_path") or scope["path"].encode()
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        try:
            answer = await self.pool(url).request(scope["method"].encode(), target, headers, body)
        except HttpError as error:
            self.owners.pop(event_id, None)
            log.warning("forward of event %s to %s failed: %r", event_id, url, error)
            self.forwarded.labels("failed").inc()
            message = "the event's writer did not answer; retry with the same Idempotency-Key"
            await asgi_error(send, errors.Unavailable(message, headers={"Retry-After": "1"}))
            return
        self.forwarded.labels("answered").inc()
        if answer.status == 503:
            self.owners.pop(event_id, None)  # it may have lost the lease: read it again
        kept = [(n, v) for n, v in answer.headers if n not in DROPPED_ANSWER_HEADERS]
        await send({"type": "http.response.start", "status": answer.status, "headers": kept})
        await send({"type": "http.response.body", "body": answer.body})

    def pool(self, url: str) -> Pool:
        pool = self.pools.get(url)
        if pool is not None:
            return pool
        if len(self.pools) >= limits.writer_forward_pools_max:
            # The oldest owner is the likeliest gone (writers come and go with deploys); its
            # idle connections close with its pool, busy ones as they finish.
            closing = asyncio.get_running_loop().create_task(
                self.pools.pop(next(iter(self.pools))).close()
            )
            self.closing.add(closing)
            closing.add_done_callback(self.closing.discard)
        # A request on a connection the owner had closed is sent again: nothing of it ran,
        # and every forwarded write carries an Idempotency-Key or is a release.
        pool = Pool(
            url,
            connections_max=limits.writer_forward_connections_max,
            timeout_s=limits.writer_forward_timeout_s,
            connect_timeout_s=limits.writer_forward_connect_timeout_s,
            queue_wait_s_max=limits.writer_forward_queue_wait_s_max,
            resend_stale=True,
        )
        self.pools[url] = pool
        return pool


def event_of(path: str) -> uuid.UUID | None:
    """The event a `/v1/events/{id}[/...]` path names, else None (a malformed id: None, the
    local 404)."""
    if not path.startswith(EVENTS_PREFIX):
        return None
    value = path[len(EVENTS_PREFIX) :].split("/", 1)[0]
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def read_body(receive: Any) -> bytes:
    """The whole body, as the owner will read it; 413 past the fan body cap (the owner would
    refuse it too, and this hop need not carry it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.InvalidRequest("the client went away before sending its body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limits.fan_request_body_bytes_max:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > limits.fan_request_body_bytes_max:
        raise errors.PayloadTooLarge(f"body over {limits.fan_request_body_bytes_max} bytes")
    return b"".join(chunks)
