"""JetStream definitions as data: loading and checking them, and applying them to a real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy

from tessera import limits
from tessera.jetstream import (
    DEFAULT_DIRECTORY,
    Definition,
    DefinitionError,
    JetStreamSetupError,
    KvDefinition,
    StreamDefinition,
    ensure_jetstream,
    load_definitions,
)
from tessera_ops.servers import RunningServer

ROOT = Path(__file__).resolve().parents[2]

# --- the repository's definitions (no server needed) ---


def _by_name() -> tuple[StreamDefinition, KvDefinition]:
    definitions = load_definitions()
    streams = [d for d in definitions if isinstance(d, StreamDefinition)]
    buckets = [d for d in definitions if isinstance(d, KvDefinition)]
    assert [d.name for d in streams] == [
        "ORDERS",
        "ORDERS_DEADLETTER",
        "SEATS",
        "WEBHOOKS",
        "WEBHOOKS_DEADLETTER",
    ]
    assert [d.bucket for d in buckets] == ["seatmap"]
    return streams[2], buckets[0]


def test_default_directory_is_the_packaged_folder() -> None:
    assert ROOT / "tessera" / "resources" / "nats" / "jetstream" == DEFAULT_DIRECTORY
    assert load_definitions(DEFAULT_DIRECTORY) == load_definitions()


def test_seats_stream_definition() -> None:
    seats, _ = _by_name()
    assert set(seats.subjects) == {"seats.>", "orders.*"}
    assert seats.storage == "file"
    assert seats.discard == "old"
    assert seats.duplicate_window_s == 120
    assert seats.max_age_s == 7 * 86_400
    assert 0 < seats.max_msg_bytes <= limits.jetstream_msg_bytes_max


def test_seatmap_bucket_definition() -> None:
    _, seatmap = _by_name()
    assert seatmap.history == 1
    assert seatmap.storage == "file"
    assert seatmap.stream_name == "KV_seatmap"


def test_order_confirmation_streams() -> None:
    """The notifier's work queue and its dead letters: subjects apart from SEATS's."""
    streams = {d.name: d for d in load_definitions() if isinstance(d, StreamDefinition)}
    orders, dead = streams["ORDERS"], streams["ORDERS_DEADLETTER"]
    assert orders.retention == "workqueue"
    assert orders.subjects == ("orders.confirmed.*",)
    assert orders.discard == "new"  # refuse (the outbox relay retries) rather than drop
    assert dead.retention == "limits"
    assert dead.subjects == ("orders.deadletter.*",)
    assert dead.max_age_s > orders.max_age_s


def test_webhook_streams() -> None:
    """Integrators' webhooks (docs/webhooks.md): a work queue apart from every other subject."""
    streams = {d.name: d for d in load_definitions() if isinstance(d, StreamDefinition)}
    hooks, dead = streams["WEBHOOKS"], streams["WEBHOOKS_DEADLETTER"]
    assert hooks.retention == "workqueue"
    assert hooks.subjects == ("webhooks.events.*", "webhooks.replay.*")
    assert dead.retention == "limits"
    assert dead.subjects == ("webhooks.deadletter.*",)
    assert dead.max_age_s > hooks.max_age_s


def _write(folder: Path, file_name: str, document: dict[str, Any] | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file_name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def _seats_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DEFAULT_DIRECTORY / "SEATS.stream.json").read_text())
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown field `surprise`"),
        ({"kind": "queue"}, "Invalid value 'queue' - at `$.kind`"),
        ({"max_age_s": -1}, "at `$.max_age_s`"),
        ({"max_msg_bytes": limits.jetstream_msg_bytes_max + 1}, "at `$.max_msg_bytes`"),
        ({"subjects": []}, "at `$.subjects`"),
        ({"subjects": ["seats. >"]}, "at `$.subjects[0]`"),
        ({"subjects": ["seats.>", "seats.>"]}, "subjects must not repeat"),
        ({"storage": "disk"}, "at `$.storage`"),
        ({"duplicate_window_s": 3_600, "max_age_s": 60}, "duplicate_window_s must not exceed"),
        ({"name": "SE.ATS"}, "at `$.name`"),
    ],
)
def test_malformed_definition_is_a_clear_error(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = _write(tmp_path, "SEATS.stream.json", {**_seats_document(), **change})
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_field_and_bad_json_name_the_file(tmp_path: Path) -> None:
    document = _seats_document()
    del document["max_age_s"]
    _write(tmp_path / "a", "SEATS.stream.json", document)
    with pytest.raises(
        DefinitionError, match=r"SEATS\.stream\.json: Object missing required field `max_age_s`"
    ):
        load_definitions(tmp_path / "a")
    _write(tmp_path / "b", "SEATS.stream.json", '{"kind": "stream",')
    with pytest.raises(DefinitionError, match=r"SEATS\.stream\.json: .*(truncated|malformed)"):
        load_definitions(tmp_path / "b")


def test_file_name_must_match_the_definition(tmp_path: Path) -> None:
    _write(tmp_path, "seats.stream.json", _seats_document())
    with pytest.raises(DefinitionError, match=r"must be in SEATS\.stream\.json"):
        load_definitions(tmp_path)


def test_oversized_file_and_missing_folders_are_clear_errors(tmp_path: Path) -> None:
    _write(
        tmp_path / "big",
        "SEATS.stream.json",
        " " * (limits.jetstream_definition_file_bytes_max + 1),
    )
    with pytest.raises(DefinitionError, match="more than"):
        load_definitions(tmp_path / "big")
    with pytest.raises(DefinitionError, match="not found"):
        load_definitions(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DefinitionError, match="no JetStream definitions"):
        load_definitions(tmp_path / "empty")


# --- against a real server ---


def _run(url: str, body: Callable[[JetStreamContext], Awaitable[None]]) -> None:
    async def main() -> None:
        nc = Client()
        await nc.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            await body(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(main())


def test_ensure_twice_is_idempotent(fresh_nats: RunningServer) -> None:
    definitions = load_definitions()

    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, definitions)
        seats = await js.stream_info("SEATS")
        kv = await js.stream_info("KV_seatmap")
        await js.publish("seats.e1.s1", b"delta", headers={"Nats-Msg-Id": "e1.s1.1"})
        await ensure_jetstream(js, definitions)
        again_seats = await js.stream_info("SEATS")
        again_kv = await js.stream_info("KV_seatmap")
        assert again_seats.config == seats.config
        assert again_kv.config == kv.config
        assert again_seats.created == seats.created  # not re-created
        assert again_seats.state.messages == 1  # and not purged
        assert seats.config.duplicate_window == 120
        assert seats.config.max_age == 7 * 86_400
        assert kv.config.max_msgs_per_subject == 1

    _run(fresh_nats.url, body)


def test_ensure_updates_changed_settings(fresh_nats: RunningServer) -> None:
    seats, seatmap = _by_name()
    changed: list[Definition] = [
        msgspec.structs.replace(seats, max_msg_bytes=4096, duplicate_window_s=30),
        msgspec.structs.replace(seatmap, history=5, max_value_bytes=2048),
    ]

    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, [seats, seatmap])
        await ensure_jetstream(js, changed)
        stream = (await js.stream_info("SEATS")).config
        assert (stream.max_msg_size, stream.duplicate_window) == (4096, 30)
        bucket = (await js.stream_info("KV_seatmap")).config
        assert (bucket.max_msgs_per_subject, bucket.max_msg_size) == (5, 2048)
        await ensure_jetstream(js, [seats, seatmap])  # and back
        stream = (await js.stream_info("SEATS")).config
        assert (stream.max_msg_size, stream.duplicate_window) == (seats.max_msg_bytes, 120)

    _run(fresh_nats.url, body)


def test_storage_change_is_refused_clearly(fresh_nats: RunningServer) -> None:
    seats, _ = _by_name()

    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, [msgspec.structs.replace(seats, storage="memory")])
        with pytest.raises(JetStreamSetupError, match="exists with memory storage"):
            await ensure_jetstream(js, [seats])

    _run(fresh_nats.url, body)


def test_duplicate_msg_id_within_the_window_is_dropped(fresh_nats: RunningServer) -> None:
    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, load_definitions())
        headers = {"Nats-Msg-Id": "e1.s7.42"}
        first = await js.publish("seats.e1.s7", b"delta v42", headers=headers)
        second = await js.publish("seats.e1.s7", b"delta v42", headers=headers)
        assert not first.duplicate
        assert second.duplicate is True
        assert second.seq == first.seq
        order = await js.publish("orders.e1", b"order", headers={"Nats-Msg-Id": "order-1"})
        assert not order.duplicate
        info = await js.stream_info("SEATS")
        assert info.state.messages == 2

    _run(fresh_nats.url, body)


def test_kv_put_and_get_bytes(fresh_nats: RunningServer) -> None:
    snapshot = bytes(range(256)) * 64  # 16 KiB of every byte value

    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, load_definitions())
        kv = await js.key_value("seatmap")
        await kv.put("e1.s1", b"old")
        revision = await kv.put("e1.s1", snapshot)
        entry = await kv.get("e1.s1")
        assert entry.value == snapshot
        assert entry.revision == revision
        # history 1: only the latest snapshot is kept, readable by last message per subject
        last = await js.get_last_msg("KV_seatmap", "$KV.seatmap.e1.s1")
        assert last.data == snapshot
        assert (await js.stream_info("KV_seatmap")).state.messages == 1

    _run(fresh_nats.url, body)


def test_order_confirmations_go_to_the_work_queue_not_the_feed(fresh_nats: RunningServer) -> None:
    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, load_definitions())
        event = "0b4d5e4c-8a9b-4a52-8a1e-3f0e1c2d3b4a"
        await js.publish(f"orders.{event}", b"order event")
        confirmed = await js.publish(f"orders.confirmed.{event}", b"confirmation")
        dead = await js.publish(f"orders.deadletter.{event}", b"dead letter")
        assert (confirmed.stream, dead.stream) == ("ORDERS", "ORDERS_DEADLETTER")
        assert (await js.stream_info("SEATS")).state.messages == 1
        assert (await js.stream_info("ORDERS")).config.retention == RetentionPolicy.WORK_QUEUE

    _run(fresh_nats.url, body)


def test_ensure_narrows_an_old_seats_stream_before_creating_orders(
    fresh_nats: RunningServer,
) -> None:
    """A server set up before ORDERS existed has SEATS on `orders.>`, which overlaps
    `orders.confirmed.*`: ensure updates SEATS first, then creates ORDERS."""
    seats, seatmap = _by_name()
    old_seats = msgspec.structs.replace(seats, subjects=("seats.>", "orders.>"))

    async def body(js: JetStreamContext) -> None:
        await ensure_jetstream(js, [old_seats, seatmap])
        await js.publish("orders.e1", b"kept")
        await ensure_jetstream(js, load_definitions())
        info = await js.stream_info("SEATS")
        assert info.config.subjects == ["seats.>", "orders.*"]
        assert info.state.messages == 1
        assert (await js.stream_info("ORDERS")).config.subjects == ["orders.confirmed.*"]

    _run(fresh_nats.url, body)
