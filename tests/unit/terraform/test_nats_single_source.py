"""nats/ is the single source of the NATS topology: the Terraform module reads exactly the files the
Python side loads (definitions, template, permissions), passes the template the variables the
Python renderer builds, and the permissions agree with the stream definitions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from terraform_support import (
    ENV_NAMES,
    ENVS,
    MODULES,
    ROOT,
    locals_of,
    templatefile_keys,
    unquote,
    variable_default,
)

from tessera import jetstream
from tessera.jetstream import KvDefinition, MirrorDefinition, StreamDefinition
from tessera_ops import natsconf

NATS_MODULE = MODULES / "nats_regions"


def _module_path(expression: object, nats_dir: Path) -> Path:
    """A path expression of the module's locals, resolved as Terraform would."""
    text = str(unquote(expression))
    text = text.replace("${path.module}", str(NATS_MODULE)).replace(
        "${local.nats_dir}", str(nats_dir)
    )
    return Path(text).resolve()


def test_the_module_reads_the_repository_nats_folder() -> None:
    found = locals_of(NATS_MODULE)
    nats_dir = _module_path(found["nats_dir"], Path())
    assert nats_dir == (ROOT / "nats").resolve()
    assert _module_path(found["server_template"], nats_dir) == natsconf.SERVER_TEMPLATE.resolve()
    permissions = re.search(r'file\("([^"]+)"\)', str(found["permissions"]))
    assert permissions
    assert _module_path(permissions.group(1), nats_dir) == natsconf.PERMISSIONS_FILE.resolve()
    # the definitions: the same folders, the same glob as load_definitions()
    hub = str(found["hub_definitions"])
    regional = str(found["regional_definitions"])
    assert 'fileset("${local.nats_dir}/jetstream", "*.json")' in hub
    assert 'fileset("${local.nats_dir}/jetstream/regional", "*.json")' in regional
    assert (nats_dir / "jetstream") == jetstream.DEFAULT_DIRECTORY.resolve()
    assert (nats_dir / "jetstream" / "regional") == jetstream.REGIONAL_DIRECTORY.resolve()


def test_terraform_and_python_pass_the_template_the_same_variables() -> None:
    template = natsconf.SERVER_TEMPLATE.read_text()
    from_template = natsconf.template_variables(template)
    from_module = _templatefile_keys()
    from_python = set(
        natsconf.server_variables(
            server_name="n",
            client_listen="127.0.0.1:1",
            monitor_listen="127.0.0.1:2",
            store_dir="/s",
            domain="d",
            hub=False,
            max_file_store_bytes=1,
            max_memory_store_bytes=1,
        )
    )
    assert from_module == from_template == from_python


def _templatefile_keys() -> set[str]:
    return templatefile_keys(str(locals_of(NATS_MODULE)["server_configs"]))


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
        rendered = natsconf.render_server_config(_prod_variables(region, hub=hub))
        body = [line.strip() for line in rendered.splitlines() if not line.lstrip().startswith("#")]
        assert ("remotes: [" in body) is not hub, region
        assert ("urls: $TESSERA_NATS_HUB_LEAF_URLS" in body) is not hub, region
        assert any(line.startswith("listen: ") and "7422" in line for line in body) is hub


def _prod_variables(region: str, *, hub: bool) -> dict[str, object]:
    """The module's values (terraform/modules/nats_regions/main.tf), built the Python way."""
    zone = "example.net"
    return natsconf.server_variables(
        server_name=f"{region}-nats-0",
        client_listen="0.0.0.0:4222",
        monitor_listen="0.0.0.0:8222",
        store_dir="/var/lib/nats/jetstream",
        domain=region,
        hub=hub,
        max_file_store_bytes=193273528320,
        max_memory_store_bytes=1073741824,
        leaf_listen="0.0.0.0:7422" if hub else "",
        cluster=natsconf.Cluster(
            name=f"tessera-prod-{region}",
            listen="0.0.0.0:6222",
            routes=tuple(f"nats-route://nats-{i}.{region}.{zone}:6222" for i in range(3)),
        ),
        tls=natsconf.TlsFiles(
            cert_file=Path("/etc/nats/tls/server.pem"),
            key_file=Path("/etc/nats/tls/server-key.pem"),
            ca_file=Path("/etc/nats/tls/ca.pem"),
        ),
    )


def test_production_rendering_has_tls_routes_fsync_and_permissions() -> None:
    hub = natsconf.render_server_config(_prod_variables("us-east-1", hub=True))
    region = natsconf.render_server_config(_prod_variables("eu-west-1", hub=False))
    for text in (hub, region):
        assert "sync_interval: always" in text
        assert text.count("verify: true") == (2 if text is hub else 1)  # leaf listener, routes
        assert 'routes: ["nats-route://nats-0.' in text
        assert 'user: "reader"' in text and 'user: "admin"' in text
    assert 'user: "writer"' in hub and 'user: "writer"' not in region
    assert '"seats.>"' in hub.split('user: "reader"')[0]  # the writer may publish seats.>
    reader = region.split('user: "reader"')[1].split('user: "admin"')[0]
    assert "seats." not in reader and "$KV." not in reader


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
    permissions = natsconf.load_permissions()
    users = permissions.users
    dead_letters = [
        subject
        for d in jetstream.load_definitions()
        if isinstance(d, StreamDefinition) and d.name == "ORDERS_DEADLETTER"
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
    users = natsconf.load_permissions().users
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
