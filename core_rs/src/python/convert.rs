//! Python request lists → flat `Batch`es in one pass: no per-request vectors, seats range-checked
//! as they are read. Lists and tuples take a fast path; any other iterable works too.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::errors::to_indices;
use crate::batch::Batch;

/// Append one request's seats to `batch`, or raise `InvalidSeat` listing every index of it that
/// is outside `0..seat_count`.
pub(crate) fn push_seats(
    py: Python<'_>,
    batch: &mut Batch,
    seats: &Bound<'_, PyAny>,
    seat_count: usize,
) -> PyResult<()> {
    if seats.is_instance_of::<PyString>() || seats.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "seats must be a sequence of int, not str or bytes",
        ));
    }
    let mut out_of_range = false;
    let mut push = |value: i64| {
        if value < 0 || value >= seat_count as i64 {
            out_of_range = true;
        } else {
            batch.push_seat(value as u32);
        }
    };
    if let Ok(list) = seats.cast::<PyList>() {
        for item in list.iter() {
            push(item.extract::<i64>()?);
        }
    } else {
        for item in seats.try_iter()? {
            push(item?.extract::<i64>()?);
        }
    }
    if out_of_range {
        // Error path only: re-read the request to report all of its bad indices, sorted.
        let values: Vec<i64> = seats.extract()?;
        to_indices(py, values, seat_count)?;
    }
    Ok(())
}

/// `requests`: an iterable of seat lists, all for one section of `seat_count` seats.
pub(crate) fn section_batch(
    py: Python<'_>,
    requests: &Bound<'_, PyAny>,
    seat_count: usize,
) -> PyResult<Batch> {
    let mut batch = Batch::with_capacity(requests.len().unwrap_or(0), 0);
    for request in requests.try_iter()? {
        push_seats(py, &mut batch, &request?, seat_count)?;
        batch.end_request(0);
    }
    Ok(batch)
}

/// `requests`: an iterable of `(section, seats)` pairs; `seat_count(section)` is the section's
/// size, or an error for a section that does not exist.
pub(crate) fn event_batch(
    py: Python<'_>,
    requests: &Bound<'_, PyAny>,
    seat_count: impl Fn(i64) -> PyResult<usize>,
) -> PyResult<Batch> {
    let mut batch = Batch::with_capacity(requests.len().unwrap_or(0), 0);
    for request in requests.try_iter()? {
        let request = request?;
        let (section, seats) = match request.cast::<PyTuple>() {
            Ok(pair) if pair.len() == 2 => (
                pair.get_borrowed_item(0)?.extract::<i64>()?,
                pair.get_borrowed_item(1)?.to_owned(),
            ),
            _ => request.extract::<(i64, Bound<'_, PyAny>)>()?,
        };
        push_seats(py, &mut batch, &seats, seat_count(section)?)?;
        batch.end_request(u32::try_from(section).unwrap_or(u32::MAX));
    }
    Ok(batch)
}
