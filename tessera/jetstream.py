"""JetStream streams and KV buckets, defined as data in `tessera/resources/nats/jetstream/*.json`.

A definition file holds one JSON object whose `kind` says what it defines:

- `NAME.stream.json`, `{"kind": "stream", ...}`: a stream (`StreamDefinition`);
- `BUCKET.kv.json`, `{"kind": "kv", ...}`: a key-value bucket (`KvDefinition`);
- `NAME.mirror.json`, `{"kind": "mirror", ...}`: a stream mirroring a stream of another JetStream
  domain through its API prefix `$JS.<domain>.API` (`MirrorDefinition`). The regional domains'
  mirrors of the hub's `SEATS` and `KV_seatmap` live in `regional/` beside them
  (`REGIONAL_DIRECTORY`, `load_regional_definitions`).

They are package data, found with `importlib.resources` (`DEFAULT_DIRECTORY`), documented field
by field in `tessera/resources/nats/README.md`. `load_definitions` reads and checks them (unknown
fields, bounds from `tessera.limits`, file name matching the name inside); `ensure_jetstream`
creates what is missing and updates what differs, so running it on every start is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import time
from collections.abc import Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    ExternalStream,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import APIError, NotFoundError

from tessera import limits

__all__ = [
    "DEFAULT_DIRECTORY",
    "REGIONAL_DIRECTORY",
    "Definition",
    "DefinitionError",
    "JetStreamSetupError",
    "KvDefinition",
    "MirrorDefinition",
    "StreamDefinition",
    "ensure_jetstream",
    "external_api_prefix",
    "load_definitions",
    "load_regional_definitions",
    "wait_for_mirrors",
]

# The definitions are package data (tessera/resources/nats/jetstream, in the wheel), so an
# installed tessera finds them from any directory. pip unpacks the wheel, which is never imported
# from a zip (it carries a compiled extension): the resource is a folder on disk, hence a Path.
DEFAULT_DIRECTORY: Final = Path(
    str(importlib.resources.files("tessera") / "resources" / "nats" / "jetstream")
)
# What every regional JetStream domain holds: mirrors of the hub's streams (`load_definitions`
# reads one folder, not its subfolders, so the hub never picks these up).
REGIONAL_DIRECTORY: Final = DEFAULT_DIRECTORY / "regional"

_NAME_PATTERN: Final = r"^[A-Za-z0-9_-]+$"
# Dot-separated tokens; `*` matches one token, a final `>` one or more.
_SUBJECT_PATTERN: Final = r"^(?:(?:[A-Za-z0-9_-]+|\*)\.)*(?:[A-Za-z0-9_-]+|\*|>)$"
_NS_PER_S: Final = 1_000_000_000

Name = Annotated[
    str, msgspec.Meta(pattern=_NAME_PATTERN, max_length=limits.jetstream_name_chars_max)
]
Subject = Annotated[
    str, msgspec.Meta(pattern=_SUBJECT_PATTERN, max_length=limits.jetstream_subject_chars_max)
]
Description = Annotated[str, msgspec.Meta(max_length=limits.jetstream_description_chars_max)]
Storage = Literal["file", "memory"]
Replicas = Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_replicas_max)]
# -1: no byte limit of its own (the server's store limit and max_age still bound it).
TotalBytes = Annotated[int, msgspec.Meta(ge=-1)]
MsgBytes = Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_msg_bytes_max)]
# 0: messages never age out.
AgeSeconds = Annotated[float, msgspec.Meta(ge=0, le=limits.jetstream_max_age_s_max)]
# -1: no per-subject limit; 1 keeps only the latest message of each subject (a KV with history 1).
PerSubject = Annotated[int, msgspec.Meta(ge=-1, le=limits.jetstream_kv_history_max)]


class DefinitionError(ValueError):
    """A definition file is missing, unreadable or invalid; the message names the file."""


class JetStreamSetupError(RuntimeError):
    """The server refused to create or update a stream or bucket as defined."""


class StreamDefinition(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="stream"
):
    name: Name
    subjects: Annotated[
        tuple[Subject, ...], msgspec.Meta(min_length=1, max_length=limits.jetstream_subjects_max)
    ]
    storage: Storage
    discard: Literal["old", "new"]
    duplicate_window_s: Annotated[
        float, msgspec.Meta(ge=0, le=limits.jetstream_duplicate_window_s_max)
    ]
    max_age_s: AgeSeconds
    max_msg_bytes: MsgBytes
    description: Description = ""
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    max_bytes: TotalBytes = -1
    replicas: Replicas = 1

    def __post_init__(self) -> None:
        if len(set(self.subjects)) != len(self.subjects):
            raise ValueError("subjects must not repeat")
        if self.max_age_s and self.duplicate_window_s > self.max_age_s:
            raise ValueError("duplicate_window_s must not exceed max_age_s")

    @property
    def stream_name(self) -> str:
        return self.name

    @property
    def file_name(self) -> str:
        return f"{self.name}.stream.json"


class KvDefinition(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="kv"
):
    bucket: Name
    history: Annotated[int, msgspec.Meta(ge=1, le=limits.jetstream_kv_history_max)]
    storage: Storage
    max_value_bytes: MsgBytes
    description: Description = ""
    max_bytes: TotalBytes = -1
    ttl_s: AgeSeconds = 0
    direct: bool = False
    replicas: Replicas = 1

    @property
    def stream_name(self) -> str:
        """The stream that backs the bucket (nats-py and the server use this name)."""
        return f"KV_{self.bucket}"

    @property
    def file_name(self) -> str:
        return f"{self.bucket}.kv.json"


class MirrorDefinition(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, tag_field="kind", tag="mirror"
):
    """A stream holding a copy of stream `source` of the JetStream domain `source_domain`.

    A mirror has no subjects of its own (nothing published locally lands in it) and keeps the
    source's sequence numbers; the server pulls from the source through the API prefix
    `$JS.<source_domain>.API` and resumes where it stopped after any disconnection.
    """

    name: Name
    source: Name
    # The source's JetStream domain (the hub's); None: a stream of this same domain.
    source_domain: Name | None
    storage: Storage
    max_age_s: AgeSeconds
    max_msg_bytes: MsgBytes
    description: Description = ""
    max_bytes: TotalBytes = -1
    max_msgs_per_subject: PerSubject = -1
    # Direct gets (`$JS.API.DIRECT.GET.<name>`) answered by this stream, and, with
    # `mirror_direct`, those addressed to the source's name too.
    direct: bool = False
    mirror_direct: bool = False
    replicas: Replicas = 1

    def __post_init__(self) -> None:
        if self.max_msgs_per_subject == 0:
            raise ValueError("max_msgs_per_subject must be -1 (no limit) or at least 1")
        if self.mirror_direct and not self.direct:
            raise ValueError("mirror_direct needs direct: true")

    @property
    def stream_name(self) -> str:
        return self.name

    @property
    def file_name(self) -> str:
        return f"{self.name}.mirror.json"

    @property
    def api_prefix(self) -> str | None:
        """`$JS.<source_domain>.API`, or None for a source in the local domain."""
        if self.source_domain is None:
            return None
        return external_api_prefix(self.source_domain)


def external_api_prefix(domain: str) -> str:
    """The subject prefix under which JetStream domain `domain`'s API answers from elsewhere."""
    return f"$JS.{domain}.API"


Definition = StreamDefinition | KvDefinition | MirrorDefinition

_decoder: Final[msgspec.json.Decoder[Definition]] = msgspec.json.Decoder(Definition)


def load_definitions(
    directory: Path | None = None, *, replicas: int | None = None
) -> list[Definition]:
    """Every `*.json` definition in `directory` (default: the package's `DEFAULT_DIRECTORY`),
    sorted by file name; `replicas`, when given, replaces every definition's replica count (3 on
    a clustered hub: the writer's TESSERA_JETSTREAM_REPLICAS, set by the deployment)."""
    folder = DEFAULT_DIRECTORY if directory is None else directory
    if not folder.is_dir():
        hint = " (package data of tessera: reinstall it)" if directory is None else ""
        raise DefinitionError(f"JetStream definitions folder {folder} not found{hint}")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise DefinitionError(f"no JetStream definitions (*.json) in {folder}")
    definitions: list[Definition] = []
    stream_files: dict[str, Path] = {}
    for path in files:
        definition = _load_file(path)
        earlier = stream_files.setdefault(definition.stream_name, path)
        if earlier != path:
            raise DefinitionError(
                f"{path}: stream {definition.stream_name} is already defined by {earlier}"
            )
        definitions.append(definition)
    return _with_replicas(definitions, replicas)


def _with_replicas(definitions: list[Definition], replicas: int | None) -> list[Definition]:
    if replicas is None:
        return definitions
    try:
        msgspec.convert(replicas, Replicas)
    except msgspec.ValidationError as exc:
        raise DefinitionError(f"replicas {replicas!r}: {exc}") from exc
    return [msgspec.structs.replace(d, replicas=replicas) for d in definitions]


def load_regional_definitions(
    directory: Path | None = None, *, hub_domain: str | None = None, replicas: int | None = None
) -> list[Definition]:
    """The definitions of a regional domain (default: `REGIONAL_DIRECTORY`).

    `hub_domain`, when given, replaces every mirror's `source_domain` (the files name `hub`; a
    deployment whose writer domain is called otherwise passes its name here); `replicas`
    replaces every definition's replica count (3 in a clustered region, 1 on one server).
    """
    definitions = load_definitions(REGIONAL_DIRECTORY if directory is None else directory)
    try:
        if hub_domain is not None:
            msgspec.convert(hub_domain, Name)
        if replicas is not None:
            msgspec.convert(replicas, Replicas)
    except msgspec.ValidationError as exc:
        raise DefinitionError(f"hub_domain {hub_domain!r} / replicas {replicas!r}: {exc}") from exc
    changed: list[Definition] = []
    for loaded in definitions:
        definition = loaded
        if hub_domain is not None and isinstance(definition, MirrorDefinition):
            definition = msgspec.structs.replace(definition, source_domain=hub_domain)
        if replicas is not None:
            definition = msgspec.structs.replace(definition, replicas=replicas)
        changed.append(definition)
    return changed


def _load_file(path: Path) -> Definition:
    try:
        size = path.stat().st_size
        if size > limits.jetstream_definition_file_bytes_max:
            raise DefinitionError(
                f"{path}: {size} bytes, more than the "
                f"{limits.jetstream_definition_file_bytes_max} a definition may have"
            )
        data = path.read_bytes()
    except OSError as exc:
        raise DefinitionError(f"{path}: cannot read: {exc}") from exc
    try:
        definition = _decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included; its message has the $.path
        raise DefinitionError(f"{path}: {exc}") from exc
    if path.name != definition.file_name:
        raise DefinitionError(
            f"{path}: a {type(definition).__name__} named as inside must be in "
            f"{definition.file_name}"
        )
    return definition


async def ensure_jetstream(js: JetStreamContext, definitions: Iterable[Definition]) -> None:
    """Create each stream / bucket that is missing and update those whose settings differ.

    Safe to run on every start and concurrently (creating an identical stream twice succeeds).
    Settings the definitions do not cover are left as the server has them. Existing streams are
    updated before missing ones are created: an update may free subjects a new stream binds
    (SEATS's `orders.>` became `orders.*` when ORDERS took `orders.confirmed.*`), and the
    server refuses a stream whose subjects overlap another's.
    """
    missing: list[Definition] = []
    for definition in definitions:
        with _refusal(definition):
            if not await _update_one(js, definition):
                missing.append(definition)
    for definition in missing:
        with _refusal(definition):
            await _create_one(js, definition)


@contextlib.contextmanager
def _refusal(definition: Definition) -> Iterator[None]:
    """The server's refusal, as a JetStreamSetupError naming the definition's file."""
    try:
        yield
    except APIError as exc:
        raise JetStreamSetupError(
            f"{definition.file_name}: the server refused stream {definition.stream_name}: "
            f"{exc.description} (code {exc.err_code})"
        ) from exc


async def _create_one(js: JetStreamContext, definition: Definition) -> None:
    if isinstance(definition, StreamDefinition):
        await js.add_stream(_stream_config(definition))
    elif isinstance(definition, MirrorDefinition):
        await js.add_stream(_mirror_config(definition))
    else:
        await js.create_key_value(_kv_config(definition))


async def _update_one(js: JetStreamContext, definition: Definition) -> bool:
    """Bring an existing stream in line with its definition; False when it does not exist."""
    try:
        info = await js.stream_info(definition.stream_name)
    except NotFoundError:
        return False
    existing = info.config
    wanted = _managed_settings(definition)
    current = {key: _normalise(key, getattr(existing, key)) for key in wanted}
    if current["storage"] != wanted["storage"]:
        raise JetStreamSetupError(
            f"{definition.file_name}: stream {definition.stream_name} exists with "
            f"{current['storage']} storage, the definition says {wanted['storage']}; storage "
            "cannot change in place (delete the stream, or change the definition back)"
        )
    if current["mirror"] != wanted["mirror"]:
        raise JetStreamSetupError(
            f"{definition.file_name}: stream {definition.stream_name} exists as "
            f"{_describe_mirror(current['mirror'])}, the definition says "
            f"{_describe_mirror(wanted['mirror'])}; a mirror's source cannot change in place "
            "(delete the stream, or change the definition back)"
        )
    if current == wanted:
        return True
    changes = {key: value for key, value in wanted.items() if key not in _FIXED}
    if isinstance(definition, KvDefinition) and definition.ttl_s:
        # The server refuses a duplicate window longer than max_age (nats-py's create rule).
        window = _normalise("duplicate_window", existing.duplicate_window)
        changes["duplicate_window"] = min(_as_int(window), _as_int(wanted["max_age"]))
    await js.update_stream(existing.evolve(**_to_config_values(changes)))
    return True


async def wait_for_mirrors(
    js: JetStreamContext,
    definitions: Iterable[Definition],
    *,
    timeout_s: float,
    poll_s: float = 0.02,
) -> None:
    """Wait until every mirror among `definitions` has reached its source at least once (its
    `mirror.active` is no longer -1); raise JetStreamSetupError after `timeout_s`.

    A mirror sets up its source consumer a moment after it is created (≈0.2 s on loopback).
    If the link to the source fails while that request is in flight, nats-server 2.15 waits 30 s
    for the answer before retrying, so a caller about to depend on the mirror waits here first.
    """
    mirrors = [d for d in definitions if isinstance(d, MirrorDefinition)]
    deadline = time.monotonic() + timeout_s
    for mirror in mirrors:
        while True:
            try:
                info = await js.stream_info(mirror.name)
            except NotFoundError:
                raise JetStreamSetupError(
                    f"{mirror.file_name}: stream {mirror.name} does not exist (ensure_jetstream)"
                ) from None
            state = info.mirror
            if state is not None and state.active is not None and state.active >= 0:
                break
            if time.monotonic() > deadline:
                problem = state.error if state is not None and state.error else "no contact"
                raise JetStreamSetupError(
                    f"{mirror.file_name}: mirror {mirror.name} has not reached {mirror.source} "
                    f"via {mirror.api_prefix or 'the local domain'} within {timeout_s} s: {problem}"
                )
            await asyncio.sleep(poll_s)


def _stream_config(d: StreamDefinition) -> StreamConfig:
    return StreamConfig(
        name=d.name,
        description=d.description or None,
        subjects=list(d.subjects),
        retention=RetentionPolicy(d.retention),
        discard=DiscardPolicy(d.discard),
        storage=StorageType(d.storage),
        duplicate_window=d.duplicate_window_s,
        max_age=d.max_age_s,
        max_msg_size=d.max_msg_bytes,
        max_bytes=d.max_bytes,
        num_replicas=d.replicas,
    )


def _mirror_source(d: MirrorDefinition) -> StreamSource:
    prefix = d.api_prefix
    return StreamSource(
        name=d.source, external=None if prefix is None else ExternalStream(api=prefix)
    )


def _mirror_config(d: MirrorDefinition) -> StreamConfig:
    return StreamConfig(
        name=d.name,
        description=d.description or None,
        mirror=_mirror_source(d),
        storage=StorageType(d.storage),
        max_age=d.max_age_s,
        max_msg_size=d.max_msg_bytes,
        max_bytes=d.max_bytes,
        max_msgs_per_subject=d.max_msgs_per_subject,
        allow_direct=d.direct,
        mirror_direct=d.mirror_direct,
        num_replicas=d.replicas,
    )


def _kv_config(d: KvDefinition) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=d.bucket,
        description=d.description or None,
        history=d.history,
        storage=StorageType(d.storage),
        max_value_size=d.max_value_bytes,
        max_bytes=d.max_bytes,
        ttl=d.ttl_s or None,
        direct=d.direct,
        replicas=d.replicas,
    )


# StreamConfig attribute -> comparable value (durations in integer nanoseconds, enums as str).
_Settings = dict[str, object]


def _managed_settings(d: Definition) -> _Settings:
    """The StreamConfig attributes a definition decides, in `_normalise` form."""
    if isinstance(d, StreamDefinition):
        return {
            "storage": d.storage,
            "mirror": None,
            "description": d.description or None,
            "subjects": list(d.subjects),
            "retention": d.retention,
            "discard": d.discard,
            "duplicate_window": round(d.duplicate_window_s * _NS_PER_S),
            "max_age": round(d.max_age_s * _NS_PER_S),
            "max_msg_size": d.max_msg_bytes,
            "max_bytes": d.max_bytes,
            "num_replicas": d.replicas,
        }
    if isinstance(d, MirrorDefinition):
        return {
            "storage": d.storage,
            "mirror": _normalise_mirror(_mirror_source(d)),
            "description": d.description or None,
            "max_age": round(d.max_age_s * _NS_PER_S),
            "max_msg_size": d.max_msg_bytes,
            "max_bytes": d.max_bytes,
            "max_msgs_per_subject": d.max_msgs_per_subject,
            "allow_direct": d.direct,
            "mirror_direct": d.mirror_direct,
            "num_replicas": d.replicas,
        }
    return {
        "storage": d.storage,
        "mirror": None,
        "description": d.description or None,
        "max_msgs_per_subject": d.history,
        "max_msg_size": d.max_value_bytes,
        "max_bytes": d.max_bytes,
        "max_age": round(d.ttl_s * _NS_PER_S),
        "allow_direct": d.direct,
        "num_replicas": d.replicas,
    }


_DURATIONS: Final = frozenset({"duplicate_window", "max_age"})
# Settings the server refuses to change on an existing stream.
_FIXED: Final = ("storage", "mirror")
_ENUMS: Final[dict[str, type[Enum]]] = {
    "storage": StorageType,
    "retention": RetentionPolicy,
    "discard": DiscardPolicy,
}


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _normalise(key: str, value: object) -> object:
    """A StreamConfig attribute as the server reported it, in comparable form."""
    if key in _DURATIONS:
        return round(value * _NS_PER_S) if isinstance(value, int | float) else 0
    if isinstance(value, Enum):
        return value.value
    if key in {"allow_direct", "mirror_direct"}:
        return bool(value)
    if key == "mirror":
        return _normalise_mirror(value)
    if key == "subjects":
        return list(value) if isinstance(value, list) else []
    return value


def _normalise_mirror(value: object) -> tuple[str, str | None] | None:
    """Which stream, through which API prefix (the server adds an empty `deliver`)."""
    if not isinstance(value, StreamSource):
        return None
    api = value.external.api if value.external is not None else None
    return (value.name, api or None)


def _describe_mirror(value: object) -> str:
    """A `_normalise`d mirror source for an error message."""
    if not isinstance(value, tuple):
        return "a stream that mirrors nothing"
    name, api = value
    return f"a mirror of {name} via {api}" if api else f"a mirror of the local stream {name}"


def _to_config_values(settings: _Settings) -> dict[str, object]:
    """`_normalise` form back to StreamConfig attribute values."""
    values: dict[str, object] = {}
    for key, value in settings.items():
        if key in _DURATIONS:
            values[key] = _as_int(value) / _NS_PER_S
        elif key in _ENUMS and value is not None:
            values[key] = _ENUMS[key](value)
        else:
            values[key] = value
    return values
