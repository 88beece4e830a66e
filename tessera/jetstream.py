"""JetStream streams and KV buckets, defined as data in `nats/jetstream/*.json`.

A definition file holds one JSON object whose `kind` says what it defines:

- `NAME.stream.json`, `{"kind": "stream", ...}`: a stream (`StreamDefinition`);
- `BUCKET.kv.json`, `{"kind": "kv", ...}`: a key-value bucket (`KvDefinition`).

`nats/README.md` documents every field. `load_definitions` reads and checks them (unknown fields,
bounds from `tessera.limits`, file name matching the name inside); `ensure_jetstream` creates
what is missing and updates what differs, so running it on every start is safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Final, Literal

import msgspec
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, NotFoundError

from tessera import limits

__all__ = [
    "DEFAULT_DIRECTORY",
    "Definition",
    "DefinitionError",
    "JetStreamSetupError",
    "KvDefinition",
    "StreamDefinition",
    "ensure_jetstream",
    "load_definitions",
]

# The project root's nats/jetstream (this file is <root>/tessera/jetstream.py). A wheel does not
# ship nats/: installed elsewhere, pass `directory` explicitly.
DEFAULT_DIRECTORY: Final = Path(__file__).resolve().parent.parent / "nats" / "jetstream"

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


Definition = StreamDefinition | KvDefinition

_decoder: Final[msgspec.json.Decoder[Definition]] = msgspec.json.Decoder(Definition)


def load_definitions(directory: Path | None = None) -> list[Definition]:
    """Every `*.json` definition in `directory` (default: the project's `nats/jetstream/`),
    sorted by file name."""
    folder = DEFAULT_DIRECTORY if directory is None else directory
    if not folder.is_dir():
        hint = (
            " (the nats/ folder lives in the source tree and is not part of an installed wheel; "
            "pass the directory explicitly)"
            if directory is None
            else ""
        )
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
    return definitions


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
    Settings the definitions do not cover are left as the server has them.
    """
    for definition in definitions:
        try:
            await _ensure_one(js, definition)
        except APIError as exc:
            raise JetStreamSetupError(
                f"{definition.file_name}: the server refused stream {definition.stream_name}: "
                f"{exc.description} (code {exc.err_code})"
            ) from exc


async def _ensure_one(js: JetStreamContext, definition: Definition) -> None:
    try:
        info = await js.stream_info(definition.stream_name)
    except NotFoundError:
        if isinstance(definition, StreamDefinition):
            await js.add_stream(_stream_config(definition))
        else:
            await js.create_key_value(_kv_config(definition))
        return
    existing = info.config
    wanted = _managed_settings(definition)
    current = {key: _normalise(key, getattr(existing, key)) for key in wanted}
    if current["storage"] != wanted["storage"]:
        raise JetStreamSetupError(
            f"{definition.file_name}: stream {definition.stream_name} exists with "
            f"{current['storage']} storage, the definition says {wanted['storage']}; storage "
            "cannot change in place (delete the stream, or change the definition back)"
        )
    if current == wanted:
        return
    changes = {key: value for key, value in wanted.items() if key != "storage"}
    if isinstance(definition, KvDefinition) and definition.ttl_s:
        # The server refuses a duplicate window longer than max_age (nats-py's create rule).
        window = _normalise("duplicate_window", existing.duplicate_window)
        changes["duplicate_window"] = min(_as_int(window), _as_int(wanted["max_age"]))
    await js.update_stream(existing.evolve(**_to_config_values(changes)))


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
    return {
        "storage": d.storage,
        "description": d.description or None,
        "max_msgs_per_subject": d.history,
        "max_msg_size": d.max_value_bytes,
        "max_bytes": d.max_bytes,
        "max_age": round(d.ttl_s * _NS_PER_S),
        "allow_direct": d.direct,
        "num_replicas": d.replicas,
    }


_DURATIONS: Final = frozenset({"duplicate_window", "max_age"})
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
    if key == "allow_direct":
        return bool(value)
    if key == "subjects":
        return list(value) if isinstance(value, list) else []
    return value


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
