"""The read node's streams (issue 15, item 3): the snapshot a connecting client gets is encoded
once per version vector, and the open-stream count is exact however often a client is
removed."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import msgspec
from writer_support import ROOM

import tessera_core as tc
from regional.metrics import RegionalMetrics
from regional.sse import Broadcaster, encode_snapshot, snapshot_frame
from regional.state import EventView
from tessera import contracts
from tessera.venue import VenueSpec


def view() -> EventView:
    info = contracts.EventInfo(
        event_id=uuid.uuid4(),
        name="Test night",
        onsale_at=datetime(2020, 1, 1, tzinfo=UTC),
        hold_ttl_s=600,
        per_user_limit=8,
        home_region="local",
        venue=msgspec.convert(ROOM, VenueSpec),
    )
    return EventView(info)


def first_message(broadcaster: Broadcaster, event: EventView) -> bytes:
    client = broadcaster.add(event, None)
    return client.queue.get_nowait()


def sold_out(event: EventView, position: int) -> tc.SeatMap:
    """The section with every seat gone, one version on."""
    current = event.maps[position]
    seats = event.venue.layouts[position].seat_count
    return tc.SeatMap(bytes(len(current.bitmap())), seats, current.version + 1)


def test_connecting_clients_share_one_snapshot_per_version() -> None:
    event = view()
    broadcaster = Broadcaster(RegionalMetrics())
    crowd = [first_message(broadcaster, event) for _ in range(100)]
    assert all(message is crowd[0] for message in crowd)  # the same bytes object: one encode
    assert crowd[0] == encode_snapshot(event)
    event.set_map(0, sold_out(event, 0))
    after = first_message(broadcaster, event)
    assert after is not crowd[0]
    assert after == encode_snapshot(event)
    data = json.loads(after.split(b"data: ", 1)[1])
    assert data["versions"] == event.versions() == [1, 0]
    decoded = base64.b64decode(data["seatmap"])
    assert decoded == tc.encode_event(event.maps, include_versions=True)
    assert snapshot_frame(event) is after


def test_the_client_count_is_exact_whatever_removes_a_client() -> None:
    metrics = RegionalMetrics()
    broadcaster = Broadcaster(metrics)
    events = [view(), view()]
    clients = [broadcaster.add(events[i % 2], None) for i in range(10)]
    assert broadcaster.client_count == 10
    for client in clients[:4]:
        broadcaster.remove(client)
        broadcaster.remove(client)  # the stream's end and the response's end both remove
    assert broadcaster.client_count == 6
    assert metrics.sse_clients._value.get() == 6
    for client in clients[4:]:
        broadcaster.remove(client)
    assert broadcaster.client_count == 0
    assert broadcaster.clients == {}
    assert metrics.sse_clients._value.get() == 0
