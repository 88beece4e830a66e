//! `tessera_core`: the seat engine shared by every Tessera tier. Pure computation, no I/O.
//!
//! Within a section, seats are indexed `0..n` in row-major order; that index is the bit position
//! everywhere (allocator, codec, deltas).

pub mod error;
pub mod limits;
pub mod wheel;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, CoreResult};
