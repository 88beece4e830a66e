"""The NATS topology Terraform deploys, run for real: two regions' servers started from the
configuration the nats_regions module writes for every node (tessera/resources/nats/server:
region.json and permissions.json with the node's own values; byte for byte what Terraform's
server_config module writes for the same values), with mutual TLS on the leaf connection and the
production users and permissions. A message the writer publishes in the hub reaches the other
region's mirror across the leaf connection and is read there the way a read node reads it, as
`reader`, who may not publish the feed."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from terraform_support import terraform_configs

from tessera.jetstream import ensure_jetstream, load_definitions
from tessera_ops.cli import main as cli
from tessera_ops.servers import (
    NatsCluster,
    NatsDomainServer,
    NatsServerSettings,
    NatsTls,
    nats_server_config,
    render_nats_config,
    start_nats_hub,
    start_nats_region,
)

# The production domains are the region names (terraform/modules/nats_regions).
HUB_DOMAIN = "us-east-1"
REGION_DOMAIN = "eu-west-1"
DELIVERED_WITHIN_S = 5.0


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary, "openssl is needed to issue the test certificates"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> NatsTls:
    """A CA and one certificate for 127.0.0.1 with server and client use, as the module issues
    per node (tls_locally_signed_cert)."""
    folder = tmp_path_factory.mktemp("tls")
    curve = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _openssl(
        "req", "-x509", *curve, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=tessera-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", *curve, "-keyout", "server-key.pem", "-out", "server.csr", "-subj", "/CN=localhost",
        cwd=folder,
    )  # fmt: skip
    (folder / "ext.cnf").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
        "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf",
        cwd=folder,
    )  # fmt: skip
    return NatsTls(
        cert_file=folder / "server.pem",
        key_file=folder / "server-key.pem",
        ca_file=folder / "ca.pem",
    )


@pytest.fixture
def regions(
    tmp_path: Path, certificates: NatsTls
) -> Iterator[tuple[NatsDomainServer, NatsDomainServer]]:
    hub = start_nats_hub(tmp_path / "hub", domain=HUB_DOMAIN, tls=certificates)
    try:
        asyncio.run(_apply_hub_definitions(hub.url_for("writer")))
        region = start_nats_region(
            tmp_path / "region", domain=REGION_DOMAIN, hub=hub, tls=certificates
        )
        try:
            yield hub, region
        finally:
            region.stop()
    finally:
        hub.stop()


async def _apply_hub_definitions(url: str) -> None:
    async with connected(url) as nc:
        await ensure_jetstream(nc.jetstream(), load_definitions())


@asynccontextmanager
async def connected(url: str, errors: list[Exception] | None = None) -> AsyncIterator[Client]:
    async def on_error(error: Exception) -> None:
        if errors is not None:
            errors.append(error)

    nc = Client()
    await nc.connect(url, connect_timeout=5, allow_reconnect=False, error_cb=on_error)
    try:
        yield nc
    finally:
        await nc.close()


def test_mirror_carries_a_message_across_the_tls_leaf_connection(
    regions: tuple[NatsDomainServer, NatsDomainServer],
) -> None:
    hub, region = regions
    # What the regional service's init container runs (terraform/envs/*/main.tf), as admin.
    applied = cli(
        [
            "jetstream", "apply", "--regional", "--hub-domain", hub.domain,
            "--nats-url", region.url_for("admin"), "--wait-s", "10",
        ]
    )  # fmt: skip
    assert applied == 0
    assert _leaf_uses_tls(hub)
    asyncio.run(_publish_in_hub_read_in_region(hub, region))


def _leaf_uses_tls(hub: NatsDomainServer) -> bool:
    """The region is linked, and the hub's leaf port demands TLS (its INFO says so before any
    byte of the protocol is exchanged in clear)."""
    assert hub.leafnode_url is not None
    port = urlsplit(hub.leafnode_url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        info = sock.recv(4096).decode()
    assert info.startswith("INFO ")
    return hub.leaf_connections() == 1 and json.loads(info[5:]).get("tls_required") is True


async def _publish_in_hub_read_in_region(hub: NatsDomainServer, region: NatsDomainServer) -> None:
    async with connected(hub.url_for("writer")) as nc:
        writer = nc.jetstream()
        ack = await writer.publish(
            "seats.E.S", b"delta 1", headers={"Nats-Msg-Id": "E.S.1"}, stream="SEATS"
        )
        await (await writer.key_value("seatmap")).put("E.S", b"snapshot v1")
    # The read node's way (regional/feed.py): a named ephemeral pull consumer on the mirror,
    # from a start sequence, no acks; snapshots by last message per subject.
    async with connected(region.url_for("reader")) as nc:
        reader = nc.jetstream()
        info = await reader.stream_info("SEATS")
        assert info.mirror is not None and info.mirror.name == "SEATS"
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=1,
            ack_policy=AckPolicy.NONE,
            inactive_threshold=30,
        )
        subscription = await reader.pull_subscribe(">", stream="SEATS", config=config)
        (message,) = await subscription.fetch(1, timeout=DELIVERED_WITHIN_S)
        assert message.data == b"delta 1"
        assert message.metadata.sequence.stream == ack.seq
        assert message.headers is not None and message.headers["Nats-Msg-Id"] == "E.S.1"
        assert (await subscription.consumer_info()).num_pending == 0
        kv_subscription = await reader.pull_subscribe(
            "$KV.>", stream="KV_seatmap", config=ConsumerConfig(ack_policy=AckPolicy.NONE)
        )
        (snapshot,) = await kv_subscription.fetch(1, timeout=DELIVERED_WITHIN_S)
        assert snapshot.data == b"snapshot v1"
        last = await reader.get_last_msg("KV_seatmap", "$KV.seatmap.E.S")
        assert last.data == b"snapshot v1"


def test_readers_and_admins_cannot_publish_the_feed(
    regions: tuple[NatsDomainServer, NatsDomainServer],
) -> None:
    asyncio.run(_refusals(*regions))


async def _refusals(hub: NatsDomainServer, region: NatsDomainServer) -> None:
    for server, user in ((hub, "reader"), (region, "reader"), (region, "admin"), (hub, "notifier")):
        errors: list[Exception] = []
        async with connected(server.url_for(user), errors) as nc:
            await nc.publish("seats.E.S", b"forged")
            await nc.flush()
            await asyncio.sleep(0.2)
        assert any("permissions violation" in str(e) for e in errors), (server.name, user)
    # nor create a stream: the request is dropped, so it times out
    async with connected(region.url_for("reader")) as nc:
        with pytest.raises((NatsError, TimeoutError)):
            await nc.jetstream(timeout=1).add_stream(name="FORGED", subjects=["forged.>"])
    # and nobody connects without credentials
    plain = Client()
    try:
        with pytest.raises(NatsError):
            await plain.connect(
                f"nats://127.0.0.1:{region.port}", connect_timeout=2, allow_reconnect=False
            )
    finally:
        with contextlib.suppress(NatsError):
            await plain.close()
    async with connected(hub.url_for("writer")) as nc:
        assert (await nc.jetstream().stream_info("SEATS")).state.messages == 0


# --- what the servers run is what Terraform writes ---


def test_the_servers_run_what_terraform_writes(
    regions: tuple[NatsDomainServer, NatsDomainServer], tmp_path: Path
) -> None:
    """Each server's configuration file is what production's module writes for its values (its
    `settings`: local addresses and paths, TLS, no cluster)."""
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: Terraform's rendering is not compared")
    hub, region = regions
    running = {"hub": hub, "region": region}
    values = {name: dataclasses.asdict(s.settings) for name, s in running.items()}
    written = terraform_configs(binary, values, tmp_path / "terraform")
    for name, server in running.items():
        assert server.settings.tls is not None and server.settings.cluster is None
        assert server.config_path.read_text() == written[name], name


# --- the local configuration is the production one, modulo addresses, paths, TLS, cluster ---


def _document(text: str) -> dict[str, Any]:
    """A configuration file read back (its bare environment references quoted again)."""
    document: dict[str, Any] = json.loads(re.sub(r"(\$TESSERA_NATS_[A-Z_]+)", r'"\1"', text))
    return document


def _normalised(document: dict[str, Any]) -> dict[str, Any]:
    """Without what differs by design: addresses, names, paths, store limits, TLS, cluster."""
    document = {k: v for k, v in document.items() if k != "cluster"}
    for key in ("server_name", "listen", "http"):
        document[key] = "<value>"
    document["jetstream"] = document["jetstream"] | dict.fromkeys(
        ("store_dir", "max_file_store", "max_memory_store"), "<value>"
    )
    leafnodes = {k: v for k, v in document["leafnodes"].items() if k != "tls"}
    if "listen" in leafnodes:
        leafnodes["listen"] = "<address>"
    if "remotes" in leafnodes:
        leafnodes["remotes"] = [
            {k: v for k, v in r.items() if k != "tls"} for r in leafnodes["remotes"]
        ]
    return document | {"leafnodes": leafnodes}


@pytest.mark.parametrize("role", ["hub", "region"])
def test_the_local_launcher_configures_what_production_configures(
    regions: tuple[NatsDomainServer, NatsDomainServer], role: str
) -> None:
    hub, region = regions
    server = hub if role == "hub" else region
    production = nats_server_config(
        NatsServerSettings(
            server_name=f"{server.domain}-nats-0",
            client_listen="0.0.0.0:4222",
            monitor_listen="0.0.0.0:8222",
            store_dir="/var/lib/nats/jetstream",
            domain=server.domain,
            hub=role == "hub",
            max_file_store_bytes=193273528320,
            max_memory_store_bytes=1073741824,
            leaf_listen="0.0.0.0:7422" if role == "hub" else None,
            cluster=NatsCluster(
                name=f"tessera-prod-{server.domain}",
                listen="0.0.0.0:6222",
                routes=tuple(f"nats-route://nats-{i}.{server.domain}.x:6222" for i in range(3)),
            ),
            tls=NatsTls(
                cert_file=Path("/etc/nats/tls/server.pem"),
                key_file=Path("/etc/nats/tls/server-key.pem"),
                ca_file=Path("/etc/nats/tls/ca.pem"),
            ),
        )
    )
    local = _document(server.config_path.read_text())
    assert "cluster" in production and "cluster" not in local
    assert local == _document(render_nats_config(nats_server_config(server.settings)))
    assert _normalised(local) == _normalised(production)
