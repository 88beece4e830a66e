"""The independent seat-map decoders (tessera/seatmap.py, edge/static/seatmap.mjs) against the Rust
encoder and strict decoder in tessera_core: same maps out, same inputs rejected."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

import tessera_core as tc
from tessera import seatmap as sm

ROOT = Path(__file__).resolve().parents[3]
JS_DECODER = ROOT / "edge" / "static" / "seatmap.mjs"
VERSION_MAX = 2**63 - 1  # what tessera_core.SeatMap accepts from Python
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

Outcome = tuple[str, Any]


# --- helpers -------------------------------------------------------------------------------


def reseal(framed: bytes) -> bytes:
    """`framed` (everything before the CRC) with a correct CRC, so the body parsers see it."""
    return framed + struct.pack("<I", zlib.crc32(framed))


def skip_varint(data: bytes, at: int) -> int:
    while data[at] & 0x80:
        at += 1
    return at + 1


def varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def section_body_at(encoded: bytes) -> int:
    """Offset of a section map's body tag: after the header, the seat count and the version."""
    return skip_varint(encoded, skip_varint(encoded, 5))


def from_bits(bits: list[bool]) -> bytes:
    value = sum(1 << i for i, bit in enumerate(bits) if bit)
    return value.to_bytes((len(bits) + 7) // 8, "little")


def seat_map(bits: list[bool], version: int = 0) -> tc.SeatMap:
    return tc.SeatMap(from_bits(bits), len(bits), version)


def alternating(run_lengths: list[int], n: int, start: bool = False) -> list[bool]:
    """`n` seats of alternating runs (cycled), starting with `start`."""
    bits: list[bool] = []
    value = start
    index = 0
    while len(bits) < n:
        bits += [value] * run_lengths[index % len(run_lengths)]
        value = not value
        index += 1
    return bits[:n]


def rust_outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except tc.VersionMismatch as error:
        return ("mismatch", (error.expected, error.actual))
    except tc.SeatMapError:
        return ("error", None)


def python_outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except sm.SeatMapFormatError as error:
        if error.expected is not None:
            return ("mismatch", (error.expected, error.actual))
        return ("error", str(error))


def view_rust(seat: tc.SeatMap) -> tuple[int, int, bytes]:
    return (seat.seat_count, seat.version, seat.bitmap())


def view_py(seat: sm.SectionMap) -> tuple[int, int, bytes]:
    return (seat.seat_count, seat.version, seat.bitmap)


# --- strategies ----------------------------------------------------------------------------


@st.composite
def availability(draw: st.DrawFn, n: int) -> list[bool]:
    """Random bits, long runs, all available, all sold, or groups sold out of a free section."""
    style = draw(st.sampled_from(["random", "runs", "all", "none", "groups"]))
    if style == "random":
        raw = draw(st.binary(min_size=(n + 7) // 8, max_size=(n + 7) // 8))
        return [bool(raw[i >> 3] >> (i & 7) & 1) for i in range(n)]
    if style == "runs":
        runs = draw(st.lists(st.integers(1, 600), min_size=1, max_size=30))
        return alternating(runs, n, draw(st.booleans()))
    if style in ("all", "none"):
        return [style == "all"] * n
    bits = [True] * n
    groups = st.lists(st.tuples(st.integers(0, n - 1), st.integers(1, 12)), max_size=60)
    for start, length in draw(groups):
        bits[start : start + length] = [False] * len(bits[start : start + length])
    return bits


@st.composite
def section_maps(draw: st.DrawFn, max_seats: int = 5000) -> tc.SeatMap:
    n = draw(st.integers(1, max_seats))
    return seat_map(draw(availability(n)), draw(st.integers(0, VERSION_MAX)))


# Maps built so the encoder must pick each body: tag -> bits.
FORCED_BODIES: dict[int, list[bool]] = {
    # Irregular bits: runs are longer than the bitmap, and deflate cannot shrink noise.
    0: [bit == "1" for bit in f"{random.Random(7).getrandbits(1000):01000b}"],
    # Three runs: 3 bytes of runs beat 250 bytes of bitmap, too small to deflate.
    1: alternating([300, 1200, 500], 2000),
    # A repeating irregular pattern: runs lose to the bitmap, which deflates well.
    2: alternating([1, 2, 1, 3, 2, 1, 1, 4], 4000),
    # Regular 20-seat runs: 250 bytes of runs beat 625 of bitmap, and deflate to almost nothing.
    3: alternating([20], 5000),
}


# --- section maps --------------------------------------------------------------------------


def test_constants_match_the_engine() -> None:
    assert sm.SECTION_SEATS_MAX == tc.SECTION_SEATS_MAX
    assert sm.EVENT_SECTIONS_MAX == tc.EVENT_SECTIONS_MAX
    assert sm.EVENT_SEATS_MAX == tc.EVENT_SEATS_MAX
    assert sm.SEATMAP_BYTES_MAX == tc.SEATMAP_BYTES_MAX
    assert sm.MEDIA_TYPE == "application/vnd.tessera.seatmap"


@pytest.mark.parametrize("tag", sorted(FORCED_BODIES))
def test_every_body_encoding_decodes_identically(tag: int) -> None:
    expected = seat_map(FORCED_BODIES[tag], version=41)
    encoded = expected.encode()
    assert encoded[section_body_at(encoded)] == tag
    decoded = sm.decode_section(encoded)
    assert view_py(decoded) == view_rust(expected) == view_rust(tc.SeatMap.decode(encoded))
    assert decoded.available_count == expected.available_count
    assert decoded.available_indices() == expected.available_indices()


@FAST
@given(section_maps())
def test_random_section_maps_decode_identically(expected: tc.SeatMap) -> None:
    decoded = sm.decode_section(expected.encode())
    assert view_py(decoded) == view_rust(expected)
    assert decoded.available_count == expected.available_count


def test_section_map_helpers() -> None:
    bits = [True, False, False, True, True, False, True, True, False, True, False]
    decoded = sm.decode_section(seat_map(bits, 3).encode())
    assert decoded.available() == bits
    assert [decoded.is_available(i) for i in range(len(bits))] == bits
    assert decoded.available_indices() == [i for i, bit in enumerate(bits) if bit]
    with pytest.raises(IndexError):
        decoded.is_available(len(bits))


def doc_example_payloads() -> list[bytes]:
    """The annotated hex blocks of the spec's "Worked examples": on each line, the bytes come
    before the first double space, the annotation after it."""
    text = (ROOT / "docs" / "seatmap-format.md").read_text()
    section = text.split("## Worked examples", 1)[1].split("\n## ", 1)[0]
    payloads = []
    for block in section.split("```")[1::2]:
        hex_bytes = []
        for line in block.splitlines():
            for token in line.split("  ", 1)[0].split():
                if len(token) != 2 or any(c not in "0123456789abcdef" for c in token):
                    break
                hex_bytes.append(token)
        payloads.append(bytes.fromhex("".join(hex_bytes)))
    return payloads


def test_the_worked_examples_in_the_spec_are_what_the_encoder_makes() -> None:
    section = tc.Section([10, 10])
    section.hold([0, 1, 2, 3])
    section.sell([0, 1, 2, 3])
    before = section.seat_map()
    section.hold([7, 12])
    after = section.seat_map()
    other = tc.SeatMap.all_available(5, 2)
    expected = [
        before.encode(),
        after.encode(),
        before.delta_to(after),
        tc.encode_event([after, other], include_versions=True),
    ]
    assert doc_example_payloads() == expected
    assert view_py(sm.decode_section(expected[0])) == (20, 2, bytes([0xF0, 0xFF, 0x0F]))


def test_decoders_accept_a_body_the_encoder_would_not_choose() -> None:
    # The raw body of an all-available map (the encoder picks runs): any valid body is a map.
    framed = b"TS\x01\x01\x00" + varint(20) + varint(9) + b"\x00" + b"\xff\xff\x0f"
    encoded = reseal(framed)
    assert view_py(sm.decode_section(encoded)) == view_rust(tc.SeatMap.decode(encoded))
    assert tc.SeatMap.decode(encoded) == tc.SeatMap.all_available(20, 9)


# --- event maps ----------------------------------------------------------------------------


@st.composite
def events(draw: st.DrawFn) -> list[tc.SeatMap]:
    counts = draw(st.lists(st.integers(1, 700), min_size=1, max_size=8))
    return [seat_map(draw(availability(n)), draw(st.integers(0, VERSION_MAX))) for n in counts]


@FAST
@given(events(), st.booleans())
def test_event_maps_decode_identically(maps: list[tc.SeatMap], with_versions: bool) -> None:
    counts = [m.seat_count for m in maps]
    encoded = tc.encode_event(maps, include_versions=with_versions)
    tag, versions, rust_maps = tc.decode_event(encoded, counts)
    decoded = sm.decode_event(encoded, counts)
    assert decoded.version_tag == tag == tc.version_tag([m.version for m in maps])
    assert decoded.version_tag == sm.version_tag(m.version for m in maps)
    if with_versions:
        assert decoded.versions == tuple(versions or ()) == tuple(m.version for m in maps)
    else:
        assert decoded.versions is None is versions
    assert [view_py(s) for s in decoded.sections] == [view_rust(m) for m in rust_maps]
    assert [s.bitmap for s in decoded.sections] == [m.bitmap() for m in maps]


def test_event_map_with_every_body_encoding() -> None:
    for tag, bits in FORCED_BODIES.items():
        maps = [seat_map(bits, 1), seat_map([True] * 3, 2)]
        encoded = tc.encode_event(maps, include_versions=True)
        at = skip_varint(encoded, skip_varint(encoded, 5)) + 4 + 8  # counts, hash, tag
        at = skip_varint(encoded, skip_varint(encoded, at))  # the two versions
        assert encoded[at] == tag
        decoded = sm.decode_event(encoded, [len(bits), 3])
        assert [s.bitmap for s in decoded.sections] == [m.bitmap() for m in maps]


@pytest.mark.parametrize(
    "layout",
    [[3, 5], [5, 4], [5], [5, 3, 1], [8]],
    ids=["swapped", "one-size-off", "fewer", "more", "merged"],
)
def test_event_map_for_another_layout_is_rejected(layout: list[int]) -> None:
    encoded = tc.encode_event([tc.SeatMap.all_available(5), tc.SeatMap.all_available(3)])
    with pytest.raises(tc.SeatMapError):
        tc.decode_event(encoded, layout)
    with pytest.raises(sm.SeatMapFormatError, match="another venue layout"):
        sm.decode_event(encoded, layout)


@pytest.mark.parametrize("layout", [[], [0, 5], [70_000], [65_536] * 65, [1] * 4097])
def test_python_rejects_impossible_layouts(layout: list[int]) -> None:
    encoded = tc.encode_event([tc.SeatMap.all_available(5)])
    with pytest.raises(sm.SeatMapFormatError):
        sm.decode_event(encoded, layout)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=20))
def test_version_tag_matches(versions: list[int]) -> None:
    assert sm.version_tag(versions) == tc.version_tag(versions)


def test_version_tag_rejects_out_of_range_versions() -> None:
    with pytest.raises(sm.SeatMapFormatError):
        sm.version_tag([2**64])
    with pytest.raises(sm.SeatMapFormatError):
        sm.version_tag([-1])


# --- deltas --------------------------------------------------------------------------------


@st.composite
def map_pairs(draw: st.DrawFn) -> tuple[tc.SeatMap, tc.SeatMap]:
    n = draw(st.integers(1, 3000))
    old_bits = draw(availability(n))
    if draw(st.booleans()):
        new_bits = list(old_bits)
        for seat in draw(st.lists(st.integers(0, n - 1), max_size=40)):
            new_bits[seat] = not new_bits[seat]
    else:
        new_bits = draw(availability(n))
    version = draw(st.integers(0, 2**62))
    step = draw(st.integers(1, 1000))
    return seat_map(old_bits, version), seat_map(new_bits, version + step)


@FAST
@given(map_pairs())
def test_rust_deltas_apply_with_python(pair: tuple[tc.SeatMap, tc.SeatMap]) -> None:
    old, new = pair
    delta = old.delta_to(new)
    base = sm.decode_section(old.encode())
    updated = sm.apply_delta(base, delta)
    assert view_py(updated) == view_rust(new)
    assert view_py(base) == view_rust(old)  # the input map is untouched
    rust = old.copy()
    rust.apply_delta(delta)
    assert rust == new


@FAST
@given(map_pairs(), st.integers(0, VERSION_MAX))
def test_delta_on_another_version_is_a_mismatch(
    pair: tuple[tc.SeatMap, tc.SeatMap], other: int
) -> None:
    old, new = pair
    if other == old.version:
        other += 1
    delta = old.delta_to(new)
    stale = tc.SeatMap(old.bitmap(), old.seat_count, other)
    with pytest.raises(tc.VersionMismatch):
        stale.copy().apply_delta(delta)
    with pytest.raises(sm.SeatMapFormatError) as caught:
        sm.apply_delta(sm.decode_section(stale.encode()), delta)
    assert (caught.value.expected, caught.value.actual) == (old.version, other)


def test_delta_for_another_section_size_is_rejected() -> None:
    delta = tc.SeatMap.all_available(10, 1).delta_to(tc.SeatMap(b"\x00\x00", 10, 2))
    other = tc.SeatMap.all_available(11, 1)
    with pytest.raises(tc.SeatMapError):
        other.apply_delta(delta)
    with pytest.raises(sm.SeatMapFormatError, match="11"):
        sm.apply_delta(sm.decode_section(other.encode()), delta)


def test_delta_with_no_changes_bumps_the_version() -> None:
    section = tc.Section([4, 4])
    section.hold([1, 2])
    before = section.seat_map()
    section.sell([1, 2])  # held -> sold: no public bit changes
    delta = before.delta_to(section.seat_map())
    updated = sm.apply_delta(sm.decode_section(before.encode()), delta)
    assert view_py(updated) == view_rust(section.seat_map())


# --- corrupted and non-canonical inputs ----------------------------------------------------


def fixtures() -> list[tuple[str, bytes, Any]]:
    """(kind, payload, context): small payloads of every shape, for mutation tests."""
    cases: list[tuple[str, bytes, Any]] = []
    for bits in [alternating([1, 2, 1, 3], 45), alternating([3, 9], 70), [False] * 9]:
        cases.append(("section", seat_map(bits, 300).encode(), None))
    for bits in [alternating([1, 2, 1, 3, 2, 1, 1, 4], 400), alternating([20], 800)]:
        cases.append(("section", seat_map(bits, 5).encode(), None))  # deflated bodies
    maps = [seat_map(alternating([2, 5], 30), 7), seat_map([True] * 6, 2**40)]
    for with_versions in (True, False):
        cases.append(("event", tc.encode_event(maps, with_versions), [30, 6]))
    old = seat_map(alternating([2, 5], 60), 10)
    new = seat_map(alternating([3, 4], 60), 12)
    cases.append(("delta", old.delta_to(new), old))
    return cases


FIXTURES = fixtures()


def decode_both(kind: str, data: bytes, context: Any) -> tuple[Outcome, Outcome]:
    if kind == "section":
        return (
            rust_outcome(lambda: view_rust(tc.SeatMap.decode(data))),
            python_outcome(lambda: view_py(sm.decode_section(data))),
        )
    if kind == "event":

        def rust_event() -> Any:
            tag, versions, maps = tc.decode_event(data, context)
            return (tag, versions and tuple(versions), [view_rust(m) for m in maps])

        def python_event() -> Any:
            event = sm.decode_event(data, context)
            return (event.version_tag, event.versions, [view_py(s) for s in event.sections])

        return rust_outcome(rust_event), python_outcome(python_event)

    def rust_delta() -> Any:
        copy = context.copy()
        copy.apply_delta(data)
        return view_rust(copy)

    base = sm.decode_section(context.encode())
    return rust_outcome(rust_delta), python_outcome(lambda: view_py(sm.apply_delta(base, data)))


def assert_both_reject(kind: str, data: bytes, context: Any) -> None:
    rust, python = decode_both(kind, data, context)
    assert rust[0] == "error", f"Rust accepted {data.hex()}"
    assert python[0] == "error", f"Python accepted {data.hex()}"


@pytest.mark.parametrize(("kind", "data", "context"), FIXTURES)
def test_fixtures_decode_identically(kind: str, data: bytes, context: Any) -> None:
    rust, python = decode_both(kind, data, context)
    assert rust[0] == "ok"
    assert rust == python


@pytest.mark.parametrize(("kind", "data", "context"), FIXTURES)
def test_every_truncation_single_bit_flip_and_appended_byte_is_rejected(
    kind: str, data: bytes, context: Any
) -> None:
    for length in range(len(data)):
        assert_both_reject(kind, data[:length], context)
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            assert_both_reject(kind, bytes(flipped), context)
    for extra in (b"\x00", b"\xff", data[-4:]):
        assert_both_reject(kind, data + extra, context)
    assert_both_reject(kind, data[:-4] + bytes(4), context)  # a zeroed CRC


def is_known_rust_leniency(rust: Outcome, python: Outcome) -> bool:
    """tessera_core accepts bytes between the end of a DEFLATE stream and the CRC (see
    test_rust_rejects_bytes_after_the_deflate_stream); the spec and both other decoders do not."""
    return rust[0] == "ok" and python == ("error", "bytes after the end of the deflate stream")


MUTATIONS = st.sampled_from(["flip", "set", "insert", "delete", "truncate", "append"])


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(FIXTURES), MUTATIONS, st.integers(0, 10_000), st.integers(0, 255))
def test_crc_fixed_mutations_get_the_same_verdict(
    fixture: tuple[str, bytes, Any], mutation: str, where: int, value: int
) -> None:
    kind, data, context = fixture
    framed = bytearray(data[:-4])
    at = where % len(framed)
    if mutation == "flip":
        framed[at] ^= 1 << (value % 8)
    elif mutation == "set":
        framed[at] = value
    elif mutation == "insert":
        framed.insert(at, value)
    elif mutation == "delete":
        del framed[at]
    elif mutation == "truncate":
        del framed[at:]
    else:
        framed.append(value)
    rust, python = decode_both(kind, reseal(bytes(framed)), context)
    if is_known_rust_leniency(rust, python):
        return
    if python[0] == "error":  # messages differ between the decoders; the verdict must not
        python = ("error", None)
    assert rust == python


def section_framed(seat_count: bytes, body: bytes, flags: int = 0) -> bytes:
    return bytes([0x54, 0x53, 1, 1, flags]) + seat_count + varint(1) + body


EVENT_HEAD = b"TS\x01\x02\x01" + varint(1) + varint(10) + struct.pack("<I", sm.layout_hash([10]))


def deflated(body: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(body) + compressor.flush()


# Hand-made payloads (CRC correct) that break exactly one rule each; all are for 10-seat maps.
NON_CANONICAL: dict[str, bytes] = {
    "bad magic": b"TX" + section_framed(varint(10), b"\x00\xff\x03")[2:],
    "format version 2": b"TS\x02" + section_framed(varint(10), b"\x00\xff\x03")[3:],
    "kind 2 as section": b"TS\x01\x02" + section_framed(varint(10), b"\x00\xff\x03")[4:],
    "unknown kind 4": b"TS\x01\x04" + section_framed(varint(10), b"\x00\xff\x03")[4:],
    "flags on a section map": section_framed(varint(10), b"\x00\xff\x03", flags=1),
    "non-minimal seat count": section_framed(b"\x8a\x00", b"\x00\xff\x03"),
    "11-byte version": b"TS\x01\x01\x00\x0a" + b"\x80" * 10 + b"\x01\x00\xff\x03",
    "version overflows 64 bits": b"TS\x01\x01\x00\x0a" + b"\xff" * 9 + b"\x02\x00\xff\x03",
    "seat count 0": section_framed(varint(0), b"\x00"),
    "seat count 65537": section_framed(varint(65_537), b"\x01" + varint(65_537)),
    "unknown body tag": section_framed(varint(10), b"\x04\xff\x03"),
    "raw body too short": section_framed(varint(10), b"\x00\xff"),
    "raw body too long": section_framed(varint(10), b"\x00\xff\x03\x00"),
    "padding bit set": section_framed(varint(10), b"\x00\xff\x07"),
    "empty run after the first": section_framed(varint(10), b"\x01\x03\x00\x07"),
    "runs past n": section_framed(varint(10), b"\x01\x03\x08"),
    "runs short of n": section_framed(varint(10), b"\x01\x03\x06"),
    "byte after the last run": section_framed(varint(10), b"\x01\x03\x07\x01"),
    "non-minimal run": section_framed(varint(10), b"\x01\x83\x00\x07"),
    "no runs": section_framed(varint(10), b"\x01"),
    "no body tag": section_framed(varint(10), b""),
    "inflated size above the bound": section_framed(
        varint(10), b"\x02" + varint(3) + deflated(b"\xff\x03\x00")
    ),
    "inflated size larger than declared": section_framed(
        varint(10), b"\x02" + varint(1) + deflated(b"\xff\x03")
    ),
    "inflated size smaller than declared": section_framed(
        varint(10), b"\x02" + varint(2) + deflated(b"\xff")
    ),
    "deflate stream truncated": section_framed(
        varint(10), b"\x02" + varint(2) + deflated(b"\xff\x03")[:-1]
    ),
    "corrupt deflate stream": section_framed(varint(10), b"\x02" + varint(2) + b"\xff\xff\xff"),
    "empty deflate stream": section_framed(varint(10), b"\x03" + varint(2)),
    "deflated runs with a zero run": section_framed(
        varint(10), b"\x03" + varint(3) + deflated(b"\x05\x00\x05")
    ),
    "event: unknown flag": b"TS\x01\x02\x03" + EVENT_HEAD[5:] + b"\x00" * 8 + b"\x00\x00\xff\x03",
    "event: version tag mismatch": EVENT_HEAD + b"\x00" * 8 + varint(0) + b"\x00\xff\x03",
    "event: truncated version vector": EVENT_HEAD + struct.pack("<Q", sm.version_tag([5])),
}


@pytest.mark.parametrize("data", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_hand_made_invalid_inputs_are_rejected_by_both(data: bytes) -> None:
    kind = "event" if data[3] == 2 and data[4] else "section"
    assert_both_reject(kind, reseal(data), [10])


def test_hand_made_valid_inputs_are_accepted_by_both() -> None:
    # The controls for NON_CANONICAL: the same shapes with every rule kept.
    for framed in [
        section_framed(varint(10), b"\x00\xff\x03"),
        section_framed(varint(10), b"\x01\x00\x03\x07"),
        section_framed(varint(10), b"\x02" + varint(2) + deflated(b"\xff\x03")),
        section_framed(varint(10), b"\x03" + varint(2) + deflated(b"\x05\x05")),
        EVENT_HEAD + struct.pack("<Q", sm.version_tag([5])) + varint(5) + b"\x00\xff\x03",
    ]:
        rust, python = decode_both("event" if framed[3] == 2 else "section", reseal(framed), [10])
        assert rust[0] == "ok"
        assert rust == python


@pytest.mark.parametrize(
    "fields",
    [
        [20, 3, 3, 5, 0],  # to == from
        [20, 3, 4, 21, 0],  # available count above the seat count
        [20, 3, 4, 5, 21],  # more changes than seats
        [20, 3, 4, 5, 1, 20],  # changed seat out of range
        [20, 3, 4, 5, 2, 19, 0],  # second seat past the end
        [20, 3, 4, 5, 1, 2, 0],  # a byte after the last change
        [20, 3, 4, 5, 2, 1],  # truncated changes
        [20, 3, 4, 6, 0],  # available count does not match
    ],
)
def test_invalid_deltas_are_rejected_by_both(fields: list[int]) -> None:
    base = tc.SeatMap(from_bits([True] * 5 + [False] * 15), 20, 3)
    framed = b"TS\x01\x03\x00" + b"".join(varint(f) for f in fields)
    assert_both_reject("delta", reseal(framed), base)


def test_oversized_input_is_rejected() -> None:
    data = seat_map([True] * 10).encode() + bytes(sm.SEATMAP_BYTES_MAX)
    with pytest.raises(sm.SeatMapFormatError, match="limit"):
        sm.decode_section(data)
    with pytest.raises(tc.SeatMapError, match="limit"):
        tc.SeatMap.decode(data)


def test_python_rejects_bytes_after_the_deflate_stream() -> None:
    encoded = seat_map(FORCED_BODIES[2]).encode()
    with pytest.raises(sm.SeatMapFormatError, match="after the end of the deflate stream"):
        sm.decode_section(reseal(encoded[:-4] + b"\x00"))


# --- regressions: bugs once found in tessera_core's decoder ---------------------------------


def test_rust_rejects_bytes_after_the_deflate_stream() -> None:
    encoded = seat_map(FORCED_BODIES[2]).encode()
    with pytest.raises(tc.SeatMapError):
        tc.SeatMap.decode(reseal(encoded[:-4] + b"\x00"))


ABORT_SCRIPT = """
import resource, tessera_core as tc
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
data = tc.encode_event([tc.SeatMap.all_available(10), tc.SeatMap.all_available(20)])
k = 1 << 52  # counts that wrap to the real layout: u32 hashes and a usize sum both match
try:
    tc.decode_event(data, [10 + k, 20 + (1 << 64) - k])
except (ValueError, OverflowError):  # past 64 bits Python ints overflow, as `[0] * 2**64` does
    pass
try:
    tc.decode_event(data, [10 + k, 20 + (1 << 63) - 1 - k])
except ValueError:
    pass
"""


def test_rust_decode_event_survives_wrapping_seat_counts() -> None:
    result = subprocess.run(
        [sys.executable, "-c", ABORT_SCRIPT], capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-300:]


# --- the JavaScript decoder under node ------------------------------------------------------

NODE_RUNNER = """
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
if (process.env.HIDE_DECOMPRESSION_STREAM) delete globalThis.DecompressionStream;
const [decoderPath, fixturesPath] = process.argv.slice(2);
const { decodeSection, decodeEvent, applyDelta, versionTag, SeatMapFormatError } =
  await import(pathToFileURL(decoderPath).href);
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const view = (m) => ({ seatCount: m.seatCount, version: String(m.version), bitmap: hex(m.bitmap) });
async function run(c) {
  const data = Buffer.from(c.data, 'hex');
  if (c.op === 'section') return view(await decodeSection(data));
  if (c.op === 'tag') return String(versionTag(c.versions.map(BigInt)));
  if (c.op === 'event') {
    const e = await decodeEvent(data, c.seatCounts);
    return { versionTag: String(e.versionTag), versions: e.versions && e.versions.map(String),
             sections: e.sections.map(view) };
  }
  return view(applyDelta(await decodeSection(Buffer.from(c.base, 'hex')), data));
}
const results = [];
for (const c of JSON.parse(fs.readFileSync(fixturesPath, 'utf8'))) {
  try {
    results.push({ name: c.name, ok: await run(c) });
  } catch (error) {
    if (!(error instanceof SeatMapFormatError)) throw error;
    const mismatch = error.expected === null ? null : [error.expected, error.actual].map(String);
    results.push({ name: c.name, error: mismatch ? 'mismatch' : 'format', mismatch });
  }
}
console.log(JSON.stringify(results));
"""


def js_view(seat: tc.SeatMap) -> dict[str, Any]:
    return {
        "seatCount": seat.seat_count,
        "version": str(seat.version),
        "bitmap": seat.bitmap().hex(),
    }


Case = tuple[dict[str, Any], dict[str, Any]]  # (what node runs, what tessera_core expects)


def js_case(case: dict[str, Any], outcome: Outcome) -> Case:
    """`outcome` in the JSON shape the runner prints."""
    if outcome[0] == "ok":
        expected: dict[str, Any] = {"ok": outcome[1]}
    elif outcome[0] == "mismatch":
        expected = {"error": "mismatch", "mismatch": [str(v) for v in outcome[1]]}
    else:
        expected = {"error": "format"}
    return {**case, "data": case["data"].hex()}, {"name": case["name"], **expected}


def js_rust_outcome(op: str, data: bytes, context: Any) -> Outcome:
    """What tessera_core makes of a case, as node's runner would print it."""
    if op == "section":
        return rust_outcome(lambda: js_view(tc.SeatMap.decode(data)))
    if op == "event":

        def event() -> dict[str, Any]:
            tag, versions, maps = tc.decode_event(data, context)
            shown = None if versions is None else [str(v) for v in versions]
            return {"versionTag": str(tag), "versions": shown, "sections": list(map(js_view, maps))}

        return rust_outcome(event)

    def delta() -> dict[str, Any]:
        copy = context.copy()
        copy.apply_delta(data)
        return js_view(copy)

    return rust_outcome(delta)


def js_fixture(name: str, op: str, data: bytes, context: Any = None) -> Case:
    case: dict[str, Any] = {"name": name, "op": op, "data": data}
    if op == "event":
        case["seatCounts"] = context
    if op == "delta":
        case["base"] = context.encode().hex()
    outcome = js_rust_outcome(op, data, context)
    if op == "section" and is_known_rust_leniency(
        outcome, python_outcome(lambda: sm.decode_section(data))
    ):
        outcome = ("error", None)  # the spec's verdict, not (yet) tessera_core's
    return js_case(case, outcome)


def js_section_cases() -> list[Case]:
    cases = [
        js_fixture(f"body {tag}", "section", seat_map(bits, VERSION_MAX).encode())
        for tag, bits in FORCED_BODIES.items()
    ]
    rng = random.Random(11)
    for index in range(6):
        n = rng.randint(1, 5000)
        bits = [rng.random() < 0.8 for _ in range(n)]
        cases.append(js_fixture(f"random {index}", "section", seat_map(bits, index).encode()))
    good = seat_map(FORCED_BODIES[3], 4).encode()
    for name, data in [
        ("truncated", good[:-1]),
        ("bit flip", good[:9] + bytes([good[9] ^ 0x10]) + good[10:]),
        ("appended byte", good + b"\x00"),
        ("bad crc", good[:-4] + bytes(4)),
        ("bytes after deflate", reseal(seat_map(FORCED_BODIES[2]).encode()[:-4] + b"\0")),
    ]:
        cases.append(js_fixture(name, "section", data))
    for name, data in NON_CANONICAL.items():
        is_event = data[3] == 2 and data[4]
        cases.append(js_fixture(name, "event" if is_event else "section", reseal(data), [10]))
    return cases


def js_event_and_delta_cases() -> list[Case]:
    maps = [seat_map(FORCED_BODIES[2], 9), seat_map(FORCED_BODIES[1], 2**62), seat_map([True], 0)]
    rng = random.Random(5)
    many = [
        seat_map([rng.random() < 0.7 for _ in range(rng.randint(1, 300))], i) for i in range(40)
    ]
    cases = []
    for name, parts in [("event", maps), ("40 sections", many)]:
        counts = [m.seat_count for m in parts]
        for versions in (True, False):
            data = tc.encode_event(parts, include_versions=versions)
            cases.append(js_fixture(f"{name} {versions}", "event", data, counts))
    cases.append(js_fixture("event layout", "event", data, counts[::-1]))
    tag_case = {"name": "tag", "op": "tag", "data": b"", "versions": ["0", str(2**64 - 1), "7"]}
    cases.append(js_case(tag_case, ("ok", str(tc.version_tag([0, 2**64 - 1, 7])))))
    old, new = seat_map(FORCED_BODIES[1], 5), seat_map(FORCED_BODIES[1][::-1], 8)
    delta = old.delta_to(new)
    cases.append(js_fixture("delta", "delta", delta, old))
    cases.append(js_fixture("delta gap", "delta", delta, tc.SeatMap(old.bitmap(), 2000, 6)))
    cases.append(js_fixture("delta corrupt", "delta", delta[:-5] + delta[-4:], old))
    return cases


def js_mutation_cases(count: int) -> list[Case]:
    """CRC-fixed random mutations of FIXTURES, judged by tessera_core (and the spec)."""
    rng = random.Random(3)
    cases = []
    for index in range(count):
        kind, data, context = FIXTURES[index % len(FIXTURES)]
        framed = bytearray(data[:-4])
        at = rng.randrange(len(framed))
        if rng.random() < 0.5:
            framed[at] ^= 1 << rng.randrange(8)
        else:
            framed.insert(at, rng.randrange(256))
        mutated = reseal(bytes(framed))
        rust, python = decode_both(kind, mutated, context)
        if is_known_rust_leniency(rust, python):
            continue
        cases.append(js_fixture(f"mutation {index}", kind, mutated, context))
    return cases


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")
@pytest.mark.parametrize("hide_stream", [False, True], ids=["DecompressionStream", "node-zlib"])
def test_javascript_decoder_agrees_with_tessera_core(tmp_path: Path, hide_stream: bool) -> None:
    node = shutil.which("node")
    assert node is not None
    cases = js_section_cases() + js_event_and_delta_cases() + js_mutation_cases(300)
    (tmp_path / "runner.mjs").write_text(NODE_RUNNER)
    (tmp_path / "fixtures.json").write_text(json.dumps([case for case, _ in cases]))
    env = {"PATH": str(Path(node).parent)}
    if hide_stream:
        env["HIDE_DECOMPRESSION_STREAM"] = "1"
    result = subprocess.run(
        [node, str(tmp_path / "runner.mjs"), str(JS_DECODER), str(tmp_path / "fixtures.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)
    for (_, expected), actual in zip(cases, got, strict=True):
        if expected.get("error") == "format":
            actual.pop("mismatch", None)
        assert actual == expected
