"""OpenAPI for handlers that decode and encode bytes themselves.

Every tier reads request bodies with its own strict msgspec decoders (its own error codes) and
answers pre-encoded bytes, so Litestar cannot see the shapes: left alone it documents no request
body, a `string` for every answer and a `400` body the tiers never send. `documented()` gives a
route decorator an `operation_class` whose schema names instead the msgspec types actually
decoded and encoded (msgspec's own JSON Schema of them), and the error body every tier sends for
every other status. tests/fuzz/ checks what the real processes answer against these documents.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
from litestar.openapi.spec import Operation

from tessera import limits
from tessera.media import JSON, SEATMAP

EVENT_STREAM: Final = "text/event-stream"

# `{"error": {"code", "message", ...details}}`: every tier's refusals (docs/api.md, Errors).
ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
    "additionalProperties": False,
}
BINARY_SCHEMA: Final[dict[str, Any]] = {"type": "string", "format": "binary"}
ANY_OBJECT: Final[dict[str, Any]] = {"type": "object"}


def json_schema(kind: Any) -> dict[str, Any]:
    """msgspec's JSON Schema of `kind` with its `$defs` inlined, so it stands alone inside an
    operation. The wire types are not recursive (a recursive one is refused)."""
    schema = msgspec.json.schema(kind)
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def inline(node: Any, seen: frozenset[str]) -> Any:
        if isinstance(node, list):
            return [inline(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen:
                raise ValueError(f"{name} is recursive: it cannot be inlined")
            rest = {key: inline(value, seen) for key, value in node.items() if key != "$ref"}
            return {**inline(definitions[name], seen | {name}), **rest}
        return {key: inline(value, seen) for key, value in node.items()}

    result: dict[str, Any] = inline(schema, frozenset())
    return result


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented answer: its body by media type (a msgspec type or a raw JSON Schema), or
    none (`204`)."""

    description: str
    content: Mapping[str, Any] | None = None

    @classmethod
    def json(cls, description: str, kind: Any) -> Answer:
        return cls(description, {JSON: kind})

    def to_schema(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"description": self.description}
        if self.content is not None:
            answer["content"] = {
                media_type: {"schema": _schema_of(body)}
                for media_type, body in self.content.items()
            }
        return answer


def _schema_of(body: Any) -> dict[str, Any]:
    return copy.deepcopy(body) if isinstance(body, dict) else json_schema(body)


@dataclass(frozen=True, slots=True)
class Header:
    """A request header an operation reads (Litestar sees only those in a handler's signature)."""

    name: str
    description: str
    required: bool = False
    pattern: str | None = None

    def to_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "string"}
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        return {
            "name": self.name,
            "in": "header",
            "required": self.required,
            "description": self.description,
            "schema": schema,
        }


IDEMPOTENCY_KEY: Final = Header(
    "Idempotency-Key",
    "Scoped per fan, kept 24 h: a retry with the same key replays the first answer (docs/api.md)",
    required=True,
    pattern=rf"^[A-Za-z0-9._:~+/=-]{{1,{limits.idempotency_key_chars_max}}}$",
)
ADMISSION_TOKEN: Final = Header(
    "X-Admission-Token",
    "From a queue ticket, when the event's waiting room is on (docs/edge-waiting-room.md)",
)
LAST_EVENT_ID: Final = Header(
    "Last-Event-ID",
    "The `id:` of the last event seen: a reconnecting client gets the changes since",
)
IF_NONE_MATCH: Final = Header("If-None-Match", "An ETag held: 304 when it is still current")


ERROR_ANSWER: Final = Answer(
    'Refused: `{"error": {"code", "message", ...details}}` (docs/api.md, Errors)',
    {JSON: ERROR_SCHEMA},
)


def documented(
    answers: Mapping[int, Answer],
    *,
    body: Any = None,
    body_required: bool = True,
    headers: Sequence[Header] = (),
) -> type[Operation]:
    """An `operation_class` documenting `answers` (by status; any other status is the error
    body), the request `headers` read and, when given, the JSON request `body` (a msgspec
    type)."""
    responses = {str(status): answer.to_schema() for status, answer in answers.items()}
    responses["default"] = ERROR_ANSWER.to_schema()
    request_body = None
    if body is not None:
        request_body = {"required": body_required, "content": {JSON: {"schema": json_schema(body)}}}

    class DocumentedOperation(Operation):
        def to_schema(self) -> dict[str, Any]:
            schema = super().to_schema()
            schema["responses"] = copy.deepcopy(responses)
            if headers:
                parameters = schema.setdefault("parameters", [])
                parameters.extend(header.to_schema() for header in headers)
            if request_body is not None:
                schema["requestBody"] = copy.deepcopy(request_body)
            return schema

    return DocumentedOperation


# --- wire shapes their tiers build as plain dicts, described here for the documents ---


class SectionAvailability(msgspec.Struct):
    section_id: str
    version: int
    available: list[str]


class SeatMapJson(msgspec.Struct):
    """`GET .../seatmap?format=json` (regional/state.py `json_view`; the edge passes it on)."""

    event_id: uuid.UUID
    sections: list[SectionAvailability]


class PriceTierDocument(msgspec.Struct):
    id: str
    name: str
    price: int
    currency: str


class RowDocument(msgspec.Struct):
    row_id: str
    rank: int
    seats: list[str]
    price_tier: str | None  # the row's tier id (docs/venue-format.md)
    seat_price_tiers: dict[str, str] = {}  # seat label -> tier id, only where it differs


class SectionDocument(msgspec.Struct):
    section_id: str
    name: str
    rows: list[RowDocument]


class PresaleDocument(msgspec.Struct):
    """A presale wave as fans see it (docs/presales.md): never its codes nor its fans."""

    wave_id: str
    name: str
    starts_at: datetime
    ends_at: datetime
    per_user_limit: int
    section_ids: list[str]  # empty: every section
    code_required: bool  # false: the wave is for listed fans


class EventDocument(msgspec.Struct):
    """`GET /v1/events/{event_id}` (global_writer/runtime.py `event_view`; the edge caches it)."""

    event_id: uuid.UUID
    name: str
    status: Literal["scheduled", "onsale"]
    onsale_at: datetime
    hold_ttl_s: int
    per_user_limit: int
    home_region: str
    currency: str  # every tier's; amounts are in its minor unit
    currency_exponent: int  # ISO 4217 minor unit: amount / 10**exponent is the price
    price_tiers: list[PriceTierDocument]
    sections: list[SectionDocument]
    presales: list[PresaleDocument]  # by start; every wave ends by onsale_at
    active_presale: PresaleDocument | None  # the wave open now, if any


def seat_map(description: str) -> type[Operation]:
    """A seat map (binary by default, `?format=json` for the JSON view), with its ETag."""
    return documented(
        {
            200: Answer(description, {SEATMAP: BINARY_SCHEMA, JSON: SeatMapJson}),
            304: Answer("Not modified: the ETag in If-None-Match is current"),
        },
        headers=[IF_NONE_MATCH],
    )


class SnapshotFrame(msgspec.Struct):
    """`event: snapshot` data (regional/sse.py `snapshot_frame`)."""

    versions: list[int]
    sections: list[str]
    seatmap: str
    format: str


class SectionChange(msgspec.Struct):
    section_id: str
    version: int
    taken: list[str]
    freed: list[str]


class DeltaFrame(msgspec.Struct):
    """`event: delta` data (regional/sse.py `delta_frame`)."""

    sections: list[SectionChange]


def seat_stream_answer(description: str) -> Answer:
    """Server-Sent Events, each `event: snapshot` or `event: delta` with JSON data; the schema
    describes one event as schemathesis and OpenAPI 3.2 read a stream."""
    event = {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": ["snapshot", "delta"]},
            "id": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": JSON,
                "contentSchema": {"anyOf": [json_schema(SnapshotFrame), json_schema(DeltaFrame)]},
            },
        },
    }
    return Answer(description, {EVENT_STREAM: event})
