//! Every bound of the seat engine, in one place. Units come last in each name.
//! The Python side mirrors the ones it validates against in `tessera/limits.py`.

/// Seats in one section. Seat indices fit in a `u16`-sized range; bitmaps stay ≤ 8 KiB.
pub const SECTION_SEATS_MAX: usize = 65_536;
/// Rows in one section.
pub const SECTION_ROWS_MAX: usize = 4_096;
/// Seats in one row.
pub const ROW_SEATS_MAX: usize = 4_096;
/// Sections in one event (event-wide search and the event seat map).
pub const EVENT_SECTIONS_MAX: usize = 4_096;
/// Seats in one event seat map (bounds decoder allocations).
pub const EVENT_SEATS_MAX: usize = 4_194_304;
/// Seats requested by one `best_available` call.
pub const BEST_AVAILABLE_SEATS_MAX: usize = 256;
/// Seat indices in one hold / release / sell / block call.
pub const OP_SEATS_MAX: usize = SECTION_SEATS_MAX;
/// Requests in one batch call (`hold_many`, `release_many`).
pub const BATCH_REQUESTS_MAX: usize = 65_536;
/// Encoded seat map / delta accepted by the decoder.
pub const SEATMAP_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Holds tracked by one expiry wheel.
pub const WHEEL_CAPACITY_MAX: usize = 16_777_216;
/// Length of a hold id tracked by the expiry wheel.
pub const WHEEL_HOLD_ID_BYTES_MAX: usize = 128;
/// How far after the wheel's current time a hold deadline may lie: 2^36 ms (about 795 days).
/// Six 64-slot levels of 1 ms ticks cover exactly this span.
pub const WHEEL_HORIZON_MS: u64 = 1 << 36;
