//! `tessera_core`: the seat engine shared by every Tessera tier. Pure computation, no I/O.
//!
//! Within a section, seats are indexed `0..n` in row-major order; that index is the bit position
//! everywhere (allocator, codec, deltas).

pub mod batch;
pub mod best;
pub mod bits;
pub mod codec;
pub mod error;
pub mod event;
pub mod layout;
pub mod limits;
pub mod runtree;
pub mod section;
pub mod wheel;
pub mod wire;

#[cfg(feature = "python")]
mod python;

pub use error::{CoreError, CoreResult};
