"""Every bound of the Python side of Tessera, in one place. Units come last in each name.

Bounds that the Rust engine enforces too are mirrored from `core_rs/src/limits.rs`; a test keeps
the two in step.
"""

from typing import Final

# --- seat engine (mirrors core_rs/src/limits.rs) ---
section_seats_max: Final = 65_536
section_rows_max: Final = 4_096
row_seats_max: Final = 4_096
event_sections_max: Final = 4_096
best_available_seats_max: Final = 256
seatmap_bytes_max: Final = 4 * 1024 * 1024
wheel_capacity_max: Final = 16_777_216
wheel_hold_id_bytes_max: Final = 128
