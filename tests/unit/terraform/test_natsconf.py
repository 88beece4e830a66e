"""The NATS server configuration as Python builds it (tessera_ops.servers.nats_server_config and
render_nats_config): region.json's fixed settings and permissions.json's users merged with one
server's own values, written with json.dumps as Terraform's jsonencode writes it, the secrets
left to nats-server's environment. test_nats_single_source.py compares it with Terraform's."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tessera_ops import servers
from tessera_ops.servers import (
    NatsCluster,
    NatsServerSettings,
    NatsTls,
    nats_server_config,
    render_nats_config,
)

_REFERENCE = re.compile(r"\$TESSERA_NATS_[A-Z_]+")


def _settings(*, hub: bool, **changes: Any) -> NatsServerSettings:
    values: dict[str, Any] = {
        "server_name": "n-0",
        "client_listen": "127.0.0.1:4222",
        "monitor_listen": "127.0.0.1:8222",
        "store_dir": "/s",
        "domain": "hub" if hub else "eu",
        "hub": hub,
        "max_file_store_bytes": 1 << 40,
        "max_memory_store_bytes": 1 << 28,
        "leaf_listen": "127.0.0.1:7422" if hub else None,
    }
    return NatsServerSettings(**(values | changes))


_TLS = NatsTls(
    cert_file=Path("/t/server.pem"), key_file=Path("/t/key.pem"), ca_file=Path("/t/ca.pem")
)
_CLUSTER = NatsCluster(name="c", listen="0.0.0.0:6222", routes=("nats-route://a:6222",))


def test_the_file_is_compact_sorted_json_with_bare_environment_references() -> None:
    config = nats_server_config(_settings(hub=False))
    text = render_nats_config(config)
    # jsonencode's layout: no spaces, keys sorted, `>` and non-ASCII as they are; only the
    # references lose their quotes
    requoted = re.sub(r"(\$TESSERA_NATS_[A-Z_]+)", r'"\1"', text)
    assert requoted == json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert '"seats.>"' in text and "\\u003e" not in text
    # references are bare (nats-server resolves only those), nothing else is unquoted
    assert '"$TESSERA_' not in text
    assert set(_REFERENCE.findall(text)) == {
        "$TESSERA_NATS_READER_PASSWORD",
        "$TESSERA_NATS_ADMIN_PASSWORD",
        "$TESSERA_NATS_HUB_LEAF_URLS",
    }
    assert '"$JS.API.STREAM.INFO.SEATS"' in text  # subjects starting with `$` stay strings


def test_a_reference_is_unquoted_only_as_a_whole_string_value() -> None:
    config: dict[str, object] = {
        "a": "$TESSERA_NATS_X",
        "b": ["$TESSERA_NATS_Y", "$TESSERA_NATS_Z"],
        "c": "see $TESSERA_NATS_X",
        "d": "$TESSERA_NATS_lower",
    }
    assert render_nats_config(config) == (
        '{"a":$TESSERA_NATS_X,"b":[$TESSERA_NATS_Y,$TESSERA_NATS_Z],'
        '"c":"see $TESSERA_NATS_X","d":"$TESSERA_NATS_lower"}'
    )


def test_hub_and_region_documents() -> None:
    hub = nats_server_config(_settings(hub=True))
    region = nats_server_config(_settings(hub=False))
    for config in (hub, region):
        assert config["jetstream"]["sync_interval"] == "always"
        assert config["jetstream"]["max_file_store"] == 1 << 40
        assert "cluster" not in config
    assert [u["user"] for u in hub["accounts"]["TESSERA"]["users"]] == [
        "writer",
        "notifier",
        "reader",
        "admin",
    ]
    assert [u["user"] for u in region["accounts"]["TESSERA"]["users"]] == ["reader", "admin"]
    assert hub["leafnodes"] == {
        "listen": "127.0.0.1:7422",
        "authorization": {
            "users": [
                {"user": "leaf", "password": "$TESSERA_NATS_LEAF_PASSWORD", "account": "TESSERA"}
            ]
        },
    }
    (remote,) = region["leafnodes"]["remotes"]
    assert remote == {
        "ignore_discovered_servers": True,
        "urls": "$TESSERA_NATS_HUB_LEAF_URLS",
        "account": "TESSERA",
        "deny_exports": ["seats.>", "orders.>", "webhooks.>", "$KV.>"],
    }


def test_tls_and_cluster() -> None:
    hub = nats_server_config(_settings(hub=True, cluster=_CLUSTER, tls=_TLS))
    region = nats_server_config(_settings(hub=False, cluster=_CLUSTER, tls=_TLS))
    files = {"cert_file": "/t/server.pem", "key_file": "/t/key.pem", "ca_file": "/t/ca.pem"}
    # the accepting side checks the peer's certificate; a remote presents its own
    assert hub["leafnodes"]["tls"] == {**files, "verify": True}
    assert region["leafnodes"]["remotes"][0]["tls"] == files
    for config in (hub, region):
        assert config["cluster"] == {
            "name": "c",
            "listen": "0.0.0.0:6222",
            "routes": ["nats-route://a:6222"],
            "tls": {**files, "verify": True},
        }


def test_a_hub_and_only_a_hub_has_a_leaf_listener() -> None:
    with pytest.raises(ValueError, match="a hub needs one"):
        _settings(hub=True, leaf_listen=None)
    with pytest.raises(ValueError, match="a region none"):
        _settings(hub=False, leaf_listen="127.0.0.1:7422")


@pytest.mark.parametrize("bad", ['a"b', "a\\b", "a\nb", "a\tb", "a\u2028b"])
def test_strings_the_two_encoders_could_write_differently_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="backslash, a double quote or a control character"):
        nats_server_config(_settings(hub=False, store_dir=bad))


def test_non_ascii_is_written_as_it_is() -> None:
    text = render_nats_config(nats_server_config(_settings(hub=False, store_dir="/données")))
    assert '"store_dir":"/données"' in text


def test_the_permissions_and_shape_files_are_checked(tmp_path: Path) -> None:
    permissions = servers.load_nats_permissions()
    assert permissions.account == "TESSERA"
    assert "seats.>" in permissions.users.writer.publish
    broken = tmp_path / "permissions.json"
    text = servers.NATS_PERMISSIONS_FILE.read_text()
    broken.write_text(text.replace('"seats.>"', '"seats .>"', 1))
    with pytest.raises(ValueError, match=r"permissions\.json"):
        servers.load_nats_permissions(broken)
    shape = servers.load_nats_shape()
    assert shape.users.region == ["reader", "admin"]
    document = json.loads(servers.NATS_SERVER_SHAPE_FILE.read_text())
    for change, message in (
        ({"environment": {**document["environment"], "reader": "PLAIN"}}, "environment.reader"),
        ({"users": {"hub": ["writer"], "region": ["nobody"]}}, r"users\.region"),
        ({"extra": 1}, "unknown field"),
    ):
        path = tmp_path / "region.json"
        path.write_text(json.dumps(document | change))
        with pytest.raises(ValueError, match=message):
            servers.load_nats_shape(path)


def test_every_server_user_has_permissions_and_a_password_reference() -> None:
    shape = servers.load_nats_shape()
    users = msgspec.to_builtins(servers.load_nats_permissions().users)
    references = msgspec.to_builtins(shape.environment)
    for name in {*shape.users.hub, *shape.users.region}:
        assert name in users and name in references
    assert servers.nats_users(hub=True) == ("writer", "notifier", "reader", "admin", "leaf")
    assert servers.nats_users(hub=False) == ("reader", "admin")


def test_the_environment_is_json_quoted_for_nats_server() -> None:
    assert servers.nats_server_environment(
        {"reader": "12345", "leaf": "x"}, hub_leaf_urls=["nats-leaf://leaf:p@h:7422"]
    ) == {
        "TESSERA_NATS_READER_PASSWORD": '"12345"',
        "TESSERA_NATS_LEAF_PASSWORD": '"x"',
        "TESSERA_NATS_HUB_LEAF_URLS": '["nats-leaf://leaf:p@h:7422"]',
    }
