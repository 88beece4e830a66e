"""Multi-region NATS (docs/architecture.md §7.1): a hub JetStream domain and a regional domain joined by a
leaf-node connection, the region mirroring the hub's `SEATS` stream and `seatmap` bucket.

The servers run the production configuration (`tessera_ops.servers.nats_server_config`, from the
package data tessera/resources/nats/server: users and permissions included); the mirrors come from
`tessera/resources/nats/jetstream/regional/`. Measured on loopback by `test_latency_hub_to_region`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import pytest
from link_proxy import LinkProxy
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from tessera import limits
from tessera.jetstream import (
    DEFAULT_DIRECTORY,
    REGIONAL_DIRECTORY,
    DefinitionError,
    JetStreamSetupError,
    KvDefinition,
    MirrorDefinition,
    StreamDefinition,
    ensure_jetstream,
    external_api_prefix,
    load_definitions,
    load_regional_definitions,
    wait_for_mirrors,
)
from tessera_ops import servers
from tessera_ops.servers import (
    NatsCluster,
    NatsDomainServer,
    NatsServerSettings,
    nats_server_config,
    render_nats_config,
    start_nats_region,
)

# How long a message published in the hub may take to be readable in the region (the brief's
# bound; measured well under 10 ms on loopback).
VISIBLE_WITHIN_S = 1.0
# Catching up after a region restart or a cut link (measured: a few hundred ms).
CATCH_UP_WITHIN_S = 10.0
# After the hub itself restarts, the region's mirror notices its lost source consumer only at its
# next stall check (every 10 s); a consumer request sent while the hub was unreachable is waited
# on for 30 s, then retried after a backoff of 10 s per failure (nats-server 2.15.1: measured 10 s
# and 31 s).
HUB_RESTART_CATCH_UP_WITHIN_S = 90.0


# --- the definitions (no server needed) ---


def _mirrors() -> dict[str, MirrorDefinition]:
    mirrors = {d.name: d for d in load_regional_definitions() if isinstance(d, MirrorDefinition)}
    assert len(mirrors) == len(load_regional_definitions())
    return mirrors


def test_regional_definitions_are_mirrors_of_the_hub() -> None:
    assert DEFAULT_DIRECTORY / "regional" == REGIONAL_DIRECTORY
    assert load_definitions(REGIONAL_DIRECTORY) == load_regional_definitions()
    mirrors = _mirrors()
    assert set(mirrors) == {"SEATS", "KV_seatmap"}
    for mirror in mirrors.values():
        assert mirror.source == mirror.name  # readers use the hub's names unchanged
        assert mirror.source_domain == "hub"
        assert mirror.api_prefix == "$JS.hub.API" == external_api_prefix("hub")
    snapshots = mirrors["KV_seatmap"]
    assert snapshots.max_msgs_per_subject == 1  # the latest snapshot per key, as the bucket
    assert snapshots.direct
    # the hub's folder does not pick up the regional one
    assert not any(isinstance(d, MirrorDefinition) for d in load_definitions())


def test_mirrors_keep_what_the_hub_keeps() -> None:
    """A mirror that refused a message its source accepted would stall for good."""
    hub = {d.stream_name: d for d in load_definitions()}
    seats, bucket = hub["SEATS"], hub["KV_seatmap"]
    assert isinstance(seats, StreamDefinition)
    assert isinstance(bucket, KvDefinition)
    mirrors = _mirrors()
    assert mirrors["SEATS"].max_msg_bytes >= seats.max_msg_bytes
    assert mirrors["SEATS"].max_age_s == seats.max_age_s
    assert mirrors["KV_seatmap"].max_msg_bytes >= bucket.max_value_bytes
    assert mirrors["KV_seatmap"].max_age_s == bucket.ttl_s
    assert mirrors["KV_seatmap"].max_msgs_per_subject == bucket.history
    for mirror in mirrors.values():
        assert mirror.max_bytes == -1


def test_hub_domain_and_replicas_can_be_overridden() -> None:
    renamed = load_regional_definitions(hub_domain="writer-us")
    assert {d.api_prefix for d in renamed if isinstance(d, MirrorDefinition)} == {
        "$JS.writer-us.API"
    }
    with pytest.raises(DefinitionError, match=r"hub_domain 'a\.b'"):
        load_regional_definitions(hub_domain="a.b")
    clustered = load_regional_definitions(replicas=3)
    assert {d.replicas for d in clustered} == {3}
    assert [msgspec.structs.replace(d, replicas=1) for d in clustered] == (
        load_regional_definitions()
    )
    with pytest.raises(DefinitionError, match="replicas 6"):
        load_regional_definitions(replicas=6)


def _mirror_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((REGIONAL_DIRECTORY / "SEATS.mirror.json").read_text())
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"surprise": 1}, "unknown field `surprise`"),
        ({"subjects": ["seats.>"]}, "unknown field `subjects`"),  # a mirror has none of its own
        ({"source": "SE.ATS"}, "at `$.source`"),
        ({"source_domain": "hub.eu"}, "at `$.source_domain`"),
        ({"source_domain": ""}, "at `$.source_domain`"),
        ({"max_msgs_per_subject": 0}, "max_msgs_per_subject must be -1 (no limit) or at least 1"),
        (
            {"max_msgs_per_subject": limits.jetstream_kv_history_max + 1},
            "at `$.max_msgs_per_subject`",
        ),
        ({"mirror_direct": True}, "mirror_direct needs direct: true"),
        ({"max_msg_bytes": 0}, "at `$.max_msg_bytes`"),
        ({"storage": "disk"}, "at `$.storage`"),
        ({"replicas": 7}, "at `$.replicas`"),
    ],
)
def test_malformed_mirror_definition_is_a_clear_error(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = tmp_path / "SEATS.mirror.json"
    path.write_text(json.dumps({**_mirror_document(), **change}))
    with pytest.raises(DefinitionError) as info:
        load_definitions(tmp_path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_mirror_required_fields_and_file_name(tmp_path: Path) -> None:
    for field in ("source", "source_domain", "storage", "max_age_s", "max_msg_bytes"):
        document = _mirror_document()
        del document[field]
        folder = tmp_path / field
        folder.mkdir()
        (folder / "SEATS.mirror.json").write_text(json.dumps(document))
        with pytest.raises(DefinitionError, match=f"missing required field `{field}`"):
            load_definitions(folder)
    (tmp_path / "named").mkdir()
    (tmp_path / "named" / "SEATS.stream.json").write_text(json.dumps(_mirror_document()))
    with pytest.raises(DefinitionError, match=r"must be in SEATS\.mirror\.json"):
        load_definitions(tmp_path / "named")
    # an explicit null: a mirror of a stream of the same domain (no API prefix)
    local = msgspec.json.decode(
        json.dumps({**_mirror_document(), "source_domain": None}), type=MirrorDefinition
    )
    assert local.api_prefix is None


# --- the server configuration ---

_ENV_REFERENCE = re.compile(r"\$(TESSERA_[A-Z0-9_]+)")
# The package's documentation of the folder (tessera/resources/nats/README.md).
_README = servers.NATS_SERVER_CONFIG_DIRECTORY.parent / "README.md"


def _settings(*, hub: bool, tmp_path: Path) -> NatsServerSettings:
    return NatsServerSettings(
        server_name="n-0",
        client_listen="127.0.0.1:4222",
        monitor_listen="127.0.0.1:8222",
        store_dir=str(tmp_path / "js"),
        domain="hub" if hub else "eu",
        hub=hub,
        max_file_store_bytes=1 << 30,
        max_memory_store_bytes=1 << 28,
        leaf_listen="127.0.0.1:7422" if hub else None,
        cluster=NatsCluster(
            name="c", listen="127.0.0.1:6222", routes=("nats-route://127.0.0.1:6222",)
        ),
    )


def test_settings_and_secrets_are_documented() -> None:
    readme = _README.read_text()
    for field in dataclasses.fields(NatsServerSettings):
        assert f"`{field.name}`" in readme, f"{field.name} is not documented"
    shape = servers.load_nats_shape()
    references = msgspec.to_builtins(shape.environment)
    assert {r[1:] for r in references.values()} == {
        "TESSERA_NATS_WRITER_PASSWORD",
        "TESSERA_NATS_NOTIFIER_PASSWORD",
        "TESSERA_NATS_READER_PASSWORD",
        "TESSERA_NATS_ADMIN_PASSWORD",
        "TESSERA_NATS_LEAF_PASSWORD",
        "TESSERA_NATS_HUB_LEAF_URLS",
    }
    for reference in references.values():
        assert f"`{reference}`" in readme, f"{reference} is not documented"
    # every fixed part of region.json says why
    document = json.loads(servers.NATS_SERVER_SHAPE_FILE.read_text())
    assert set(document["notes"]) == set(document) - {"description", "notes"}


@pytest.mark.parametrize("hub", [True, False], ids=["hub", "region"])
def test_rendered_configuration_is_valid_and_needs_its_secrets(tmp_path: Path, hub: bool) -> None:
    """nats-server reads the JSON document, and takes the secrets from its environment only."""
    path = tmp_path / "nats.conf"
    path.write_text(render_nats_config(nats_server_config(_settings(hub=hub, tmp_path=tmp_path))))
    binary = Path(sys.executable).parent / "nats-server"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_NATS_")}
    missing = subprocess.run(
        [str(binary), "-t", "-c", str(path)], env=env, capture_output=True, text=True, check=False
    )
    assert missing.returncode != 0
    assert "can not be found" in missing.stderr + missing.stdout
    users = servers.nats_users(hub=hub)
    secrets = servers.nats_server_environment(
        {user: f"{user}-pw" for user in users},
        hub_leaf_urls=[] if hub else ["nats-leaf://leaf:pw@127.0.0.1:7422", "nats-leaf://b:7422"],
    )
    assert set(secrets) == set(_ENV_REFERENCE.findall(path.read_text()))
    valid = subprocess.run(
        [str(binary), "-t", "-c", str(path)],
        env={**env, **secrets},
        capture_output=True,
        text=True,
        check=False,
    )
    assert valid.returncode == 0, valid.stderr + valid.stdout


def test_every_domain_fsyncs_every_write_and_regions_stay_read_only(tmp_path: Path) -> None:
    hub = nats_server_config(_settings(hub=True, tmp_path=tmp_path))
    region = nats_server_config(_settings(hub=False, tmp_path=tmp_path))
    assert hub["jetstream"]["sync_interval"] == "always"  # docs/architecture.md §7.1
    assert region["jetstream"]["sync_interval"] == "always"
    (remote,) = region["leafnodes"]["remotes"]
    assert remote["deny_exports"] == ["seats.>", "orders.>", "webhooks.>", "$KV.>"]
    assert remote["ignore_discovered_servers"] is True
    users = {c["jetstream"]["domain"]: c["accounts"]["TESSERA"]["users"] for c in (hub, region)}
    assert "writer" in [u["user"] for u in users["hub"]]
    # nobody in a region may publish the feed
    assert "writer" not in [u["user"] for u in users["eu"]]


# --- against a real hub and region ---


@asynccontextmanager
async def connected(url: str) -> AsyncIterator[JetStreamContext]:
    nc = Client()
    await nc.connect(url, connect_timeout=5, allow_reconnect=False)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def eventually(
    check: Callable[[], Awaitable[bool]],
    within_s: float,
    what: str,
    explain: Callable[[], Awaitable[str]] | None = None,
) -> float:
    """Poll `check` until true; the seconds it took. Fails after `within_s`."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > within_s:
            detail = f"; {await explain()}" if explain is not None else ""
            pytest.fail(f"{what}: not within {within_s} s{detail}")
        await asyncio.sleep(0.005)


def mirrors_of(js: JetStreamContext) -> Callable[[], Awaitable[str]]:
    """For a failure message: each regional mirror's size and replication state."""

    async def explain() -> str:
        states = []
        for name in ("SEATS", "KV_seatmap"):
            info = await js.stream_info(name)
            states.append(f"{name}: {info.state.messages} messages, {info.mirror}")
        return "; ".join(states)

    return explain


async def stored(js: JetStreamContext, stream: str) -> int:
    return (await js.stream_info(stream)).state.messages


async def last_snapshot(js: JetStreamContext, key: str) -> RawStreamMsg | None:
    """What a regional reader does: the last message of `$KV.seatmap.<key>` in the mirror."""
    try:
        return await js.get_last_msg("KV_seatmap", f"$KV.seatmap.{key}")
    except NotFoundError:  # not there yet
        return None


async def publish_deltas(js: JetStreamContext, start: int, stop: int) -> None:
    for version in range(start, stop):
        ack = await js.publish(
            "seats.E.S", f"delta {version}".encode(), headers={"Nats-Msg-Id": f"E.S.{version}"}
        )
        assert not ack.duplicate


async def mirrored_payloads(js: JetStreamContext) -> list[bytes]:
    """Every message of the regional SEATS mirror, in order (an ordered consumer, as a reader)."""
    count = await stored(js, "SEATS")
    sub = await js.subscribe(">", stream="SEATS", ordered_consumer=True)
    try:
        return [(await sub.next_msg(timeout=2)).data for _ in range(count)]
    finally:
        await sub.unsubscribe()


@pytest.mark.anyio
async def test_hub_publish_is_readable_in_the_region(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    assert nats_hub.leaf_connections() == 1
    assert nats_region.is_region and not nats_hub.is_region
    async with connected(nats_hub.url) as hub, connected(nats_region.url) as region:
        received: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_message(msg: Msg) -> None:
            received.put_nowait(msg)

        # a reader consumes the local mirror (it has no subjects: name the stream)
        await region.subscribe("seats.>", stream="SEATS", ordered_consumer=True, cb=on_message)
        ack = await hub.publish("seats.E.S", b"delta 1", headers={"Nats-Msg-Id": "E.S.1"})
        kv = await hub.key_value("seatmap")
        await kv.put("E.S", b"snapshot v1")
        revision = await kv.put("E.S", b"snapshot v2")

        msg = await asyncio.wait_for(received.get(), VISIBLE_WITHIN_S)
        assert msg.data == b"delta 1"
        assert msg.subject == "seats.E.S"
        assert msg.headers is not None and msg.headers["Nats-Msg-Id"] == "E.S.1"
        assert msg.metadata.sequence.stream == ack.seq  # a mirror keeps the hub's sequences

        async def latest() -> bool:
            snapshot = await last_snapshot(region, "E.S")
            return snapshot is not None and snapshot.data == b"snapshot v2"

        await eventually(latest, VISIBLE_WITHIN_S, "the latest snapshot in the region")
        snapshot = await last_snapshot(region, "E.S")
        assert snapshot is not None and snapshot.seq == revision
        assert await stored(region, "KV_seatmap") == 1  # history 1 holds in the mirror too
        # direct gets are answered by the mirror itself
        direct = await region.get_last_msg("KV_seatmap", "$KV.seatmap.E.S", direct=True)
        assert direct.data == b"snapshot v2"
        # nats-py 2.16 accepts a mirrored bucket for reads once it keeps one message per subject
        # (key_value() only checks max_msgs_per_subject); writes have no stream to land in.
        regional_kv = await region.key_value("seatmap")
        assert (await regional_kv.get("E.S")).value == b"snapshot v2"
        info = await region.stream_info("SEATS")
        assert info.mirror is not None and info.mirror.error is None


@pytest.mark.anyio
async def test_hub_duplicate_suppression_holds_through_the_mirror(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    async with connected(nats_hub.url) as hub, connected(nats_region.url) as region:
        first = await hub.publish("seats.E.S", b"delta 7", headers={"Nats-Msg-Id": "E.S.7"})
        again = await hub.publish("seats.E.S", b"delta 7", headers={"Nats-Msg-Id": "E.S.7"})
        order = await hub.publish("orders.E", b"order 1", headers={"Nats-Msg-Id": "order-1"})
        assert again.duplicate and again.seq == first.seq
        assert order.seq == first.seq + 1

        async def both() -> bool:
            return await stored(region, "SEATS") == 2

        await eventually(both, VISIBLE_WITHIN_S, "two messages in the region")
        await asyncio.sleep(0.2)  # and no late third copy
        assert await mirrored_payloads(region) == [b"delta 7", b"order 1"]
        info = await region.stream_info("SEATS")
        assert (info.state.first_seq, info.state.last_seq) == (first.seq, order.seq)


@pytest.mark.anyio
async def test_nothing_published_in_a_region_reaches_the_hub(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    """Only the writer writes the hub's streams: no user of a region may publish their subjects
    (permissions.json), and the leaf connection would not export them anyway (deny_exports)."""
    async with connected(nats_hub.url) as hub, connected(nats_region.url) as region:
        await hub.publish("seats.E.S", b"delta 1", headers={"Nats-Msg-Id": "E.S.1"})
        refused: list[Exception] = []

        async def on_error(error: Exception) -> None:
            refused.append(error)

        for user in ("reader", "admin"):
            nc = Client()
            await nc.connect(
                nats_region.url_for(user),
                connect_timeout=5,
                allow_reconnect=False,
                error_cb=on_error,
            )
            expected = len(refused) + 3
            try:
                for subject in ("seats.E.S", "orders.E", "$KV.seatmap.E.S"):
                    await nc.publish(subject, b"from the region")
                await nc.flush()

                async def all_refused(expected: int = expected) -> bool:
                    return len(refused) >= expected

                # the server's -ERR reaches the error callback asynchronously
                await eventually(all_refused, VISIBLE_WITHIN_S, f"{user}'s publishes refused")
            finally:
                await nc.close()
        await asyncio.sleep(0.3)
        assert len(refused) == 6
        assert all("permissions violation" in str(error) for error in refused)
        assert await stored(hub, "SEATS") == 1
        assert await stored(hub, "KV_seatmap") == 0
        assert await stored(region, "SEATS") == 1


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_region_restart_keeps_its_mirror_and_resumes(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer, how: str
) -> None:
    async with connected(nats_hub.url) as hub:
        await publish_deltas(hub, 1, 11)
        async with connected(nats_region.url) as region:

            async def ten() -> bool:
                return await stored(region, "SEATS") == 10

            await eventually(ten, VISIBLE_WITHIN_S, "10 deltas in the region")
        if how == "kill":
            nats_region.kill()
        nats_region.restart()  # waits for the leaf connection again
        async with connected(nats_region.url) as region:
            assert await stored(region, "SEATS") == 10  # kept on disk
            await publish_deltas(hub, 11, 21)

            async def twenty() -> bool:
                return await stored(region, "SEATS") == 20

            took = await eventually(
                twenty, CATCH_UP_WITHIN_S, "new deltas after the restart", mirrors_of(region)
            )
            assert await mirrored_payloads(region) == [f"delta {v}".encode() for v in range(1, 21)]
    print(f"\nregion {how}+restart: new deltas visible after {took * 1000:.0f} ms")


@pytest.mark.anyio
async def test_cut_leaf_link_catches_up_with_everything_published_meanwhile(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    async with connected(nats_hub.url) as hub:
        kv = await hub.key_value("seatmap")
        await publish_deltas(hub, 1, 6)
        await kv.put("E.S", b"snapshot v5")
        async with connected(nats_region.url) as region:

            async def five() -> bool:
                return await stored(region, "SEATS") == 5

            await eventually(five, VISIBLE_WITHIN_S, "5 deltas in the region")
        nats_region.stop()  # the region is cut off
        assert nats_hub.leaf_connections() == 0
        await publish_deltas(hub, 6, 206)
        await kv.put("E.S", b"snapshot v205")
        await kv.put("E.T", b"snapshot T")
        started = time.monotonic()
        nats_region.restart()
        async with connected(nats_region.url) as region:

            async def all_of_it() -> bool:
                snapshot = await last_snapshot(region, "E.S")
                return (
                    await stored(region, "SEATS") == 205
                    and snapshot is not None
                    and snapshot.data == b"snapshot v205"
                    and await last_snapshot(region, "E.T") is not None
                )

            await eventually(
                all_of_it, CATCH_UP_WITHIN_S, "the region catching up", mirrors_of(region)
            )
            took = time.monotonic() - started
            assert await mirrored_payloads(region) == [f"delta {v}".encode() for v in range(1, 206)]
    print(f"\ncut link: 200 deltas + 2 snapshots caught up {took * 1000:.0f} ms after restart")


@pytest.mark.anyio
async def test_region_cut_off_from_the_hub_serves_its_last_state(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    async with connected(nats_hub.url) as hub:
        await publish_deltas(hub, 1, 4)
        await (await hub.key_value("seatmap")).put("E.S", b"snapshot v3")
    async with connected(nats_region.url) as region:

        async def synced() -> bool:
            return (
                await stored(region, "SEATS") == 3
                and await last_snapshot(region, "E.S") is not None
            )

        await eventually(synced, VISIBLE_WITHIN_S, "the region in sync")
    nats_hub.stop()
    nats_region.restart(wait_for_hub=False)  # a region also starts while the hub is down
    assert nats_region.leaf_connections() == 0
    async with connected(nats_region.url) as region:
        assert await mirrored_payloads(region) == [b"delta 1", b"delta 2", b"delta 3"]
        snapshot = await last_snapshot(region, "E.S")
        assert snapshot is not None and snapshot.data == b"snapshot v3"
        info = await region.stream_info("SEATS")
        assert info.mirror is not None and info.mirror.active == -1  # how a reader can tell


@pytest.mark.anyio
@pytest.mark.slow
async def test_mirror_resumes_after_the_hub_restarts(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    """The slow path: the hub's side of the mirror (its consumer) is gone after a hub restart,
    and the region's server notices only at its next stall check (every 10 s)."""
    async with connected(nats_hub.url) as hub:
        await publish_deltas(hub, 1, 4)
    nats_hub.stop()
    nats_hub.restart()
    nats_region.wait_for_leaf()
    async with connected(nats_hub.url) as hub, connected(nats_region.url) as region:
        await publish_deltas(hub, 4, 6)

        async def resumed() -> bool:
            return await stored(region, "SEATS") == 5

        took = await eventually(
            resumed, HUB_RESTART_CATCH_UP_WITHIN_S, "the mirror resuming", mirrors_of(region)
        )
        assert await mirrored_payloads(region) == [f"delta {v}".encode() for v in range(1, 6)]
    print(f"\nhub restart: the mirror resumed {took:.1f} s after the first new publish")


@pytest.mark.anyio
async def test_partitioned_leaf_link_catches_up(tmp_path: Path, nats_hub: NatsDomainServer) -> None:
    """Both servers stay up; the network between them fails for a few seconds."""
    assert nats_hub.leafnode_url is not None
    leaf = urlsplit(nats_hub.leafnode_url)
    assert leaf.port is not None
    proxy = LinkProxy(leaf.port)
    through_proxy = leaf._replace(
        netloc=f"{leaf.username}:{leaf.password}@127.0.0.1:{proxy.port}"
    ).geturl()
    region_server = await asyncio.to_thread(
        start_nats_region, tmp_path / "eu", domain="eu", hub=nats_hub, hub_url=through_proxy
    )
    try:
        async with connected(nats_hub.url) as hub, connected(region_server.url) as region:
            await ensure_jetstream(region, load_regional_definitions())
            # both mirrors in contact before the cut (see wait_for_mirrors)
            await wait_for_mirrors(region, load_regional_definitions(), timeout_s=10)
            kv = await hub.key_value("seatmap")
            await publish_deltas(hub, 1, 6)

            async def five() -> bool:
                return await stored(region, "SEATS") == 5

            await eventually(five, VISIBLE_WITHIN_S, "5 deltas in the region")
            proxy.cut()

            async def cut_off() -> bool:
                return nats_hub.leaf_connections() == 0

            await eventually(cut_off, CATCH_UP_WITHIN_S, "the link down")
            await publish_deltas(hub, 6, 106)
            await kv.put("E.S", b"snapshot v105")
            await asyncio.sleep(2)
            assert await stored(region, "SEATS") == 5  # it really was cut off
            proxy.heal()
            started = time.monotonic()

            async def caught_up() -> bool:
                snapshot = await last_snapshot(region, "E.S")
                return (
                    await stored(region, "SEATS") == 105
                    and snapshot is not None
                    and snapshot.data == b"snapshot v105"
                )

            took = await eventually(
                caught_up, CATCH_UP_WITHIN_S, "the region catching up", explain=mirrors_of(region)
            )
            assert await mirrored_payloads(region) == [f"delta {v}".encode() for v in range(1, 106)]
        print(f"\n2-s partition: caught up {took * 1000:.0f} ms after the link healed")
        assert time.monotonic() - started < CATCH_UP_WITHIN_S
    finally:
        region_server.stop()
        proxy.close()


@pytest.mark.anyio
async def test_ensure_jetstream_on_a_region(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    mirrors = _mirrors()
    async with connected(nats_region.url) as region:
        seats = await region.stream_info("SEATS")
        await ensure_jetstream(region, load_regional_definitions())  # idempotent
        again = await region.stream_info("SEATS")
        assert again.created == seats.created and again.config == seats.config
        assert again.config.subjects in (None, [])
        snapshots = (await region.stream_info("KV_seatmap")).config
        assert snapshots.max_msgs_per_subject == 1
        assert snapshots.allow_direct and snapshots.mirror_direct
        # settings update in place
        smaller = msgspec.structs.replace(mirrors["SEATS"], max_msg_bytes=300_000)
        await ensure_jetstream(region, [smaller])
        assert (await region.stream_info("SEATS")).config.max_msg_size == 300_000
        # what cannot change is refused clearly
        elsewhere = msgspec.structs.replace(mirrors["SEATS"], source_domain="us")
        with pytest.raises(
            JetStreamSetupError,
            match=r"exists as a mirror of SEATS via \$JS\.hub\.API, the definition says a mirror of SEATS via \$JS\.us\.API",
        ):
            await ensure_jetstream(region, [elsewhere])
        with pytest.raises(
            JetStreamSetupError, match="the definition says a stream that mirrors nothing"
        ):
            await ensure_jetstream(region, load_definitions())  # the hub's definitions
        # a mirror whose source cannot be reached is created, but never makes contact
        stray = msgspec.structs.replace(mirrors["SEATS"], name="STRAY", source_domain="nowhere")
        await ensure_jetstream(region, [stray])
        with pytest.raises(
            JetStreamSetupError, match=r"mirror STRAY has not reached SEATS via \$JS\.nowhere\.API"
        ):
            await wait_for_mirrors(region, [stray], timeout_s=0.5)
        await region.delete_stream("STRAY")
        with pytest.raises(JetStreamSetupError, match="STRAY does not exist"):
            await wait_for_mirrors(region, [stray], timeout_s=0.5)
    async with connected(nats_hub.url) as hub:
        with pytest.raises(JetStreamSetupError, match="exists as a stream that mirrors nothing"):
            await ensure_jetstream(hub, load_regional_definitions())


@pytest.mark.anyio
async def test_latency_hub_to_region(
    nats_hub: NatsDomainServer, nats_region: NatsDomainServer
) -> None:
    """Publish in the hub (`sync_interval: always`) → delivered by the region's mirror to an
    ordered consumer, one message at a time, ~200 messages of 200 bytes."""
    warmup, measured = 20, 200
    async with connected(nats_hub.url) as hub, connected(nats_region.url) as region:
        arrivals: asyncio.Queue[tuple[float, Msg]] = asyncio.Queue()

        async def on_message(msg: Msg) -> None:
            arrivals.put_nowait((time.perf_counter(), msg))

        await region.subscribe("seats.>", stream="SEATS", ordered_consumer=True, cb=on_message)
        latencies: list[float] = []
        for version in range(warmup + measured):
            sent = time.perf_counter()
            ack = await hub.publish(
                "seats.E.S", b"x" * 200, headers={"Nats-Msg-Id": f"E.S.{version}"}
            )
            arrived, msg = await asyncio.wait_for(arrivals.get(), VISIBLE_WITHIN_S)
            assert msg.metadata.sequence.stream == ack.seq
            if version >= warmup:
                latencies.append(arrived - sent)
    latencies.sort()
    p50, p99, worst = (
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.99) - 1],
        latencies[-1],
    )
    print(
        f"\nhub publish -> region delivery over {measured} messages: "
        f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, max {worst * 1e3:.2f} ms"
    )
    assert worst < VISIBLE_WITHIN_S
