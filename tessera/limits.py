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
# Deadlines may lie this far after the wheel's clock (six levels of 64 one-millisecond slots).
wheel_horizon_ms: Final = 2**36

# --- venue file (Python only: the engine sees seat indices, never venue documents) ---
# Real venues (<=150k seats) with explicit labels stay under 2 MiB; caps an upload's decode memory.
venue_file_bytes_max: Final = 8 * 1024 * 1024
# Section/row/tier ids and seat labels: real ones ("FLOOR-A", "AAA", "1201") are far shorter.
venue_id_chars_max: Final = 32
# A public seat id is "<section>:<row>:<seat>": three ids and two separators.
seat_id_chars_max: Final = 3 * venue_id_chars_max + 2
# Venue, section and price tier names are shown to fans; longer ones are data-entry errors.
venue_name_chars_max: Final = 128
# Price tiers in one venue; real price charts use a few dozen at most.
venue_price_tiers_max: Final = 256
# Seats in one venue = core_rs EVENT_SEATS_MAX, since one event seat map covers the whole venue.
venue_seats_max: Final = 4_194_304
# Row rank (lower = better) is only compared, never summed; this fits INT4 in the database.
row_rank_max: Final = 2**31 - 1
# Any ticket even in tiny-unit currencies (IDR, VND); 256-seat order totals stay far inside int64.
price_minor_max: Final = 10**12
