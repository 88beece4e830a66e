"""What a regional node knows: per event, every section's public seat map at its version, the
payloads served from it (encoded and compressed once per version, never per request), and the
recent changes SSE clients resume from."""

from __future__ import annotations

import gzip
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Final

import brotli
import msgspec
import zstandard

import tessera_core as tc
from tessera import contracts, limits
from tessera.venue import Venue, new_event_seats
from tessera.web import JSON, SEATMAP

SEATMAP_TYPE: Final = SEATMAP
JSON_TYPE: Final = JSON

_zstd: Final = zstandard.ZstdCompressor(level=limits.seatmap_zstd_level)


def compress(data: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return bytes(brotli.compress(data, quality=limits.seatmap_brotli_level))
    if encoding == "zstd":
        return _zstd.compress(data)
    if encoding == "gzip":
        return gzip.compress(data, compresslevel=limits.seatmap_gzip_level, mtime=0)
    return data


@dataclass(frozen=True)
class Change:
    """One section's change, as SSE sends it: seats that became unavailable or available."""

    version: int
    taken: tuple[int, ...]
    freed: tuple[int, ...]


@dataclass
class Payload:
    """One representation of one version, with its compressed variants (made on first ask)."""

    body: bytes
    media_type: str
    etag: str
    variants: dict[str, bytes] = field(default_factory=dict)

    def encoded(self, encoding: str) -> bytes:
        variant = self.variants.get(encoding)
        if variant is None:
            variant = compress(self.body, encoding)
            # Keep a compressed variant only when it is smaller; else serve identity.
            if encoding != "identity" and len(variant) >= len(self.body):
                variant = self.body
            self.variants[encoding] = variant
        return variant


class EventView:
    def __init__(self, info: contracts.EventInfo) -> None:
        self.info = info
        self.venue = Venue(info.venue)
        self.section_ids = [layout.section_id for layout in self.venue.layouts]
        self.positions = {section_id: p for p, section_id in enumerate(self.section_ids)}
        # Until a snapshot arrives, a section is as the venue made it: blocked seats (kills,
        # production holds) are never available, even before the writer's first change.
        # (Version 0, as the writer's sections start; blocking them bumped the engine's.)
        fresh = new_event_seats(self.venue)
        self.maps = [
            tc.SeatMap(blocked.bitmap(), blocked.seat_count, 0)
            for blocked in (fresh.seat_map(p) for p in range(len(self.venue.layouts)))
        ]
        self.loaded = [False] * len(self.maps)
        self.history: list[deque[Change]] = [
            deque(maxlen=limits.sse_history_versions_max) for _ in self.maps
        ]
        self.payloads: dict[tuple[str, int], Payload] = {}
        # The SSE `snapshot` frame of the current versions (regional/sse.py), built by the first
        # client that needs it: a crowd connecting at once costs one encode, not one each.
        self.snapshot: bytes | None = None

    @property
    def event_id(self) -> uuid.UUID:
        return self.info.event_id

    def versions(self) -> list[int]:
        return [seat_map.version for seat_map in self.maps]

    def version_id(self) -> str:
        """The version vector as SSE ids and `Last-Event-ID` carry it."""
        return ".".join(str(v) for v in self.versions())

    def etag(self) -> str:
        return f'"{tc.version_tag(self.versions()):016x}"'

    def set_map(self, position: int, seat_map: tc.SeatMap) -> None:
        """Install a snapshot (bootstrap or resync)."""
        self.maps[position] = seat_map
        self.loaded[position] = True
        self.history[position].clear()
        self.invalidate(position)

    def apply(self, position: int, delta: bytes) -> Change:
        """Apply the delta for exactly the next version (`VersionMismatch` otherwise)."""
        before = self.maps[position]
        after = before.copy()
        after.apply_delta(delta)
        now = int.from_bytes(after.bitmap(), "little")
        flipped = int.from_bytes(before.bitmap(), "little") ^ now
        taken: list[int] = []
        freed: list[int] = []
        while flipped:
            lowest = flipped & -flipped
            index = lowest.bit_length() - 1
            (freed if now & lowest else taken).append(index)
            flipped ^= lowest
        change = Change(after.version, tuple(taken), tuple(freed))
        self.maps[position] = after
        self.history[position].append(change)
        self.invalidate(position)
        return change

    def invalidate(self, position: int) -> None:
        self.snapshot = None
        self.payloads.pop(("event", -1), None)
        self.payloads.pop(("event-json", -1), None)
        self.payloads.pop(("section", position), None)
        self.payloads.pop(("section-json", position), None)

    def event_payload(self, as_json: bool) -> Payload:
        key = ("event-json" if as_json else "event", -1)
        payload = self.payloads.get(key)
        if payload is None:
            if as_json:
                body = msgspec.json.encode(self.json_view(range(len(self.maps))))
                payload = Payload(body, JSON_TYPE, self.etag()[:-1] + '-json"')
            else:
                body = tc.encode_event(self.maps)
                payload = Payload(body, SEATMAP_TYPE, self.etag())
            self.payloads[key] = payload
        return payload

    def section_payload(self, position: int, as_json: bool) -> Payload:
        key = ("section-json" if as_json else "section", position)
        payload = self.payloads.get(key)
        if payload is None:
            seat_map = self.maps[position]
            tag = f"{self.event_id.hex[:12]}-{position}-{seat_map.version}"
            if as_json:
                body = msgspec.json.encode(self.json_view([position]))
                payload = Payload(body, JSON_TYPE, f'"{tag}-json"')
            else:
                payload = Payload(seat_map.encode(), SEATMAP_TYPE, f'"{tag}"')
            self.payloads[key] = payload
        return payload

    def json_view(self, positions: range | list[int]) -> dict[str, object]:
        sections = []
        for position in positions:
            layout = self.venue.layouts[position]
            seat_map = self.maps[position]
            sections.append(
                {
                    "section_id": layout.section_id,
                    "version": seat_map.version,
                    "available": [layout.seat_id(i) for i in seat_map.available_indices()],
                }
            )
        return {"event_id": str(self.event_id), "sections": sections}

    def seat_ids(self, position: int, indices: tuple[int, ...]) -> list[str]:
        layout = self.venue.layouts[position]
        return [layout.seat_id(i) for i in indices]


def merge(first: Change, second: Change) -> Change:
    """Two consecutive changes of one section as one: each seat reported once, in the state the
    later change left it (clients apply `taken` and `freed` as set operations)."""
    final = dict.fromkeys(first.taken, False) | dict.fromkeys(first.freed, True)
    final |= dict.fromkeys(second.taken, False) | dict.fromkeys(second.freed, True)
    taken = tuple(sorted(seat for seat, free in final.items() if not free))
    freed = tuple(sorted(seat for seat, free in final.items() if free))
    return Change(second.version, taken, freed)
