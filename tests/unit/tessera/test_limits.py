"""The bounds Python and the engine share must be the same numbers."""

from __future__ import annotations

import tessera_core
from tessera import limits

SHARED = {
    "section_seats_max": "SECTION_SEATS_MAX",
    "section_rows_max": "SECTION_ROWS_MAX",
    "row_seats_max": "ROW_SEATS_MAX",
    "event_sections_max": "EVENT_SECTIONS_MAX",
    "venue_seats_max": "EVENT_SEATS_MAX",
    "best_available_seats_max": "BEST_AVAILABLE_SEATS_MAX",
    "seatmap_bytes_max": "SEATMAP_BYTES_MAX",
    "wheel_capacity_max": "WHEEL_CAPACITY_MAX",
    "wheel_hold_id_bytes_max": "WHEEL_HOLD_ID_BYTES_MAX",
    "wheel_horizon_ms": "WHEEL_HORIZON_MS",
}


def test_shared_limits_match_the_engine() -> None:
    mismatched = {
        name: (getattr(limits, name), getattr(tessera_core, engine_name))
        for name, engine_name in SHARED.items()
        if getattr(limits, name) != getattr(tessera_core, engine_name)
    }
    assert mismatched == {}


def test_limit_names_end_with_a_unit_or_max() -> None:
    names = [
        n for n in vars(limits) if not n.startswith("_") and n.islower() and n != "annotations"
    ]
    assert names, "limits module is empty"
    for name in names:
        # A compression level is its own unit, and so is a share (a fraction from 0 to 1).
        assert name.endswith(("_max", "_min", "_ms", "_s", "_bytes", "_level", "_share")), name
