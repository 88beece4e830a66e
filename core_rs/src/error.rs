//! The one error type of the engine. The Python binding maps each variant to an exception.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The seats are not in the state the operation needs (held by someone, sold, blocked, ...).
    /// Lists every offending seat, sorted, not just the first.
    SeatUnavailable { seats: Vec<u32> },
    /// Seat indices that do not exist in the section, or appear twice in one request.
    InvalidSeat { seats: Vec<u32>, reason: &'static str },
    /// A caller-supplied argument out of its documented range.
    InvalidArgument(String),
    /// Encoded bytes that are truncated, oversized, corrupted or of another layout.
    Decode(String),
    /// A delta built on top of a different version than the one held.
    VersionMismatch { expected: u64, actual: u64 },
    /// A bounded structure is full.
    CapacityExceeded(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::SeatUnavailable { seats } => {
                write!(f, "{} seat(s) unavailable: {:?}", seats.len(), preview(seats))
            }
            CoreError::InvalidSeat { seats, reason } => {
                write!(f, "{reason}: {:?}", preview(seats))
            }
            CoreError::InvalidArgument(msg) => f.write_str(msg),
            CoreError::Decode(msg) => write!(f, "invalid seat map: {msg}"),
            CoreError::VersionMismatch { expected, actual } => write!(
                f,
                "delta applies on top of version {expected} but the map is at version {actual}"
            ),
            CoreError::CapacityExceeded(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for CoreError {}

/// Messages stay short even when thousands of seats conflict; the full list is on the error.
fn preview(seats: &[u32]) -> &[u32] {
    &seats[..seats.len().min(16)]
}

pub(crate) fn decode_err<T>(msg: impl Into<String>) -> CoreResult<T> {
    Err(CoreError::Decode(msg.into()))
}

pub(crate) fn invalid<T>(msg: impl Into<String>) -> CoreResult<T> {
    Err(CoreError::InvalidArgument(msg.into()))
}
