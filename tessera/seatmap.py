"""A pure-Python decoder for the Tessera seat-map format (`application/vnd.tessera.seatmap`).

The format is specified in `docs/seatmap-format.md`; `core_rs/src/codec.rs` is the encoder. This
module is an independent reading of that spec (standard library only), as strict as the Rust
decoder: every input that is truncated, oversized, non-canonical or corrupted raises
`SeatMapFormatError`, and no buffer is sized from a length before it has been checked.

    seat_map = decode_section(payload)
    seat_map = apply_delta(seat_map, delta)  # a new map; the old one is untouched
    event = decode_event(payload, seat_counts=[500, 500, 1200])
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tessera.media import SEATMAP

__all__ = [
    "MEDIA_TYPE",
    "EventMap",
    "SeatMapFormatError",
    "SectionMap",
    "apply_delta",
    "decode_event",
    "decode_section",
    "layout_hash",
    "version_tag",
]

MEDIA_TYPE: Final = SEATMAP

MAGIC: Final = b"TS"
FORMAT_VERSION: Final = 1
KIND_SECTION: Final = 1
KIND_EVENT: Final = 2
KIND_DELTA: Final = 3
FLAG_VERSIONS: Final = 1

BODY_RAW: Final = 0
BODY_RUNS: Final = 1
BODY_DEFLATE_RAW: Final = 2
BODY_DEFLATE_RUNS: Final = 3

# The format's bounds (the same numbers as core_rs/src/limits.rs; a test keeps them in step).
SECTION_SEATS_MAX: Final = 65_536
EVENT_SECTIONS_MAX: Final = 4_096
EVENT_SEATS_MAX: Final = 4_194_304
SEATMAP_BYTES_MAX: Final = 4 * 1024 * 1024

_HEADER_BYTES: Final = 5
_CRC_BYTES: Final = 4
_U64_MAX: Final = 2**64 - 1
_FNV_OFFSET: Final = 0xCBF2_9CE4_8422_2325
_FNV_PRIME: Final = 0x0000_0100_0000_01B3


class SeatMapFormatError(ValueError):
    """Bytes that are not a valid seat map / delta, or a delta for another base version.

    On a version mismatch (`apply_delta` on a map that is not at the delta's base version),
    `expected` is the delta's base version and `actual` the map's; both are None otherwise.
    A mismatch means: fetch a fresh snapshot of that section.
    """

    def __init__(
        self, message: str, *, expected: int | None = None, actual: int | None = None
    ) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True, slots=True)
class SectionMap:
    """One section's availability at one version.

    `bitmap`: bit `i % 8` of byte `i // 8` is seat `i` (1 = available), `ceil(seat_count / 8)`
    bytes, bits past the last seat 0: the same layout as `tessera_core.SeatMap.bitmap()`.
    """

    seat_count: int
    version: int
    bitmap: bytes

    def is_available(self, seat: int) -> bool:
        if not 0 <= seat < self.seat_count:
            raise IndexError(f"seat {seat} out of range 0..{self.seat_count - 1}")
        return bool(self.bitmap[seat >> 3] >> (seat & 7) & 1)

    @property
    def available_count(self) -> int:
        return int.from_bytes(self.bitmap, "little").bit_count()

    def available(self) -> list[bool]:
        """One bool per seat."""
        bits = [bool(byte >> bit & 1) for byte in self.bitmap for bit in range(8)]
        return bits[: self.seat_count]

    def available_indices(self) -> list[int]:
        return [seat for seat, free in enumerate(self.available()) if free]


@dataclass(frozen=True, slots=True)
class EventMap:
    """A whole event: `versions` is None when the map was encoded without its version vector
    (then every section's `version` is 0 and only `version_tag` identifies the versions)."""

    version_tag: int
    versions: tuple[int, ...] | None
    sections: tuple[SectionMap, ...]


class _Reader:
    """A cursor over `data` that raises instead of reading past the end."""

    __slots__ = ("_at", "_data")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._at

    def take(self, count: int, what: str) -> bytes:
        if count > self.remaining:
            raise SeatMapFormatError(f"truncated in {what}")
        chunk = self._data[self._at : self._at + count]
        self._at += count
        return chunk

    def rest(self) -> bytes:
        return self.take(self.remaining, "body")

    def u8(self, what: str) -> int:
        if self._at >= len(self._data):
            raise SeatMapFormatError(f"truncated before {what}")
        self._at += 1
        return self._data[self._at - 1]

    def u32_le(self, what: str) -> int:
        value: int = struct.unpack("<I", self.take(4, what))[0]
        return value

    def u64_le(self, what: str) -> int:
        value: int = struct.unpack("<Q", self.take(8, what))[0]
        return value

    def varint(self, what: str) -> int:
        """LEB128, canonical only: one encoding per value, so equal maps are equal bytes."""
        value = 0
        for index in range(10):
            byte = self.u8(what)
            payload = byte & 0x7F
            # The tenth byte carries bit 63 only; anything more does not fit in 64 bits.
            if index == 9 and payload > 1:
                raise SeatMapFormatError(f"{what} overflows 64 bits")
            value |= payload << (7 * index)
            if not byte & 0x80:
                if index > 0 and byte == 0:
                    raise SeatMapFormatError(f"{what} is not minimally encoded")
                return value
        raise SeatMapFormatError(f"{what} is longer than 10 bytes")

    def bounded(self, maximum: int, what: str) -> int:
        value = self.varint(what)
        if value > maximum:
            raise SeatMapFormatError(f"{what} {value} exceeds {maximum}")
        return value


def _varint_len(value: int) -> int:
    return max(1, -(-value.bit_length() // 7))


def _open(data: bytes, kind: int) -> _Reader:
    """Check size, magic, format version, CRC, kind and flags; return a reader over the bytes
    between the fixed header and the CRC."""
    if len(data) > SEATMAP_BYTES_MAX:
        raise SeatMapFormatError(f"{len(data)} bytes exceeds the {SEATMAP_BYTES_MAX}-byte limit")
    if len(data) < _HEADER_BYTES + _CRC_BYTES:
        raise SeatMapFormatError("shorter than a header")
    if data[:2] != MAGIC:
        raise SeatMapFormatError("not a Tessera seat map (bad magic)")
    if data[2] != FORMAT_VERSION:
        raise SeatMapFormatError(f"unsupported format version {data[2]}")
    framed, crc = data[:-_CRC_BYTES], data[-_CRC_BYTES:]
    # The CRC is checked before any field is interpreted: a corrupted length must never
    # reach the code that trusts it.
    if zlib.crc32(framed) != int.from_bytes(crc, "little"):
        raise SeatMapFormatError("checksum mismatch (corrupted or truncated)")
    if data[3] != kind:
        raise SeatMapFormatError(f"expected kind {kind}, got {data[3]}")
    allowed = FLAG_VERSIONS if kind == KIND_EVENT else 0
    if data[4] & ~allowed:
        raise SeatMapFormatError(f"unknown flags {data[4]:#04x}")
    reader = _Reader(framed)
    reader.take(_HEADER_BYTES, "header")
    return reader


def _inflate(reader: _Reader, limit: int) -> bytes:
    """The deflated body after its declared size, which must be at most `limit`."""
    expected = reader.bounded(limit, "inflated size")
    stream = reader.rest()
    inflater = zlib.decompressobj(-15)
    try:
        # One byte past the declared size is enough to tell "longer than declared" apart, and
        # max_length must not be 0 (that means unlimited).
        inflated = inflater.decompress(stream, expected + 1)
    except zlib.error as exc:
        raise SeatMapFormatError(f"deflate stream is corrupt: {exc}") from None
    if len(inflated) > expected or inflater.unconsumed_tail:
        raise SeatMapFormatError("deflate stream longer than declared")
    if not inflater.eof:
        raise SeatMapFormatError("deflate stream is truncated")
    if inflater.unused_data:
        raise SeatMapFormatError("bytes after the end of the deflate stream")
    if len(inflated) != expected:
        raise SeatMapFormatError("deflate stream shorter than declared")
    return inflated


def _raw_body(body: bytes, seat_count: int) -> bytes:
    if len(body) != (seat_count + 7) // 8:
        raise SeatMapFormatError(f"raw body has {len(body)} bytes for {seat_count} seats")
    # Padding must be 0 so that each map has exactly one raw encoding.
    if seat_count % 8 and body[-1] >> (seat_count % 8):
        raise SeatMapFormatError("padding bits past the last seat are set")
    return body


def _set_range(bitmap: bytearray, start: int, end: int) -> None:
    """Set bits `start..end` (end > start): partial edge bytes, whole bytes by slice."""
    first, last = start >> 3, (end - 1) >> 3
    if first == last:
        bitmap[first] |= ((1 << (end - start)) - 1) << (start & 7)
        return
    bitmap[first] |= (0xFF << (start & 7)) & 0xFF
    bitmap[first + 1 : last] = b"\xff" * (last - first - 1)
    bitmap[last] |= 0xFF >> (7 - ((end - 1) & 7))


def _runs_body(body: bytes, seat_count: int) -> bytes:
    """Alternating run lengths, unavailable first; only the first run may be empty, and the runs
    must cover the seats exactly (each is bounded by the seats left, so they cannot overshoot)."""
    bitmap = bytearray((seat_count + 7) // 8)
    reader = _Reader(body)
    at = 0
    available = False
    first = True
    while at < seat_count or first:
        run = reader.bounded(seat_count - at, "run length")
        if run == 0 and not first:
            raise SeatMapFormatError("empty run after the first")
        if available and run:
            _set_range(bitmap, at, at + run)
        at += run
        available = not available
        first = False
    if reader.remaining:
        raise SeatMapFormatError("bytes after the last run")
    return bytes(bitmap)


def _read_body(reader: _Reader, seat_count: int) -> bytes:
    tag = reader.u8("body encoding")
    if tag == BODY_RAW:
        return _raw_body(reader.rest(), seat_count)
    if tag == BODY_RUNS:
        return _runs_body(reader.rest(), seat_count)
    if tag == BODY_DEFLATE_RAW:
        return _raw_body(_inflate(reader, (seat_count + 7) // 8), seat_count)
    if tag == BODY_DEFLATE_RUNS:
        # The reference decoder's bound on inflated run bytes: seat_count varints of the longest
        # length a run can have. (A hand-made body of seat_count + 1 one-byte runs, possible only
        # below 128 seats, exceeds it; the encoder never deflates such a body.)
        return _runs_body(_inflate(reader, seat_count * _varint_len(seat_count)), seat_count)
    raise SeatMapFormatError(f"unknown body encoding {tag}")


def decode_section(data: bytes) -> SectionMap:
    """Decode a section map (kind 1)."""
    reader = _open(bytes(data), KIND_SECTION)
    seat_count = reader.bounded(SECTION_SEATS_MAX, "seat count")
    if seat_count == 0:
        raise SeatMapFormatError("seat count is zero")
    version = reader.varint("version")
    return SectionMap(seat_count, version, _read_body(reader, seat_count))


def layout_hash(seat_counts: Iterable[int]) -> int:
    """CRC-32 of the seat counts as u32 LE: an event map made for another layout fails loudly."""
    return zlib.crc32(b"".join(struct.pack("<I", count) for count in seat_counts))


def version_tag(versions: Iterable[int]) -> int:
    """FNV-1a 64 of the versions as u64 LE: the tag an event map carries for its versions."""
    digest = _FNV_OFFSET
    for version in versions:
        if not 0 <= version <= _U64_MAX:
            raise SeatMapFormatError(f"version {version} does not fit in 64 bits")
        for byte in version.to_bytes(8, "little"):
            digest = ((digest ^ byte) * _FNV_PRIME) & _U64_MAX
    return digest


def _check_layout(seat_counts: Sequence[int]) -> None:
    # No encodable map has another layout, so a bad one is rejected before any byte is read.
    if not 1 <= len(seat_counts) <= EVENT_SECTIONS_MAX:
        raise SeatMapFormatError(f"a venue layout has 1 to {EVENT_SECTIONS_MAX} sections")
    if any(not 1 <= count <= SECTION_SEATS_MAX for count in seat_counts):
        raise SeatMapFormatError(f"a section has 1 to {SECTION_SEATS_MAX} seats")
    if sum(seat_counts) > EVENT_SEATS_MAX:
        raise SeatMapFormatError(f"a venue layout has at most {EVENT_SEATS_MAX} seats")


def _split(bitmap: bytes, seat_counts: Sequence[int]) -> list[bytes]:
    """Cut the event's concatenated bitmap into per-section bitmaps (sections start at any bit)."""
    parts = []
    offset = 0
    for count in seat_counts:
        first, shift = offset >> 3, offset & 7
        window = int.from_bytes(bitmap[first : (offset + count + 7) >> 3], "little") >> shift
        parts.append((window & ((1 << count) - 1)).to_bytes((count + 7) // 8, "little"))
        offset += count
    return parts


def decode_event(data: bytes, seat_counts: Sequence[int]) -> EventMap:
    """Decode an event map (kind 2) for a venue whose sections have `seat_counts` seats, in
    section order."""
    seat_counts = list(seat_counts)
    _check_layout(seat_counts)
    data = bytes(data)
    reader = _open(data, KIND_EVENT)
    sections = reader.bounded(EVENT_SECTIONS_MAX, "section count")
    total = reader.bounded(EVENT_SEATS_MAX, "seat count")
    hash_ = reader.u32_le("layout hash")
    if (
        sections != len(seat_counts)
        or total != sum(seat_counts)
        or hash_ != layout_hash(seat_counts)
    ):
        raise SeatMapFormatError("the map was made for another venue layout")
    tag = reader.u64_le("version tag")
    versions: tuple[int, ...] | None = None
    if data[4] & FLAG_VERSIONS:
        versions = tuple(reader.varint("section version") for _ in range(sections))
        if version_tag(versions) != tag:
            raise SeatMapFormatError("version vector does not match its tag")
    bitmaps = _split(_read_body(reader, total), seat_counts)
    section_versions = versions or (0,) * sections
    maps = tuple(map(SectionMap, seat_counts, section_versions, bitmaps))
    return EventMap(tag, versions, maps)


def apply_delta(section_map: SectionMap, delta: bytes) -> SectionMap:
    """The map after `delta` (kind 3). All or nothing: `section_map` is never modified.

    Raises `SeatMapFormatError` with `expected`/`actual` set when the delta was built on another
    version than `section_map.version` (a gap: resync from a snapshot)."""
    reader = _open(bytes(delta), KIND_DELTA)
    seat_count = reader.bounded(SECTION_SEATS_MAX, "seat count")
    if seat_count != section_map.seat_count:
        raise SeatMapFormatError(
            f"delta is for {seat_count} seats, the map has {section_map.seat_count}"
        )
    base = reader.varint("from version")
    target = reader.varint("to version")
    if target <= base:
        raise SeatMapFormatError(f"delta goes from version {base} to {target}")
    if base != section_map.version:
        raise SeatMapFormatError(
            f"delta applies on top of version {base} but the map is at version "
            f"{section_map.version}",
            expected=base,
            actual=section_map.version,
        )
    available_after = reader.bounded(seat_count, "available count")
    changes = reader.bounded(seat_count, "change count")
    bitmap = bytearray(section_map.bitmap)
    seat = -1
    for _ in range(changes):
        # Gap-coded: each changed seat is (previous + 1) + gap, so seats strictly increase.
        seat += 1 + reader.bounded(seat_count, "seat gap")
        if seat >= seat_count:
            raise SeatMapFormatError(f"changed seat {seat} out of range")
        bitmap[seat >> 3] ^= 1 << (seat & 7)
    if reader.remaining:
        raise SeatMapFormatError("bytes after the last change")
    updated = SectionMap(seat_count, target, bytes(bitmap))
    # A cheap end-to-end check that the base bits were the ones the delta was made from.
    if updated.available_count != available_after:
        raise SeatMapFormatError("available count after the delta does not match")
    return updated
