"""Plain-Python reference model of the seat engine's rules: the executable specification that
`tessera_core` is tested against (hypothesis drives both and compares) and the baseline its
benchmark is measured against. Written for clarity, not speed: no indexes, every search scans.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

from tessera_core import BEST_AVAILABLE_SEATS_MAX, InvalidSeat, SeatUnavailable

AVAILABLE, HELD, SOLD, BLOCKED = 0, 1, 2, 3

TRANSITIONS = {
    "hold": (AVAILABLE, HELD),
    "release": (HELD, AVAILABLE),
    "sell": (HELD, SOLD),
    "block": (AVAILABLE, BLOCKED),
    "unblock": (BLOCKED, AVAILABLE),
}


def check_quantity(k: int) -> None:
    if not 1 <= k <= BEST_AVAILABLE_SEATS_MAX:
        raise ValueError(f"quantity must be 1 to {BEST_AVAILABLE_SEATS_MAX}, got {k}")


class SectionModel:
    def __init__(self, row_lengths: Sequence[int], row_ranks: Sequence[int] | None = None) -> None:
        self.row_lengths = list(row_lengths)
        self.row_ranks = list(row_ranks) if row_ranks is not None else list(range(len(row_lengths)))
        self.row_starts = [sum(self.row_lengths[:r]) for r in range(len(self.row_lengths))]
        self.states = [AVAILABLE] * sum(self.row_lengths)
        self.version = 0

    @property
    def seat_count(self) -> int:
        return len(self.states)

    @property
    def available_count(self) -> int:
        return self.states.count(AVAILABLE)

    def rank_order(self) -> list[int]:
        return sorted(range(len(self.row_lengths)), key=lambda r: (self.row_ranks[r], r))

    def row_range(self, row: int) -> tuple[int, int]:
        return self.row_starts[row], self.row_starts[row] + self.row_lengths[row]

    def validate(self, seats: Sequence[int]) -> None:
        self.check_range(seats)
        self.check_repeats(seats)

    def check_range(self, seats: Sequence[int]) -> None:
        out_of_range = sorted({s for s in seats if not 0 <= s < len(self.states)})
        if out_of_range:
            raise InvalidSeat("seat index out of range", out_of_range)

    def check_repeats(self, seats: Sequence[int]) -> None:
        if not seats:
            raise ValueError("no seats given")
        repeated = sorted({s for s in seats if seats.count(s) > 1})
        if repeated:
            raise InvalidSeat("seat index repeated", repeated)

    def conflicts(self, seats: Sequence[int], required: int) -> list[int]:
        return sorted(s for s in seats if self.states[s] != required)

    def apply(self, op: str, seats: Sequence[int]) -> None:
        before, after = TRANSITIONS[op]
        self.validate(seats)
        conflicts = self.conflicts(seats, before)
        if conflicts:
            raise SeatUnavailable("seats unavailable", conflicts)
        for seat in seats:
            self.states[seat] = after
        self.version += 1

    def apply_many(self, op: str, requests: Sequence[Sequence[int]]) -> list[list[int] | None]:
        before, after = TRANSITIONS[op]
        # Every index is range-checked across the batch before any request is checked further.
        for seats in requests:
            self.check_range(seats)
        for seats in requests:
            self.check_repeats(seats)
        outcomes: list[list[int] | None] = []
        for seats in requests:
            conflicts = self.conflicts(seats, before)
            if conflicts:
                outcomes.append(conflicts)
                continue
            for seat in seats:
                self.states[seat] = after
            outcomes.append(None)
        if any(outcome is None for outcome in outcomes):
            self.version += 1
        return outcomes

    def free_runs(self, row: int) -> list[tuple[int, int]]:
        start, end = self.row_range(row)
        runs: list[tuple[int, int]] = []
        seat = start
        while seat < end:
            if self.states[seat] != AVAILABLE:
                seat += 1
                continue
            run_start = seat
            while seat < end and self.states[seat] == AVAILABLE:
                seat += 1
            runs.append((run_start, seat))
        return runs

    def place_in_row(self, row: int, k: int, orphan_free: bool) -> int | None:
        """Every legal start is considered; the engine's shortcut must agree with this."""
        row_start, row_end = self.row_range(row)
        best: tuple[int, int] | None = None
        for run_start, run_end in self.free_runs(row):
            for start in range(run_start, run_end - k + 1):
                strands = start - run_start == 1 or run_end - (start + k) == 1
                if orphan_free and strands:
                    continue
                key = (abs(2 * start + k - (row_start + row_end)), start)
                if best is None or key < best:
                    best = key
        return None if best is None else best[1]

    def scattered(self, k: int) -> tuple[int, list[int]] | None:
        """`(rank of the last row used, seats)`: best rows first, centre seats first."""
        if self.available_count < k:
            return None
        taken: list[int] = []
        for row in self.rank_order():
            row_start, row_end = self.row_range(row)
            free = [s for s in range(row_start, row_end) if self.states[s] == AVAILABLE]
            free.sort(key=lambda s: (abs(2 * s + 1 - (row_start + row_end)), s))
            taken.extend(free[: k - len(taken)])
            if len(taken) == k:
                return self.row_ranks[row], sorted(taken)
        raise AssertionError("available_count promised enough seats")

    def best_available(
        self, k: int, adjacent: bool = True, avoid_orphans: bool = True
    ) -> list[int] | None:
        check_quantity(k)
        for orphan_free in (True, False) if avoid_orphans else (False,):
            for row in self.rank_order():
                start = self.place_in_row(row, k, orphan_free)
                if start is not None:
                    return list(range(start, start + k))
        if adjacent:
            return None
        picked = self.scattered(k)
        return None if picked is None else picked[1]

    def availability(self) -> list[bool]:
        return [state == AVAILABLE for state in self.states]


class EventModel:
    def __init__(self, sections: Sequence[tuple[Sequence[int], Sequence[int] | None]]) -> None:
        self.sections = [SectionModel(lengths, ranks) for lengths, ranks in sections]

    def apply(self, op: str, section: int, seats: Sequence[int]) -> None:
        self.section(section).apply(op, seats)

    def section(self, section: int) -> SectionModel:
        if not 0 <= section < len(self.sections):
            raise ValueError(f"section index {section} out of range")
        return self.sections[section]

    def apply_many(
        self, op: str, requests: Sequence[tuple[int, Sequence[int]]]
    ) -> list[list[int] | None]:
        for section, seats in requests:
            self.section(section).check_range(seats)
        for section, seats in requests:
            self.section(section).check_repeats(seats)
        by_section: dict[int, list[int]] = {}
        for i, (section, _) in enumerate(requests):
            by_section.setdefault(section, []).append(i)
        outcomes: list[list[int] | None] = [None] * len(requests)
        for section, mine in sorted(by_section.items()):
            results = self.sections[section].apply_many(op, [requests[i][1] for i in mine])
            for i, result in zip(mine, results, strict=True):
                outcomes[i] = result
        return outcomes

    def best_available(
        self,
        k: int,
        sections: Sequence[int] | None = None,
        adjacent: bool = True,
        avoid_orphans: bool = True,
    ) -> tuple[int, list[int]] | None:
        check_quantity(k)
        within = sorted(set(sections)) if sections is not None else range(len(self.sections))
        for s in within:
            self.section(s)
        rows = sorted(
            (self.sections[s].row_ranks[r], s, r)
            for s in within
            for r in range(len(self.sections[s].row_lengths))
        )
        for orphan_free in (True, False) if avoid_orphans else (False,):
            for _, s, row in rows:
                start = self.sections[s].place_in_row(row, k, orphan_free)
                if start is not None:
                    return s, list(range(start, start + k))
        if adjacent:
            return None
        picks = [(p[0], s, p[1]) for s in within if (p := self.sections[s].scattered(k))]
        if not picks:
            return None
        _, s, seats = min(picks, key=lambda p: (p[0], p[1]))
        return s, seats

    def encode(self, include_versions: bool = False) -> bytes:
        """The whole event's seat map in the documented format, built the plain way."""
        return encode_event(
            [s.availability() for s in self.sections],
            [s.version for s in self.sections],
            include_versions,
        )


# --- a plain-Python encoder of docs/seatmap-format.md (event maps) ---

_KIND_EVENT, _FLAG_VERSIONS = 2, 1
_BODY_RAW, _BODY_RUNS, _DEFLATE_OFFSET = 0, 1, 2
_DEFLATE_INPUT_MIN_BYTES = 16


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _runs(bits: list[bool]) -> bytes:
    out = bytearray()
    current, length = False, 0
    for bit in bits:
        if bit == current:
            length += 1
        else:
            out += _varint(length)
            current, length = bit, 1
    out += _varint(length)
    return bytes(out)


def _raw(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for index, bit in enumerate(bits):
        if bit:
            out[index // 8] |= 1 << (index % 8)
    return bytes(out)


def _body(bits: list[bool]) -> bytes:
    raw, runs = _raw(bits), _runs(bits)
    tag, body = (_BODY_RUNS, runs) if len(runs) < len(raw) else (_BODY_RAW, raw)
    if len(body) >= _DEFLATE_INPUT_MIN_BYTES:
        compressor = zlib.compressobj(1, zlib.DEFLATED, -15)
        deflated = compressor.compress(body) + compressor.flush()
        framed = _varint(len(body)) + deflated
        if len(framed) < len(body):
            return bytes([tag + _DEFLATE_OFFSET]) + framed
    return bytes([tag]) + body


def version_tag(versions: Sequence[int]) -> int:
    tag = 0xCBF29CE484222325
    for byte in b"".join(struct.pack("<Q", v) for v in versions):
        tag = ((tag ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return tag


def encode_event(
    sections: Sequence[list[bool]], versions: Sequence[int], include_versions: bool = False
) -> bytes:
    counts = b"".join(struct.pack("<I", len(bits)) for bits in sections)
    out = bytearray(b"TS" + bytes([1, _KIND_EVENT, _FLAG_VERSIONS if include_versions else 0]))
    out += _varint(len(sections)) + _varint(sum(len(bits) for bits in sections))
    out += struct.pack("<IQ", zlib.crc32(counts), version_tag(versions))
    if include_versions:
        out += b"".join(_varint(v) for v in versions)
    out += _body([bit for bits in sections for bit in bits])
    return bytes(out + struct.pack("<I", zlib.crc32(out)))
