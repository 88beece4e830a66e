"""The NATS server configuration, rendered from `nats/server/region.conf.tftpl`.

The same template is rendered by Terraform's `templatefile()` in production
(`terraform/modules/nats_regions`) and by `render` here for the local launcher and the tests, so
what runs locally is what runs in production, modulo addresses, paths and TLS. `render`
implements the part of Terraform's template language the template may use, with Terraform's
semantics:

- `${name}` / `${name.attr.attr}`: a string or a whole number, written as Terraform writes it;
- `%{ if name }` ... [`%{ else }` ...] `%{ endif }` on a bool;
- `%{ for item in name }` ... `%{ endfor }` over a list (the body may use `item`);
- `$${` and `%%{` for a literal `${` and `%{`.

Anything else (functions, operators, strip markers `~`) is refused, so a template that renders
here renders the same under Terraform. As in `templatefile()`, every variable the template
names anywhere (even in a branch not taken) must be given.

`server_variables` builds the variables the way the Terraform module does (the same names: the
unit tests compare them with the module's `templatefile()` call), from
`nats/server/permissions.json` (`load_permissions`), the users' permissions as data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Final

import msgspec

__all__ = [
    "ENV_ADMIN_PASSWORD",
    "ENV_HUB_LEAF_URLS",
    "ENV_LEAF_PASSWORD",
    "ENV_NOTIFIER_PASSWORD",
    "ENV_READER_PASSWORD",
    "ENV_WRITER_PASSWORD",
    "HUB_USERS",
    "NATS_SERVER_DIRECTORY",
    "PERMISSIONS_FILE",
    "REGION_USERS",
    "SERVER_TEMPLATE",
    "Cluster",
    "Permissions",
    "TemplateError",
    "TlsFiles",
    "load_permissions",
    "password_environment",
    "render",
    "render_server_config",
    "server_variables",
    "template_variables",
]

# The project root's nats/server (this file is <root>/tessera_ops/natsconf.py). A wheel does
# not ship nats/: pass paths explicitly there.
NATS_SERVER_DIRECTORY: Final = Path(__file__).resolve().parents[1] / "nats" / "server"
SERVER_TEMPLATE: Final = NATS_SERVER_DIRECTORY / "region.conf.tftpl"
PERMISSIONS_FILE: Final = NATS_SERVER_DIRECTORY / "permissions.json"

# nats-server environment references in the template: secrets, set when the server starts.
# (The names of the variables, not their values: hence the S105 exemptions.)
ENV_WRITER_PASSWORD: Final = "TESSERA_NATS_WRITER_PASSWORD"  # noqa: S105
ENV_NOTIFIER_PASSWORD: Final = "TESSERA_NATS_NOTIFIER_PASSWORD"  # noqa: S105
ENV_READER_PASSWORD: Final = "TESSERA_NATS_READER_PASSWORD"  # noqa: S105
ENV_ADMIN_PASSWORD: Final = "TESSERA_NATS_ADMIN_PASSWORD"  # noqa: S105
ENV_LEAF_PASSWORD: Final = "TESSERA_NATS_LEAF_PASSWORD"  # noqa: S105
ENV_HUB_LEAF_URLS: Final = "TESSERA_NATS_HUB_LEAF_URLS"


# Who has a password on a server of the hub, and on one of any other region (the leaf user is
# the one the regions' leaf connections authenticate as).
HUB_USERS: Final = ("writer", "notifier", "reader", "admin", "leaf")
REGION_USERS: Final = ("reader", "admin")


class TemplateError(ValueError):
    """The template uses syntax outside the supported subset, or a variable is missing or of
    the wrong type."""


# --- the template language subset ---

_TOKEN: Final = re.compile(r"\$\$\{|%%\{|\$\{([^}]*)\}|%\{([^}]*)\}")
_REFERENCE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*")
_FOR: Final = re.compile(r"for\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\s+(\S+)")


@dataclass(frozen=True)
class _Text:
    text: str


@dataclass(frozen=True)
class _Interpolation:
    reference: str


@dataclass(frozen=True)
class _If:
    condition: str
    then: list[_Node]
    otherwise: list[_Node]


@dataclass(frozen=True)
class _For:
    name: str
    collection: str
    body: list[_Node]


_Node = _Text | _Interpolation | _If | _For


def _reference(expression: str) -> str:
    expression = expression.strip()
    if not _REFERENCE.fullmatch(expression):
        raise TemplateError(
            f"unsupported expression {expression!r}: only a variable or an attribute of one"
        )
    return expression


def _tokens(text: str) -> list[tuple[str, str]]:
    """("text", s), ("interp", expr) or ("directive", body), in order."""
    tokens: list[tuple[str, str]] = []
    position = 0
    for match in _TOKEN.finditer(text):
        tokens.append(("text", text[position : match.start()]))
        position = match.end()
        token = match.group(0)
        if token in {"$${", "%%{"}:
            tokens.append(("text", token[1:]))
        elif match.group(1) is not None:
            tokens.append(("interp", match.group(1)))
        else:
            tokens.append(("directive", match.group(2)))
    tokens.append(("text", text[position:]))
    return [token for token in tokens if token != ("text", "")]


def _parse(
    tokens: list[tuple[str, str]], start: int, closers: tuple[str, ...]
) -> tuple[list[_Node], int, str | None]:
    """Nodes from `tokens[start:]` up to one of `closers`; (nodes, next index, closer seen)."""
    nodes: list[_Node] = []
    index = start
    while index < len(tokens):
        kind, value = tokens[index]
        index += 1
        if kind == "text":
            nodes.append(_Text(value))
            continue
        if "~" in value:
            raise TemplateError("strip markers (~) are not supported")
        if kind == "interp":
            nodes.append(_Interpolation(_reference(value)))
            continue
        directive = value.strip()
        if directive in closers:
            return nodes, index, directive
        if directive.startswith("if "):
            then, index, closer = _parse(tokens, index, ("else", "endif"))
            otherwise: list[_Node] = []
            if closer == "else":
                otherwise, index, closer = _parse(tokens, index, ("endif",))
            if closer != "endif":
                raise TemplateError(f"%{{ {directive} }} has no %{{ endif }}")
            nodes.append(_If(_reference(directive[3:]), then, otherwise))
        elif loop := _FOR.fullmatch(directive):
            body, index, closer = _parse(tokens, index, ("endfor",))
            if closer != "endfor":
                raise TemplateError(f"%{{ {directive} }} has no %{{ endfor }}")
            nodes.append(_For(loop.group(1), _reference(loop.group(2)), body))
        else:
            raise TemplateError(f"unsupported or misplaced directive %{{ {directive} }}")
    return nodes, index, None


def _parse_template(text: str) -> list[_Node]:
    nodes, _, closer = _parse(_tokens(text), 0, ())
    assert closer is None
    return nodes


def _free_names(nodes: Sequence[_Node], bound: frozenset[str]) -> set[str]:
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, _Interpolation | _If | _For):
            reference = (
                node.reference
                if isinstance(node, _Interpolation)
                else (node.condition if isinstance(node, _If) else node.collection)
            )
            root = reference.split(".", 1)[0]
            if root not in bound:
                names.add(root)
        if isinstance(node, _If):
            names |= _free_names(node.then, bound) | _free_names(node.otherwise, bound)
        elif isinstance(node, _For):
            names |= _free_names(node.body, bound | {node.name})
    return names


def template_variables(text: str) -> frozenset[str]:
    """The variables `text` names (what `templatefile()` requires in its map)."""
    return frozenset(_free_names(_parse_template(text), frozenset()))


def _lookup(reference: str, scope: Mapping[str, object]) -> object:
    root, *attributes = reference.split(".")
    value = scope[root]
    for attribute in attributes:
        if not isinstance(value, Mapping) or attribute not in value:
            raise TemplateError(f"{reference}: no attribute {attribute!r}")
        value = value[attribute]
    return value


def _as_text(reference: str, value: object) -> str:
    # Terraform writes a whole number without exponent or decimals; bools and floats are not
    # needed by the template, so they are refused rather than formatted differently.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise TemplateError(f"{reference}: cannot interpolate a {type(value).__name__}")


def _render_nodes(nodes: Sequence[_Node], scope: Mapping[str, object], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, _Text):
            out.append(node.text)
        elif isinstance(node, _Interpolation):
            out.append(_as_text(node.reference, _lookup(node.reference, scope)))
        elif isinstance(node, _If):
            condition = _lookup(node.condition, scope)
            if not isinstance(condition, bool):
                raise TemplateError(f"{node.condition}: an if condition must be a bool")
            _render_nodes(node.then if condition else node.otherwise, scope, out)
        else:
            collection = _lookup(node.collection, scope)
            if not isinstance(collection, list | tuple):
                raise TemplateError(f"{node.collection}: a for loop needs a list")
            for item in collection:
                _render_nodes(node.body, {**scope, node.name: item}, out)


def render(text: str, variables: Mapping[str, object]) -> str:
    """`text` rendered with `variables`, as Terraform's `templatefile()` would."""
    nodes = _parse_template(text)
    missing = _free_names(nodes, frozenset()) - set(variables)
    if missing:
        raise TemplateError(f"variables not given: {', '.join(sorted(missing))}")
    out: list[str] = []
    _render_nodes(nodes, variables, out)
    return "".join(out)


# --- the server configuration ---

# Strings are written quoted into the configuration: no quote, backslash or line break.
_UNSAFE: Final = re.compile(r'["\\\n\r]')
_Subject = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_$*>.-]+$", max_length=256)]
_Subjects = Annotated[list[_Subject], msgspec.Meta(min_length=1)]


class UserPermissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    description: str
    publish: _Subjects
    subscribe: _Subjects


class Users(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    writer: UserPermissions
    notifier: UserPermissions
    reader: UserPermissions
    admin: UserPermissions


class LeafPermissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str
    deny_exports: _Subjects


class Permissions(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """`nats/server/permissions.json`: the account and what each user may do."""

    account: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    users: Users
    leaf: LeafPermissions


def load_permissions(path: Path = PERMISSIONS_FILE) -> Permissions:
    """The permissions file, checked (unknown fields, subject syntax)."""
    try:
        return msgspec.json.decode(path.read_bytes(), type=Permissions)
    except (OSError, msgspec.DecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """A routed cluster of the region's servers (production: three)."""

    name: str
    listen: str
    routes: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """PEM files for mutual TLS on routes and leaf-node connections."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def server_variables(
    *,
    server_name: str,
    client_listen: str,
    monitor_listen: str,
    store_dir: Path | str,
    domain: str,
    hub: bool,
    max_file_store_bytes: int,
    max_memory_store_bytes: int,
    leaf_listen: str = "",
    cluster: Cluster | None = None,
    tls: TlsFiles | None = None,
    permissions: Permissions | None = None,
) -> dict[str, object]:
    """Every variable of `region.conf.tftpl`, as the Terraform module passes them."""
    if hub and not leaf_listen:
        raise ValueError("a hub needs leaf_listen: the regions connect to it")
    variables: dict[str, object] = {
        "server_name": server_name,
        "client_listen": client_listen,
        "monitor_listen": monitor_listen,
        "store_dir": str(store_dir),
        "max_file_store_bytes": max_file_store_bytes,
        "max_memory_store_bytes": max_memory_store_bytes,
        "domain": domain,
        "hub": hub,
        "leaf_listen": leaf_listen,
        "cluster": cluster is not None,
        "cluster_name": cluster.name if cluster else "",
        "cluster_listen": cluster.listen if cluster else "",
        "cluster_routes": list(cluster.routes) if cluster else [],
        "tls": tls is not None,
        "tls_cert_file": str(tls.cert_file) if tls else "",
        "tls_key_file": str(tls.key_file) if tls else "",
        "tls_ca_file": str(tls.ca_file) if tls else "",
        "permissions": msgspec.to_builtins(permissions or load_permissions()),
    }
    _check_safe(variables)
    return variables


def _check_safe(value: object, where: str = "variables") -> None:
    """Refuse strings that would break out of the quotes they are written in."""
    if isinstance(value, str):
        if _UNSAFE.search(value):
            raise ValueError(f"{where}: {value!r} has a double quote, backslash or line break")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_safe(item, f"{where}.{key}")
    elif isinstance(value, list):
        for item in value:
            _check_safe(item, where)


def render_server_config(variables: Mapping[str, object], template: Path = SERVER_TEMPLATE) -> str:
    """The configuration file text for one server."""
    return render(template.read_text(), variables)


def password_environment(passwords: Mapping[str, str]) -> dict[str, str]:
    """nats-server environment values for the users' passwords (JSON-quoted: nats-server parses
    an environment value as a configuration value, so `12345` unquoted would be a number)."""
    names = {
        "writer": ENV_WRITER_PASSWORD,
        "notifier": ENV_NOTIFIER_PASSWORD,
        "reader": ENV_READER_PASSWORD,
        "admin": ENV_ADMIN_PASSWORD,
        "leaf": ENV_LEAF_PASSWORD,
    }
    return {names[user]: json.dumps(password) for user, password in passwords.items()}
