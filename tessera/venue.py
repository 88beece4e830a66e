"""The venue file: a JSON document describing sections, rows, seats, ranks and price tiers.

`load_venue` checks a document twice: msgspec enforces the shape and every bound while decoding,
then `Venue` checks what a schema cannot (unique ids, references that resolve, seat totals) and
precomputes one `SectionLayout` per section. Both kinds of failure raise `VenueError`, whose
message starts with the path of the offending value.

Within a section, seats are indexed 0..n-1 row by row, seat by seat, in document order; that index
is the bit position in the engine, the seat map and every delta. A seat's public id is
"<section>:<row>:<seat label>". See docs/venue-format.md.
"""

from __future__ import annotations

import os
import re
from array import array
from collections.abc import Mapping, Sequence
from typing import Annotated, Final, TypeAlias

import msgspec

import tessera_core
from tessera import limits

__all__ = [
    "PriceTier",
    "RowSpec",
    "SectionLayout",
    "SectionSpec",
    "Venue",
    "VenueError",
    "VenueSpec",
    "dump_venue",
    "load_venue",
    "load_venue_file",
    "new_event_seats",
]

# Ids end up in URLs, log lines and metric labels, so they keep to RFC 3986 "unreserved"
# characters; that also rules out ':', the seat id separator, whitespace and control characters.
# \Z rather than $: '$' also matches before a trailing newline.
ID_PATTERN: Final = r"\A[A-Za-z0-9._~-]+\Z"
# Names are free text for fans, but control characters in them would corrupt logs and terminals.
NAME_PATTERN: Final = r"\A[^\x00-\x1f\x7f-\x9f]+\Z"
CURRENCY_PATTERN: Final = r"\A[A-Z]{3}\Z"

Id: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.venue_id_chars_max, pattern=ID_PATTERN)
]
Name: TypeAlias = Annotated[
    str, msgspec.Meta(min_length=1, max_length=limits.venue_name_chars_max, pattern=NAME_PATTERN)
]
Currency: TypeAlias = Annotated[str, msgspec.Meta(pattern=CURRENCY_PATTERN)]
SeatCount: TypeAlias = Annotated[int, msgspec.Meta(ge=1, le=limits.row_seats_max)]
Rank: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=limits.row_rank_max)]
PriceMinor: TypeAlias = Annotated[int, msgspec.Meta(ge=0, le=limits.price_minor_max)]
Labels: TypeAlias = Annotated[list[Id], msgspec.Meta(min_length=1, max_length=limits.row_seats_max)]
LabelList: TypeAlias = Annotated[list[Id], msgspec.Meta(max_length=limits.row_seats_max)]
TierOverrides: TypeAlias = Annotated[dict[Id, Id], msgspec.Meta(max_length=limits.row_seats_max)]

_PATTERN_HINTS: Final = {
    ID_PATTERN: (
        f"an id of 1-{limits.venue_id_chars_max} characters from A-Z a-z 0-9 . _ ~ - "
        "(no ':', spaces or control characters)"
    ),
    NAME_PATTERN: "a name without control characters",
    CURRENCY_PATTERN: "a 3-letter upper-case ISO 4217 currency code",
}


class VenueError(ValueError):
    """A venue document, or a seat id looked up in it, is invalid; the message names the path."""


class PriceTier(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    id: Id
    name: Name
    price_minor: PriceMinor
    currency: Currency


class RowSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    id: Id
    seats: SeatCount
    rank: Rank
    labels: Labels | None = None
    price_tier: Id | None = None
    seat_price_tiers: TierOverrides = {}
    blocked: LabelList = []


class SectionSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True):
    id: Id
    name: Name
    rows: Annotated[list[RowSpec], msgspec.Meta(min_length=1, max_length=limits.section_rows_max)]


class VenueSpec(
    msgspec.Struct, forbid_unknown_fields=True, frozen=True, omit_defaults=True, kw_only=True
):
    name: Name
    price_tiers: Annotated[
        list[PriceTier], msgspec.Meta(max_length=limits.venue_price_tiers_max)
    ] = []
    sections: Annotated[
        list[SectionSpec], msgspec.Meta(min_length=1, max_length=limits.event_sections_max)
    ]


_decoder: Final = msgspec.json.Decoder(VenueSpec)
_MSGSPEC_PATH: Final = re.compile(
    r"(?P<message>.*) - at `(?P<key>key` in `)?\$(?P<path>[^`]*)`", re.DOTALL
)
_encoder: Final = msgspec.json.Encoder()


def _clip(text: str) -> str:
    """Quote a caller-supplied string for an error message without echoing megabytes of it."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def _from_msgspec(exc: msgspec.MsgspecError) -> VenueError:
    """Turn "Expected ... - at `$.sections[0].id`" into "sections[0].id: Expected ..."."""
    message, path = str(exc), "venue"
    found = _MSGSPEC_PATH.fullmatch(message)
    if found is not None:
        message = found["message"]
        path = found["path"].lstrip(".") or path
        if found["key"]:
            path += " (a key)"
    for pattern, hint in _PATTERN_HINTS.items():
        message = message.replace(f"`str` matching regex {pattern!r}", hint)
    return VenueError(f"{path}: {message}")


def _default_offset(label: str, seats: int) -> int | None:
    """Offset of a default label ("1".."n") in its row; only the canonical spelling counts."""
    # isdigit() alone would accept "٣", int() would accept "+3", " 3" and "0_3", and the length
    # check keeps int() off huge strings passed to seat_index((row, label)).
    if len(label) > len(str(seats)) or not (label.isascii() and label.isdigit()) or label[0] == "0":
        return None
    number = int(label)
    return number - 1 if number <= seats else None


class _RowIndex:
    """Label <-> offset for one row; default labels need no table at all."""

    __slots__ = ("labels", "offsets", "seats")

    def __init__(self, row: RowSpec) -> None:
        self.seats = row.seats
        self.labels: tuple[str, ...] | None = None
        self.offsets: dict[str, int] | None = None
        if row.labels is not None:
            self.labels = tuple(row.labels)
            self.offsets = {label: offset for offset, label in enumerate(row.labels)}

    def offset(self, label: str) -> int | None:
        if self.offsets is None:
            return _default_offset(label, self.seats)
        return self.offsets.get(label)

    def offset_of_known(self, label: str) -> int:
        offset = self.offset(label)
        assert offset is not None, "label was checked by _check_row"
        return offset

    def label(self, offset: int) -> str:
        return str(offset + 1) if self.labels is None else self.labels[offset]


def _check_row(row: RowSpec, path: str, index: _RowIndex, tier_ids: Mapping[str, int]) -> None:
    if row.labels is not None:
        if len(row.labels) != row.seats:
            raise VenueError(
                f"{path}.labels: {len(row.labels)} labels for {row.seats} seats; "
                "a row needs exactly one label per seat"
            )
        if index.offsets is not None and len(index.offsets) != row.seats:
            seen: set[str] = set()
            for offset, label in enumerate(row.labels):
                if label in seen:
                    raise VenueError(f"{path}.labels[{offset}]: duplicate seat label {label!r}")
                seen.add(label)
    if row.price_tier is not None and row.price_tier not in tier_ids:
        raise VenueError(f"{path}.price_tier: unknown price tier {_clip(row.price_tier)}")
    for label, tier in row.seat_price_tiers.items():
        if index.offset(label) is None:
            raise VenueError(f"{path}.seat_price_tiers: unknown seat label {_clip(label)}")
        if tier not in tier_ids:
            raise VenueError(f"{path}.seat_price_tiers[{label!r}]: unknown price tier {tier!r}")
    blocked: set[str] = set()
    for label in row.blocked:
        if index.offset(label) is None:
            raise VenueError(f"{path}.blocked: unknown seat label {_clip(label)}")
        if label in blocked:
            raise VenueError(f"{path}.blocked: seat label {label!r} is listed twice")
        blocked.add(label)


class SectionLayout:
    """One section, precomputed: row geometry, blocked seats, and O(1) seat id <-> index."""

    __slots__ = (
        "_row_index",
        "_row_of_seat",
        "_rows",
        "_tier_overrides",
        "blocked_indices",
        "name",
        "row_ids",
        "row_lengths",
        "row_price_tiers",
        "row_ranks",
        "row_starts",
        "seat_count",
        "section_id",
    )

    def __init__(self, section: SectionSpec, path: str, tier_ids: Mapping[str, int]) -> None:
        self.section_id: str = section.id
        self.name: str = section.name
        self.row_ids: tuple[str, ...] = tuple(row.id for row in section.rows)
        self.row_lengths: tuple[int, ...] = tuple(row.seats for row in section.rows)
        self.row_ranks: tuple[int, ...] = tuple(row.rank for row in section.rows)
        self.row_price_tiers: tuple[str | None, ...] = tuple(r.price_tier for r in section.rows)
        self.seat_count: int = sum(self.row_lengths)
        if self.seat_count > limits.section_seats_max:
            raise VenueError(
                f"{path}: {self.seat_count} seats; a section holds at most "
                f"{limits.section_seats_max}"
            )
        self._row_index: dict[str, int] = {}
        for number, row_id in enumerate(self.row_ids):
            first = self._row_index.setdefault(row_id, number)
            if first != number:
                raise VenueError(
                    f"{path}.rows[{number}].id: duplicate row id {row_id!r}"
                    f" (first at rows[{first}])"
                )
        self._rows = tuple(_RowIndex(row) for row in section.rows)
        starts = [0]
        for length in self.row_lengths[:-1]:
            starts.append(starts[-1] + length)
        self.row_starts: tuple[int, ...] = tuple(starts)
        # Two bytes per seat buy an O(1) index -> row step (rows <= 4096 fit in 'H').
        self._row_of_seat = array("H")
        for number, length in enumerate(self.row_lengths):
            self._row_of_seat.extend([number] * length)
        self._tier_overrides: list[dict[int, str] | None] = []
        blocked: list[int] = []
        for number, row in enumerate(section.rows):
            self._index_row(number, row, f"{path}.rows[{number}]", tier_ids, blocked)
        self.blocked_indices: tuple[int, ...] = tuple(sorted(blocked))

    def _index_row(
        self,
        number: int,
        row: RowSpec,
        path: str,
        tier_ids: Mapping[str, int],
        blocked: list[int],
    ) -> None:
        index = self._rows[number]
        _check_row(row, path, index, tier_ids)
        overrides = {index.offset_of_known(k): v for k, v in row.seat_price_tiers.items()}
        self._tier_overrides.append(overrides or None)
        start = self.row_starts[number]
        blocked.extend(start + index.offset_of_known(label) for label in row.blocked)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.seat_count:
            raise VenueError(
                f"seat index {index} is outside section {self.section_id!r} "
                f"(0..{self.seat_count - 1})"
            )

    def row_of(self, index: int) -> int:
        """The row number (position in `row_ids`) holding seat `index`."""
        self._check_index(index)
        return self._row_of_seat[index]

    def seat_id(self, index: int) -> str:
        """Public id "<section>:<row>:<label>" of seat `index`."""
        row = self.row_of(index)
        label = self._rows[row].label(index - self.row_starts[row])
        return f"{self.section_id}:{self.row_ids[row]}:{label}"

    def seat_index(self, seat: str | tuple[str, str]) -> int:
        """Seat index of a public seat id of this section, or of a (row id, seat label) pair."""
        if isinstance(seat, str):
            parts = seat.split(":") if len(seat) <= limits.seat_id_chars_max else ()
            if len(parts) != 3 or parts[0] != self.section_id:
                raise VenueError(f"unknown seat id {_clip(seat)} in section {self.section_id!r}")
            row_id, label = parts[1], parts[2]
        else:
            row_id, label = seat
        row = self._row_index.get(row_id)
        offset = None if row is None else self._rows[row].offset(label)
        if row is None or offset is None:
            raise VenueError(
                f"unknown seat {_clip(row_id)}:{_clip(label)} in section {self.section_id!r}"
            )
        return self.row_starts[row] + offset

    def price_tier(self, index: int) -> str | None:
        """Price tier id of seat `index`: its override, else its row's tier, else None."""
        row = self.row_of(index)
        overrides = self._tier_overrides[row]
        default = self.row_price_tiers[row]
        if overrides is None:
            return default
        return overrides.get(index - self.row_starts[row], default)

    def __repr__(self) -> str:
        return (
            f"SectionLayout({self.section_id!r}, rows={len(self.row_ids)}, "
            f"seats={self.seat_count}, blocked={len(self.blocked_indices)})"
        )


class Venue:
    """A validated venue: the document (`spec`) plus one precomputed layout per section.

    `Venue(spec)` re-checks every bound of a spec built in Python (msgspec only enforces them
    while decoding); `load_venue` skips that second pass for documents it just decoded.
    """

    __slots__ = ("_by_section", "layouts", "name", "price_tiers", "seat_count", "spec")

    def __init__(self, spec: VenueSpec) -> None:
        try:
            spec = _decoder.decode(_encoder.encode(spec))
        except msgspec.MsgspecError as exc:
            raise _from_msgspec(exc) from None
        self._build(spec)

    @classmethod
    def _from_decoded(cls, spec: VenueSpec) -> Venue:
        venue = cls.__new__(cls)
        venue._build(spec)
        return venue

    def _build(self, spec: VenueSpec) -> None:
        self.spec: VenueSpec = spec
        self.name: str = spec.name
        tier_ids: dict[str, int] = {}
        for number, tier in enumerate(spec.price_tiers):
            first = tier_ids.setdefault(tier.id, number)
            if first != number:
                raise VenueError(
                    f"price_tiers[{number}].id: duplicate price tier id {tier.id!r} "
                    f"(first at price_tiers[{first}])"
                )
        self.price_tiers: Mapping[str, PriceTier] = {tier.id: tier for tier in spec.price_tiers}
        # Check the total before building anything proportional to it.
        total = sum(row.seats for section in spec.sections for row in section.rows)
        if total > limits.venue_seats_max:
            raise VenueError(
                f"sections: {total} seats; a venue holds at most {limits.venue_seats_max}"
            )
        self._by_section: dict[str, SectionLayout] = {}
        layouts: list[SectionLayout] = []
        for number, section in enumerate(spec.sections):
            if section.id in self._by_section:
                raise VenueError(f"sections[{number}].id: duplicate section id {section.id!r}")
            layout = SectionLayout(section, f"sections[{number}]", tier_ids)
            self._by_section[section.id] = layout
            layouts.append(layout)
        self.layouts: tuple[SectionLayout, ...] = tuple(layouts)
        self.seat_count: int = total

    def section(self, section_id: str) -> SectionLayout:
        """The layout of section `section_id`."""
        layout = self._by_section.get(section_id)
        if layout is None:
            raise VenueError(f"unknown section {_clip(section_id)}")
        return layout

    def locate(self, seat_id: str) -> tuple[SectionLayout, int]:
        """Section layout and seat index of a public seat id "<section>:<row>:<label>"."""
        section_id, sep, _ = seat_id.partition(":")
        layout = self._by_section.get(section_id) if sep else None
        if layout is None:
            raise VenueError(f"unknown seat id {_clip(seat_id)}")
        return layout, layout.seat_index(seat_id)

    @property
    def blocked_count(self) -> int:
        return sum(len(layout.blocked_indices) for layout in self.layouts)

    @property
    def row_count(self) -> int:
        return sum(len(layout.row_ids) for layout in self.layouts)

    def __repr__(self) -> str:
        return f"Venue({self.name!r}, sections={len(self.layouts)}, seats={self.seat_count})"


def load_venue(data: bytes) -> Venue:
    """Decode and validate a venue document; raises `VenueError`."""
    if len(data) > limits.venue_file_bytes_max:
        raise VenueError(
            f"venue: document is {len(data)} bytes; the limit is {limits.venue_file_bytes_max}"
        )
    try:
        spec = _decoder.decode(data)
    except msgspec.MsgspecError as exc:
        raise _from_msgspec(exc) from None
    return Venue._from_decoded(spec)


def load_venue_file(path: str | os.PathLike[str]) -> Venue:
    """`load_venue` on a file; reads at most one byte past the limit. OSError passes through."""
    with open(path, "rb") as file:
        data = file.read(limits.venue_file_bytes_max + 1)
    return load_venue(data)


_LINE_CHARS: Final = 100


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _pretty(value: object, indent: str, out: list[str]) -> None:
    """Append `value` as JSON, inline when it fits on a line or is a shallow object (a row).

    Every row and price tier takes one line: a 70,000-seat venue stays small and diffable.
    """
    compact = _encoder.encode(value).decode()
    list_of_containers = isinstance(value, list) and _depth(value) > 1
    if len(indent) + len(compact) <= _LINE_CHARS or (_depth(value) <= 2 and not list_of_containers):
        out.append(compact)
        return
    inner = indent + "  "
    items: Sequence[tuple[str, object]]
    if isinstance(value, dict):
        items = [(_encoder.encode(k).decode() + ": ", v) for k, v in value.items()]
        out.append("{\n")
    else:
        assert isinstance(value, list)
        items = [("", v) for v in value]
        out.append("[\n")
    for number, (prefix, item) in enumerate(items):
        out.append(inner + prefix)
        _pretty(item, inner, out)
        out.append(",\n" if number < len(items) - 1 else "\n")
    out.append(indent + ("}" if isinstance(value, dict) else "]"))


def dump_venue(venue: Venue) -> bytes:
    """The venue document as JSON; `load_venue(dump_venue(v)).spec == v.spec`."""
    out: list[str] = []
    _pretty(msgspec.to_builtins(venue.spec), "", out)
    out.append("\n")
    return "".join(out).encode()


def new_event_seats(venue: Venue) -> tessera_core.EventSeats:
    """The seat engine for a fresh event at `venue`: one section per venue section, in venue
    order (that order is the section index everywhere), with the venue's blocked seats blocked."""
    seats = tessera_core.EventSeats(
        [(layout.row_lengths, layout.row_ranks) for layout in venue.layouts]
    )
    for position, layout in enumerate(venue.layouts):
        if layout.blocked_indices:
            seats.block(position, layout.blocked_indices)
    return seats
