"""tessera/resources/nats is the single source of the NATS topology: the Terraform module reads
exactly the package data the Python side loads (definitions, region.json, permissions.json),
builds every server's configuration from it as tessera_ops.servers does (the same values, the
same document byte for byte: applied with the terraform binary), and the permissions agree with
the stream definitions."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path
from typing import Any, Final

import msgspec
import pytest
from terraform_support import (
    ENV_NAMES,
    ENVS,
    MODULES,
    directory_blocks,
    locals_of,
    terraform_configs,
    unquote,
    variable_default,
)

from tessera import jetstream
from tessera.jetstream import KvDefinition, MirrorDefinition, StreamDefinition
from tessera_ops import servers
from tessera_ops.servers import NatsCluster, NatsServerSettings, NatsTls

NATS_MODULE: Final = MODULES / "nats_regions"
SERVER_CONFIG_MODULE: Final = NATS_MODULE / "server_config"
PACKAGE_DATA: Final = jetstream.DEFAULT_DIRECTORY.parent


def _module_path(expression: object, module: Path, local: str = "", value: Path = Path()) -> Path:
    """A path expression of a module's locals, resolved as Terraform would."""
    text = str(unquote(expression)).replace("${path.module}", str(module))
    if local:
        text = text.replace("${local." + local + "}", str(value))
    return Path(text).resolve()


def test_the_modules_read_the_package_data() -> None:
    assert servers.NATS_SERVER_CONFIG_DIRECTORY.parent == PACKAGE_DATA
    assert PACKAGE_DATA.parts[-3:] == ("tessera", "resources", "nats")
    found = locals_of(NATS_MODULE)
    nats_dir = _module_path(found["nats_dir"], NATS_MODULE)
    assert nats_dir == PACKAGE_DATA.resolve()
    permissions = re.search(r'file\("([^"]+)"\)', str(found["permissions"]))
    assert permissions
    assert _module_path(permissions.group(1), NATS_MODULE, "nats_dir", nats_dir) == (
        servers.NATS_PERMISSIONS_FILE.resolve()
    )
    # the definitions: the same folders, the same glob as load_definitions()
    assert 'fileset("${local.nats_dir}/jetstream", "*.json")' in str(found["hub_definitions"])
    regional = str(found["regional_definitions"])
    assert 'fileset("${local.nats_dir}/jetstream/regional", "*.json")' in regional
    assert (nats_dir / "jetstream") == jetstream.DEFAULT_DIRECTORY.resolve()
    assert (nats_dir / "jetstream" / "regional") == jetstream.REGIONAL_DIRECTORY.resolve()
    # the configuration: the same two files the Python renderer reads
    config = locals_of(SERVER_CONFIG_MODULE)
    resources = _module_path(config["resources"], SERVER_CONFIG_MODULE)
    assert resources == servers.NATS_SERVER_CONFIG_DIRECTORY.resolve()
    assert str(config["shape"]) == '${jsondecode(file("${local.resources}/region.json"))}'
    assert servers.NATS_SERVER_SHAPE_FILE.name == "region.json"
    assert str(config["permissions"]) == (
        '${jsondecode(file("${local.resources}/permissions.json"))}'
    )


def test_the_module_passes_server_config_exactly_the_python_settings() -> None:
    settings = {f.name for f in dataclasses.fields(NatsServerSettings)}
    variables = set(directory_blocks(SERVER_CONFIG_MODULE, "variable"))
    (call,) = directory_blocks(NATS_MODULE, "module").values()
    assert unquote(call["source"]) == "./server_config"
    assert call["for_each"] == "${local.nodes}"
    passed = {k for k in call if not k.startswith("__")} - {"source", "for_each"}
    assert passed == variables == settings
    assert str(locals_of(NATS_MODULE)["server_configs"]) == (
        "${{for key, node in module.server_config : key => node.config}}"
    )


def test_the_module_names_the_streams_the_definitions_define() -> None:
    """What the read nodes consume (TESSERA_SEATS_STREAM / TESSERA_KV_STREAM) is looked up in the
    definitions by the module; the Python side agrees on the same names."""
    hub = {d.stream_name: d for d in jetstream.load_definitions()}
    feed = [d for d in hub.values() if isinstance(d, StreamDefinition) and "seats.>" in d.subjects]
    buckets = [d for d in hub.values() if isinstance(d, KvDefinition) and d.bucket == "seatmap"]
    assert len(feed) == 1 and len(buckets) == 1
    mirrors = {
        d.source: d.name
        for d in jetstream.load_regional_definitions()
        if isinstance(d, MirrorDefinition)
    }
    assert mirrors[feed[0].name] and mirrors[buckets[0].stream_name]
    module = locals_of(NATS_MODULE)
    assert 'contains(try(d.subjects, []), "seats.>")' in str(module["feed_stream"])
    assert 'try(d.bucket, "") == "seatmap"' in str(module["snapshot_stream"])
    assert "local.mirror_of[local.feed_stream]" in str(module["streams"])


# --- the configuration: Terraform's and Python's, for the values the module passes ---


def _prod_settings(region: str, *, hub: bool, zone: str = "example.net") -> NatsServerSettings:
    """The module's values (terraform/modules/nats_regions/main.tf), built the Python way."""
    return NatsServerSettings(
        server_name=f"{region}-nats-0",
        client_listen="0.0.0.0:4222",
        monitor_listen="0.0.0.0:8222",
        store_dir="/var/lib/nats/jetstream",
        domain=region,
        hub=hub,
        max_file_store_bytes=193273528320,
        max_memory_store_bytes=1073741824,
        leaf_listen="0.0.0.0:7422" if hub else None,
        cluster=NatsCluster(
            name=f"tessera-prod-{region}",
            listen="0.0.0.0:6222",
            routes=tuple(f"nats-route://nats-{i}.{region}.{zone}:6222" for i in range(3)),
        ),
        tls=NatsTls(
            cert_file=Path("/etc/nats/tls/server.pem"),
            key_file=Path("/etc/nats/tls/server-key.pem"),
            ca_file=Path("/etc/nats/tls/ca.pem"),
        ),
    )


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_non_hub_region_has_a_leaf_connection_to_the_hub(env: str) -> None:
    """The module marks the first region the hub; each other region's configuration has a leaf
    remote (to the hub's leaf name, from its server environment) and no leaf listener."""
    default = variable_default(ENVS / env, "regions")
    assert isinstance(default, list)
    regions = [str(unquote(r)) for r in default]
    module = locals_of(NATS_MODULE)
    assert "hub       = region == var.hub_region" in (NATS_MODULE / "main.tf").read_text()
    assert "TESSERA_NATS_HUB_LEAF_URLS" in str(module["server_environment"])
    assert "local.hub_leaf" in str(module["server_environment"])
    for region in regions:
        hub = region == regions[0]
        leafnodes = servers.nats_server_config(_prod_settings(region, hub=hub))["leafnodes"]
        assert ("remotes" in leafnodes) is not hub, region
        assert (leafnodes.get("listen") == "0.0.0.0:7422") is hub, region
        if not hub:
            assert leafnodes["remotes"][0]["urls"] == "$TESSERA_NATS_HUB_LEAF_URLS"


def test_the_module_sets_every_secret_the_configuration_references() -> None:
    """server_environment (Secrets Manager, read into nats-server's environment at boot) names
    exactly region.json's references: the hub's passwords in the hub, the leaf URLs elsewhere."""
    expression = str(locals_of(NATS_MODULE)["server_environment"])
    references = msgspec.to_builtins(servers.load_nats_shape().environment)
    assert set(re.findall(r"\b(TESSERA_NATS_[A-Z_]+) =", expression)) == {
        reference[1:] for reference in references.values()
    }
    hub = servers.render_nats_config(servers.nats_server_config(_prod_settings("h", hub=True)))
    region = servers.render_nats_config(servers.nats_server_config(_prod_settings("r", hub=False)))
    for text, users in (
        (hub, servers.nats_users(hub=True)),
        (region, servers.nats_users(hub=False)),
    ):
        named = set(re.findall(r"\$(TESSERA_NATS_[A-Z_]+)", text))
        expected = {references[user][1:] for user in users}
        assert named == expected | ({references["hub_leaf_urls"][1:]} if text is region else set())


def test_production_configuration_has_tls_routes_fsync_and_permissions() -> None:
    hub = servers.nats_server_config(_prod_settings("us-east-1", hub=True))
    region = servers.nats_server_config(_prod_settings("eu-west-1", hub=False))
    for config in (hub, region):
        assert config["jetstream"]["sync_interval"] == "always"
        assert config["cluster"]["tls"]["verify"] is True
        assert config["cluster"]["routes"][0].startswith("nats-route://nats-0.")
    assert hub["leafnodes"]["tls"]["verify"] is True
    assert "verify" not in region["leafnodes"]["remotes"][0]["tls"]  # a client presents its own
    users = {c["server_name"]: c["accounts"]["TESSERA"]["users"] for c in (hub, region)}
    assert [u["user"] for u in users["us-east-1-nats-0"]][:2] == ["writer", "notifier"]
    assert [u["user"] for u in users["eu-west-1-nats-0"]] == ["reader", "admin"]
    assert "seats.>" in users["us-east-1-nats-0"][0]["permissions"]["publish"]["allow"]
    reader = users["eu-west-1-nats-0"][0]["permissions"]
    assert not any(s.startswith(("seats.", "$KV.")) for s in reader["publish"]["allow"])


@pytest.fixture(scope="module")
def terraform() -> str:
    binary = shutil.which("terraform")
    if binary is None:
        pytest.skip("no terraform binary on PATH: Terraform's rendering is not compared")
    return binary


def _cases() -> dict[str, NatsServerSettings]:
    tls = NatsTls(cert_file=Path("/w/s.pem"), key_file=Path("/w/k.pem"), ca_file=Path("/w/ca.pem"))
    local: dict[str, Any] = {
        "client_listen": "127.0.0.1:40001",
        "monitor_listen": "127.0.0.1:40002",
        "max_file_store_bytes": 1 << 30,
        "max_memory_store_bytes": 1 << 28,
    }
    return {
        "prod-hub": _prod_settings("us-east-1", hub=True),
        "prod-region": _prod_settings("eu-west-1", hub=False),
        # what the local launcher starts (tests/integration/test_terraform_nats.py)
        "local-hub-tls": NatsServerSettings(
            server_name="tessera-hub-1",
            store_dir="/tmp/hub/jetstream",
            domain="hub",
            hub=True,
            leaf_listen="127.0.0.1:40003",
            tls=tls,
            **local,
        ),
        "local-region": NatsServerSettings(
            server_name="tessera-eu-1",
            store_dir="/tmp/eu/jetstream",
            domain="eu",
            hub=False,
            **local,
        ),
        # a single-node staging region, non-ASCII in a path
        "single-node": NatsServerSettings(
            server_name="s-0", store_dir="/données", domain="s", hub=False, tls=tls, **local
        ),
    }


def test_terraform_writes_what_python_writes(terraform: str, tmp_path: Path) -> None:
    cases = _cases()
    variables = {name: dataclasses.asdict(settings) for name, settings in cases.items()}
    rendered = terraform_configs(terraform, variables, tmp_path / "terraform")
    assert set(rendered) == set(cases)
    for name, settings in cases.items():
        python = servers.render_nats_config(servers.nats_server_config(settings))
        assert rendered[name] == python, name


def test_terraform_refuses_a_leaf_listener_outside_the_hub(terraform: str, tmp_path: Path) -> None:
    """The module's validation is the Python settings' own check."""
    region = dataclasses.asdict(_cases()["local-region"]) | {"leaf_listen": "127.0.0.1:1"}
    with pytest.raises(AssertionError, match="a region none"):
        terraform_configs(terraform, {"bad": region}, tmp_path / "terraform")


# --- the permissions agree with the definitions ---


def _tokens(subject: str) -> list[str]:
    return subject.split(".")


def _overlap(a: list[str], b: list[str]) -> bool:
    """Whether some subject matches both patterns (`*` one token, a final `>` one or more)."""
    if not a or not b:
        return not a and not b
    if a[0] == ">" or b[0] == ">":
        return True
    if a[0] == "*" or b[0] == "*" or a[0] == b[0]:
        return _overlap(a[1:], b[1:])
    return False


def _covers(pattern: list[str], subject: list[str]) -> bool:
    """Whether `pattern` matches every subject `subject` (itself a pattern) matches."""
    if not pattern:
        return not subject
    if pattern[0] == ">":
        return bool(subject)
    if not subject or subject[0] == ">":
        return False
    if pattern[0] == "*" or pattern[0] == subject[0]:
        return _covers(pattern[1:], subject[1:])
    return False


def _stream_subjects() -> list[str]:
    subjects: list[str] = []
    for d in jetstream.load_definitions():
        if isinstance(d, StreamDefinition):
            subjects += d.subjects
        elif isinstance(d, KvDefinition):
            subjects.append(f"$KV.{d.bucket}.>")
    return subjects


def test_subject_matching_helpers() -> None:
    assert _overlap(_tokens("seats.>"), _tokens("seats.E.S"))
    assert _overlap(_tokens("$JS.API.>"), _tokens("$JS.*.API.INFO"))
    assert not _overlap(_tokens("$JS.API.STREAM.INFO.SEATS"), _tokens("seats.>"))
    assert _covers(_tokens("seats.>"), _tokens("seats.*.*"))
    assert not _covers(_tokens("seats.*"), _tokens("seats.>"))


def test_writer_may_publish_the_feed_and_nobody_else_may() -> None:
    permissions = servers.load_nats_permissions()
    users = permissions.users
    dead_letters = [
        subject
        for d in jetstream.load_definitions()
        if isinstance(d, StreamDefinition)
        and d.name in ("ORDERS_DEADLETTER", "WEBHOOKS_DEADLETTER")
        for subject in d.subjects
    ]
    for subject in _stream_subjects():
        assert any(_covers(_tokens(p), _tokens(subject)) for p in users.writer.publish), subject
        others = [("reader", users.reader), ("admin", users.admin)]
        if subject not in dead_letters:  # the notifier writes dead letters, nothing else
            others.append(("notifier", users.notifier))
        for name, user in others:
            clash = [p for p in user.publish if _overlap(_tokens(p), _tokens(subject))]
            assert not clash, f"{name} may publish {clash}, which reaches {subject}"
        # a region exports nothing the hub's streams store
        assert any(_covers(_tokens(p), _tokens(subject)) for p in permissions.leaf.deny_exports)
    for subject in dead_letters:
        assert any(_covers(_tokens(p), _tokens(subject)) for p in users.notifier.publish)


def test_readers_may_read_exactly_their_regions_streams() -> None:
    users = servers.load_nats_permissions().users
    names = {d.stream_name for d in jetstream.load_regional_definitions()}
    # the mirrors keep the hub's names: a reader reads the same streams in the hub
    assert names <= {d.stream_name for d in jetstream.load_definitions()}
    for name in names:
        for api in ("STREAM.INFO", "CONSUMER.CREATE", "CONSUMER.INFO", "CONSUMER.MSG.NEXT"):
            wanted = f"$JS.API.{api}.{name}.x" if api != "STREAM.INFO" else f"$JS.API.{api}.{name}"
            assert any(_covers(_tokens(p), _tokens(wanted)) for p in users.reader.publish), wanted
    for pattern in users.reader.publish:
        tokens = _tokens(pattern)
        assert tokens[:2] == ["$JS", "API"], pattern
        assert tokens[2] in {"STREAM", "CONSUMER", "DIRECT"}, pattern
        assert not {"CREATE", "UPDATE", "DELETE", "PURGE"} & set(tokens[2:4]) or (
            tokens[2:4] == ["CONSUMER", "CREATE"]
        ), pattern
        assert any(name in tokens for name in names), pattern
    assert users.reader.subscribe == ["_INBOX.>"]
