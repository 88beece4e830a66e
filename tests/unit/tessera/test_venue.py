"""The venue file format: every validation rule, the layouts, lookups and dump/load round trips."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import msgspec
import pytest
from hypothesis import given, settings

import tessera_core
from tessera import limits
from tessera.venue import (
    PriceTier,
    RowSpec,
    SectionSpec,
    Venue,
    VenueError,
    VenueSpec,
    dump_venue,
    load_venue,
    load_venue_file,
    new_event_seats,
)

EXAMPLES = Path(__file__).resolve().parents[3] / "tessera_ops" / "venues"
STADIUM = EXAMPLES / "stadium-70k.json"
THEATRE = EXAMPLES / "theatre-500.json"


def row(**fields: Any) -> dict[str, Any]:
    return {"id": "A", "seats": 4, "rank": 0, **fields}


def section(rows: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    return {"id": "101", "name": "Lower 101", "rows": rows or [row()], **fields}


def tier(**fields: Any) -> dict[str, Any]:
    return {"id": "P1", "name": "Floor", "price_minor": 25_000, "currency": "USD", **fields}


def venue_doc(
    sections: list[dict[str, Any]] | None = None,
    tiers: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    return {
        "name": "Test Venue",
        "price_tiers": [tier()] if tiers is None else tiers,
        "sections": sections or [section()],
        **fields,
    }


def encode(doc: dict[str, Any]) -> bytes:
    return msgspec.json.encode(doc)


def rejected(doc: dict[str, Any] | bytes) -> str:
    data = doc if isinstance(doc, bytes) else encode(doc)
    with pytest.raises(VenueError) as info:
        load_venue(data)
    return str(info.value)


@pytest.fixture(scope="module")
def stadium() -> Venue:
    return load_venue_file(STADIUM)


@pytest.fixture(scope="module")
def theatre() -> Venue:
    return load_venue_file(THEATRE)


# --- the shipped examples ---


def test_stadium_example_has_exactly_70000_seats_in_realistic_rows(stadium: Venue) -> None:
    assert stadium.seat_count == 70_000
    assert sum(layout.seat_count for layout in stadium.layouts) == 70_000
    assert 90 <= len(stadium.layouts) <= 110
    lengths = [n for layout in stadium.layouts for n in layout.row_lengths]
    assert min(lengths) >= 18
    assert max(lengths) <= 40
    assert stadium.row_count == len(lengths)
    assert stadium.blocked_count > 0


def test_theatre_example_has_exactly_500_seats(theatre: Venue) -> None:
    assert theatre.seat_count == 500
    assert [layout.section_id for layout in theatre.layouts] == ["ORCH", "MEZZ", "BALC"]
    assert all(18 <= n <= 40 for layout in theatre.layouts for n in layout.row_lengths)
    assert theatre.blocked_count > 0


@pytest.mark.parametrize("path", [STADIUM, THEATRE], ids=lambda p: p.name)
def test_examples_are_in_canonical_dump_form(path: Path) -> None:
    data = path.read_bytes()
    assert dump_venue(load_venue(data)) == data


# --- layouts and lookups ---


def test_default_labels_blocked_seats_and_price_tiers() -> None:
    doc = venue_doc(
        tiers=[tier(), tier(id="P2", name="Side", price_minor=100)],
        sections=[
            section(
                [
                    row(seats=24, rank=1, price_tier="P1", seat_price_tiers={"5": "P2"},
                        blocked=["3", "4"]),
                    row(id="B", seats=3, rank=1, labels=["x", "y", "z"], blocked=["z"]),
                ]
            )
        ],
    )  # fmt: skip
    venue = load_venue(encode(doc))
    (layout,) = venue.layouts
    assert layout.section_id == "101"
    assert layout.row_ids == ("A", "B")
    assert layout.row_lengths == (24, 3)
    assert layout.row_ranks == (1, 1)
    assert layout.row_starts == (0, 24)
    assert layout.seat_count == venue.seat_count == 27
    assert layout.blocked_indices == (2, 3, 26)
    assert [layout.seat_id(i) for i in (0, 23, 24, 26)] == [
        "101:A:1",
        "101:A:24",
        "101:B:x",
        "101:B:z",
    ]
    assert layout.seat_index(("B", "y")) == 25
    assert layout.price_tier(4) == "P2"
    assert layout.price_tier(3) == "P1"
    assert layout.price_tier(25) is None
    assert venue.price_tiers["P2"].price_minor == 100


def test_a_venue_may_have_no_price_tiers() -> None:
    venue = load_venue(encode(venue_doc(tiers=[])))
    assert venue.layouts[0].price_tier(0) is None


@pytest.mark.parametrize("fixture", ["stadium", "theatre"])
def test_seat_id_and_seat_index_round_trip_over_every_seat(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    venue: Venue = request.getfixturevalue(fixture)
    seen: set[str] = set()
    for layout in venue.layouts:
        assert venue.section(layout.section_id) is layout
        for index in range(layout.seat_count):
            seat_id = layout.seat_id(index)
            assert layout.seat_index(seat_id) == index
            assert venue.locate(seat_id) == (layout, index)
            _, row_id, label = seat_id.split(":")
            assert layout.seat_index((row_id, label)) == index
            seen.add(seat_id)
    assert len(seen) == venue.seat_count


def test_blocked_indices_point_at_the_blocked_labels(stadium: Venue) -> None:
    for layout, spec in zip(stadium.layouts, stadium.spec.sections, strict=True):
        expected = sorted(
            layout.seat_index((r.id, label)) for r in spec.rows for label in r.blocked
        )
        assert list(layout.blocked_indices) == expected


@pytest.mark.parametrize(
    "seat",
    [
        "101:A:0",  # default labels start at 1
        "101:A:5",  # row A has 4 seats
        "101:A:01",  # only the canonical spelling of a default label
        "101:A:+1",
        "101:A:\u0661",  # ARABIC-INDIC DIGIT ONE: int() accepts it, labels must not
        "101:A: 1",
        "101:B:1",
        "102:A:1",
        "101:A",
        "101:A:1:1",
        "",
        "101:A:" + "1" * 1000,
        ("B", "1"),
        ("A", "x"),
        ("A", "1" * 100_000),
    ],
)
def test_unknown_seats_raise_venue_error(seat: str | tuple[str, str]) -> None:
    layout = load_venue(encode(venue_doc())).layouts[0]
    with pytest.raises(VenueError, match="unknown seat"):
        layout.seat_index(seat)


def test_unknown_sections_and_out_of_range_indices_raise_venue_error() -> None:
    venue = load_venue(encode(venue_doc()))
    layout = venue.layouts[0]
    for bad_id in ("102:A:1", "nothing", "", ":A:1"):
        with pytest.raises(VenueError, match="unknown seat id"):
            venue.locate(bad_id)
    with pytest.raises(VenueError, match="unknown section"):
        venue.section("102")
    for index in (-1, 4):
        with pytest.raises(VenueError, match="outside section"):
            layout.seat_id(index)
        with pytest.raises(VenueError, match="outside section"):
            layout.price_tier(index)


# --- validation: one test per rule ---

LONG_ID = "X" * (limits.venue_id_chars_max + 1)
LONG_NAME = "n" * (limits.venue_name_chars_max + 1)
MANY_TIERS = [tier(id=f"T{i}") for i in range(limits.venue_price_tiers_max + 1)]

# (test id, document, expected message prefix or pattern)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("unknown top-level field", venue_doc(capacity=1), r"venue: .*unknown field `capacity`"),
    ("unknown row field", venue_doc([section([row(seat=4)])]),
     r"sections\[0\]\.rows\[0\]: .*unknown field `seat`"),
    ("unknown tier field", venue_doc(tiers=[tier(vat=0)]), r"price_tiers\[0\]: .*unknown field"),
    ("missing sections", {"name": "x"}, r"venue: .*missing required field `sections`"),
    ("missing rank", venue_doc([section([{"id": "A", "seats": 4}])]),
     r"sections\[0\]\.rows\[0\]: .*`rank`"),
    ("empty sections", venue_doc(sections=[]) | {"sections": []}, r"sections: .*length >= 1"),
    ("empty rows", venue_doc([section() | {"rows": []}]), r"sections\[0\]\.rows: .*length >= 1"),
    ("over-long seat label", venue_doc([section([row(seats=1, labels=[LONG_ID])])]),
     r"sections\[0\]\.rows\[0\]\.labels\[0\]: .*length <= 32"),
    ("over-long section id", venue_doc([section(id=LONG_ID)]), r"sections\[0\]\.id: .*<= 32"),
    ("over-long name", venue_doc(name=LONG_NAME), r"name: .*length <= 128"),
    ("empty row id", venue_doc([section([row(id="")])]), r"sections\[0\]\.rows\[0\]\.id: "),
    ("colon in section id", venue_doc([section(id="1:01")]), r"sections\[0\]\.id: .*no ':'"),
    ("colon in row id", venue_doc([section([row(id="A:B")])]),
     r"sections\[0\]\.rows\[0\]\.id: .*no ':'"),
    ("colon in seat label", venue_doc([section([row(seats=2, labels=["1", "2:"])])]),
     r"sections\[0\]\.rows\[0\]\.labels\[1\]: .*no ':'"),
    ("colon in override key", venue_doc([section([row(seat_price_tiers={"1:": "P1"})])]),
     r"sections\[0\]\.rows\[0\]\.seat_price_tiers \(a key\): .*no ':'"),
    ("colon in tier id", venue_doc(tiers=[tier(id="P:1")]), r"price_tiers\[0\]\.id: .*no ':'"),
    ("space in id", venue_doc([section(id="10 1")]), r"sections\[0\]\.id: .*no ':', spaces"),
    ("trailing newline in id", venue_doc([section(id="101\n")]), r"sections\[0\]\.id: "),
    ("control character in id", venue_doc([section([row(id="A\x00")])]), r"sections\[0\]\.rows\[0\]\.id: "),
    ("control character in name", venue_doc([section(name="Lower\n101")]),
     r"sections\[0\]\.name: .*control characters"),
    ("duplicate section id", venue_doc([section(), section(name="again")]),
     r"sections\[1\]\.id: duplicate section id '101'"),
    ("duplicate row id", venue_doc([section([row(), row(id="B"), row()])]),
     r"sections\[0\]\.rows\[2\]\.id: duplicate row id 'A' \(first at rows\[0\]\)"),
    ("duplicate seat label", venue_doc([section([row(seats=3, labels=["1", "2", "1"])])]),
     r"sections\[0\]\.rows\[0\]\.labels\[2\]: duplicate seat label '1'"),
    ("duplicate tier id", venue_doc(tiers=[tier(), tier(name="other")]),
     r"price_tiers\[1\]\.id: duplicate price tier id 'P1'"),
    ("labels shorter than seats", venue_doc([section([row(seats=3, labels=["1", "2"])])]),
     r"sections\[0\]\.rows\[0\]\.labels: 2 labels for 3 seats"),
    ("dangling row tier", venue_doc([section([row(price_tier="P9")])]),
     r"sections\[0\]\.rows\[0\]\.price_tier: unknown price tier 'P9'"),
    ("dangling override tier", venue_doc([section([row(seat_price_tiers={"2": "P9"})])]),
     r"sections\[0\]\.rows\[0\]\.seat_price_tiers\['2'\]: unknown price tier 'P9'"),
    ("override of unknown seat", venue_doc([section([row(seat_price_tiers={"9": "P1"})])]),
     r"sections\[0\]\.rows\[0\]\.seat_price_tiers: unknown seat label '9'"),
    ("blocked label not in row", venue_doc([section([row(), row(id="B", blocked=["99"])])]),
     r"sections\[0\]\.rows\[1\]\.blocked: unknown seat label '99'"),
    ("blocked non-canonical label", venue_doc([section([row(blocked=["01"])])]),
     r"sections\[0\]\.rows\[0\]\.blocked: unknown seat label '01'"),
    ("blocked label of explicit labels", venue_doc([section([row(seats=1, labels=["x"],
                                                                  blocked=["1"])])]),
     r"sections\[0\]\.rows\[0\]\.blocked: unknown seat label '1'"),
    ("blocked twice", venue_doc([section([row(blocked=["2", "2"])])]),
     r"sections\[0\]\.rows\[0\]\.blocked: seat label '2' is listed twice"),
    ("seats as a string", venue_doc([section([row(seats="4")])]),
     r"sections\[0\]\.rows\[0\]\.seats: Expected `int`, got `str`"),
    ("fractional rank", venue_doc([section([row(rank=1.5)])]),
     r"sections\[0\]\.rows\[0\]\.rank: Expected `int`, got `float`"),
    ("name as a number", venue_doc(name=5), r"name: Expected `str`, got `int`"),
    ("sections as an object", venue_doc() | {"sections": {}},
     r"sections: Expected `array`, got `object`"),
    ("labels as a string", venue_doc([section([row(labels="1234")])]),
     r"sections\[0\]\.rows\[0\]\.labels: Expected `array \| null`, got `str`"),
    ("negative seat count", venue_doc([section([row(seats=-1)])]),
     r"sections\[0\]\.rows\[0\]\.seats: Expected `int` >= 1"),
    ("zero seats", venue_doc([section([row(seats=0)])]), r"sections\[0\]\.rows\[0\]\.seats: Expected `int` >= 1"),
    ("too many seats in a row", venue_doc([section([row(seats=limits.row_seats_max + 1)])]),
     r"sections\[0\]\.rows\[0\]\.seats: Expected `int` <= 4096"),
    ("negative rank", venue_doc([section([row(rank=-1)])]), r"sections\[0\]\.rows\[0\]\.rank: Expected `int` >= 0"),
    ("rank above the bound", venue_doc([section([row(rank=limits.row_rank_max + 1)])]),
     r"sections\[0\]\.rows\[0\]\.rank: Expected `int` <= 2147483647"),
    ("negative price", venue_doc(tiers=[tier(price_minor=-1)]),
     r"price_tiers\[0\]\.price_minor: Expected `int` >= 0"),
    ("price above the bound", venue_doc(tiers=[tier(price_minor=limits.price_minor_max + 1)]),
     r"price_tiers\[0\]\.price_minor: Expected `int` <= "),
    ("lower-case currency", venue_doc(tiers=[tier(currency="usd")]),
     r"price_tiers\[0\]\.currency: Expected a 3-letter upper-case ISO 4217 currency code"),
    ("four-letter currency", venue_doc(tiers=[tier(currency="USDT")]), r"price_tiers\[0\]\.currency: Expected a 3-letter"),
    ("too many price tiers", venue_doc(tiers=MANY_TIERS), r"price_tiers: .*length <= 256"),
    ("too many seats in a section",
     venue_doc([section([row(id=f"R{i}", seats=limits.row_seats_max) for i in range(17)])]),
     r"sections\[0\]: 69632 seats; a section holds at most 65536"),
    ("too many rows in a section",
     venue_doc([section([row(id=f"R{i}", seats=1) for i in range(limits.section_rows_max + 1)])]),
     r"sections\[0\]\.rows: .*length <= 4096"),
    ("too many sections",
     venue_doc([section(id=f"S{i}") for i in range(limits.event_sections_max + 1)]),
     r"sections: .*length <= 4096"),
    ("too many seats in the venue",
     venue_doc([section([row(id=f"R{r}", seats=4096) for r in range(16)], id=f"S{s}")
                for s in range(65)]),
     r"sections: 4259840 seats; a venue holds at most 4194304"),
    ("too many overrides",
     venue_doc([section([row(seat_price_tiers={str(i): "P1" for i in range(4097)})])]),
     r"sections\[0\]\.rows\[0\]\.seat_price_tiers: .*length <= 4096"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_documents_are_rejected_with_the_path(doc: dict[str, Any], expected: str) -> None:
    message = rejected(doc)
    assert re.match(expected, message), message


def test_the_documented_message_format() -> None:
    rows = [row(id=r) for r in "ABC"]
    rows[2] = row(id="C", blocked=["99"])
    sections = [section(id=f"S{i}") for i in range(3)] + [section(rows, id="S3")]
    assert rejected(venue_doc(sections)) == "sections[3].rows[2].blocked: unknown seat label '99'"


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"[]", b"null", b'{"name": "x", "sections": [}', b"\xff\xfe"],
    ids=["empty", "truncated", "array", "null", "malformed", "not utf-8"],
)
def test_malformed_documents_are_rejected(data: bytes) -> None:
    assert rejected(data).startswith("venue: ")


def test_oversize_document_is_rejected_before_decoding() -> None:
    data = encode(venue_doc())
    padded = data + b" " * (limits.venue_file_bytes_max + 1 - len(data))
    assert load_venue(padded[:-1]).seat_count == 4  # whitespace alone is fine up to the limit
    assert re.match(r"venue: document is \d+ bytes; the limit is \d+", rejected(padded))


def test_oversize_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    data = encode(venue_doc())
    path.write_bytes(data + b" " * (limits.venue_file_bytes_max + 1 - len(data)))
    with pytest.raises(VenueError, match="the limit is"):
        load_venue_file(path)


def test_missing_file_raises_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_venue_file(tmp_path / "nope.json")


def test_specs_built_in_python_are_checked_against_every_bound() -> None:
    """msgspec enforces Meta bounds only while decoding; Venue(spec) must not skip them."""
    good = RowSpec(id="A", seats=2, rank=0)
    with pytest.raises(VenueError, match=r"sections\[0\]\.rows\[0\]\.id: .*no ':'"):
        Venue(VenueSpec(name="v", sections=[SectionSpec(id="1", name="s", rows=[
            RowSpec(id="A:1", seats=2, rank=0)])]))  # fmt: skip
    with pytest.raises(VenueError, match=r"rows\[0\]\.seats: Expected `int` >= 1"):
        Venue(VenueSpec(name="v", sections=[SectionSpec(id="1", name="s", rows=[
            RowSpec(id="A", seats=0, rank=0)])]))  # fmt: skip
    with pytest.raises(VenueError, match="duplicate row id"):
        Venue(VenueSpec(name="v", sections=[SectionSpec(id="1", name="s", rows=[good, good])]))
    assert Venue(VenueSpec(name="v", sections=[SectionSpec(id="1", name="s", rows=[good])]))


# --- dump / load round trips ---

ID_CHARS = string.ascii_letters + string.digits + "._~-"
ids = st.text(alphabet=ID_CHARS, min_size=1, max_size=limits.venue_id_chars_max)
names = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")),
    min_size=1,
    max_size=limits.venue_name_chars_max,
)


@st.composite
def rows_of(draw: st.DrawFn, row_id: str, tier_ids: list[str]) -> RowSpec:
    seats = draw(st.integers(1, 8))
    labels = draw(st.none() | st.lists(ids, min_size=seats, max_size=seats, unique=True))
    effective = labels or [str(n + 1) for n in range(seats)]
    price_tier = draw(st.none() | st.sampled_from(tier_ids)) if tier_ids else None
    overrides: dict[str, str] = {}
    if tier_ids:
        overrides = draw(st.dictionaries(st.sampled_from(effective), st.sampled_from(tier_ids)))
    return RowSpec(
        id=row_id,
        seats=seats,
        rank=draw(st.integers(0, limits.row_rank_max)),
        labels=labels,
        price_tier=price_tier,
        seat_price_tiers=overrides,
        blocked=draw(st.lists(st.sampled_from(effective), unique=True)),
    )


@st.composite
def venue_specs(draw: st.DrawFn) -> VenueSpec:
    tier_ids = draw(st.lists(ids, max_size=3, unique=True))
    tiers = [
        PriceTier(
            id=tier_id,
            name=draw(names),
            price_minor=draw(st.integers(0, limits.price_minor_max)),
            currency=draw(st.from_regex(r"\A[A-Z]{3}\Z")),
        )
        for tier_id in tier_ids
    ]
    sections = [
        SectionSpec(
            id=section_id,
            name=draw(names),
            rows=[
                draw(rows_of(row_id, tier_ids))
                for row_id in draw(st.lists(ids, min_size=1, max_size=4, unique=True))
            ],
        )
        for section_id in draw(st.lists(ids, min_size=1, max_size=3, unique=True))
    ]
    return VenueSpec(name=draw(names), price_tiers=tiers, sections=sections)


@settings(max_examples=200, deadline=None)
@given(venue_specs())
def test_valid_venues_round_trip_through_dump_and_load(spec: VenueSpec) -> None:
    venue = Venue(spec)
    data = dump_venue(venue)
    again = load_venue(data)
    assert again.spec == spec
    assert dump_venue(again) == data
    assert json.loads(data) == msgspec.to_builtins(spec)  # plain JSON, readable by anything
    for layout, section_spec in zip(again.layouts, spec.sections, strict=True):
        assert layout.seat_count == sum(r.seats for r in section_spec.rows)
        assert len(layout.blocked_indices) == sum(len(r.blocked) for r in section_spec.rows)
        for index in range(layout.seat_count):
            assert again.locate(layout.seat_id(index)) == (layout, index)


def test_new_event_seats_mirrors_the_venue() -> None:
    venue = load_venue_file(STADIUM)
    seats = new_event_seats(venue)
    assert seats.section_count == len(venue.layouts)
    assert seats.section_seat_counts() == [layout.seat_count for layout in venue.layouts]
    assert seats.available_count == venue.seat_count - venue.blocked_count
    for position, layout in enumerate(venue.layouts):
        for index in layout.blocked_indices:
            assert seats.state(position, index) == tessera_core.SeatState.BLOCKED
