//! `tessera_core.ExpiryWheel`: the hold-expiry timing wheel for Python.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::errors::IntoPyResult;
use crate::wheel::ExpiryWheel;

/// Work at least this big runs with the GIL released; below it the release costs more than it
/// frees. Counted in holds tracked (`pop_expired`) or batch items (`schedule_many`).
const DETACH_MIN_ITEMS: usize = 1024;
/// Upper bound on the buffer reserved from a batch's `len()` before iterating it.
const BATCH_RESERVE_MAX: usize = 65_536;

/// A non-negative `int` argument. Negative and too-large values raise `ValueError` (rather than
/// PyO3's `OverflowError`), non-integers `TypeError`; objects with `__index__` are accepted.
fn non_negative(value: &Bound<'_, PyAny>, name: &str) -> PyResult<u64> {
    let py = value.py();
    match value.extract::<i64>() {
        Ok(v) => u64::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0, got {v}"))),
        Err(err) if err.is_instance_of::<PyOverflowError>(py) => {
            let message = if value.lt(0)? {
                format!("{name} must be >= 0, got a negative number")
            } else {
                format!("{name} must be at most 2**63 - 1")
            };
            Err(PyValueError::new_err(message))
        }
        Err(err) if err.is_instance_of::<PyTypeError>(py) => Err(PyTypeError::new_err(format!(
            "{name} must be an int, not {}",
            value.get_type().name()?
        ))),
        Err(err) => Err(err),
    }
}

/// A bounded set of hold deadlines that yields the expired ones in deadline order.
///
/// A hierarchical timing wheel with 1 ms ticks. Times are milliseconds on the caller's clock.
/// The wheel's clock starts at `now_ms` and only moves forward, to the `now_ms` given to
/// `pop_expired`; deadlines may lie at most 2**36 ms (about 795 days) after it. Scheduling and
/// cancelling are O(1) (O(log n) for a hold already due), popping is O(log n) per hold returned,
/// and time that passes with nothing due costs nothing, however long.
///
/// `capacity` (1 to 16_777_216) bounds the holds tracked; memory follows the holds actually
/// tracked. Hold ids are non-empty strings of at most 128 UTF-8 bytes.
///
/// Not thread-safe: share one wheel between threads only under a lock (a call made while
/// another thread is inside one raises RuntimeError).
///
/// Raises ValueError for a capacity out of range or a negative `now_ms`.
#[pyclass(module = "tessera_core", name = "ExpiryWheel")]
pub(crate) struct PyExpiryWheel {
    inner: ExpiryWheel,
}

#[pymethods]
impl PyExpiryWheel {
    #[new]
    #[pyo3(signature = (capacity, now_ms))]
    fn new(py: Python<'_>, capacity: &Bound<'_, PyAny>, now_ms: &Bound<'_, PyAny>) -> PyResult<Self> {
        let capacity = usize::try_from(non_negative(capacity, "capacity")?).unwrap_or(usize::MAX);
        let now_ms = non_negative(now_ms, "now_ms")?;
        let inner = ExpiryWheel::new(capacity, now_ms).py(py)?;
        Ok(Self { inner })
    }

    /// Schedule `hold_id` to expire at `deadline_ms`, or move it there if already tracked
    /// (a hold extension).
    ///
    /// A deadline at or before the wheel's current time is due at the next `pop_expired`.
    /// Raises ValueError for an empty or over-long hold id, a negative deadline or one more than
    /// 2**36 ms after the wheel's current time, and tessera_core.CapacityError when `hold_id` is
    /// new and the wheel is full. On error nothing changes.
    #[pyo3(signature = (hold_id, deadline_ms))]
    fn schedule(&mut self, py: Python<'_>, hold_id: &str, deadline_ms: &Bound<'_, PyAny>) -> PyResult<()> {
        let deadline_ms = non_negative(deadline_ms, "deadline_ms")?;
        self.inner.schedule(hold_id, deadline_ms).py(py)
    }

    /// Schedule every `(hold_id, deadline_ms)` tuple of `items` as `schedule` would, in order
    /// (a repeated id ends at its last deadline), in one call.
    ///
    /// All or nothing: if any item is invalid (TypeError, ValueError) or the new ids do not fit
    /// (tessera_core.CapacityError), nothing is scheduled. Large batches run without the GIL.
    #[pyo3(signature = (items))]
    fn schedule_many(&mut self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<()> {
        let reserve = items.len().unwrap_or(0).min(BATCH_RESERVE_MAX);
        let mut batch: Vec<(String, u64)> = Vec::with_capacity(reserve);
        for (i, item) in items.try_iter()?.enumerate() {
            let item = item?;
            let pair = match item.cast::<PyTuple>() {
                Ok(pair) if pair.len() == 2 => pair,
                _ => {
                    return Err(PyTypeError::new_err(format!(
                        "items[{i}] must be a (hold_id, deadline_ms) tuple, not {}",
                        item.get_type().name()?
                    )))
                }
            };
            let hold_id = pair.get_item(0)?;
            let Ok(hold_id) = hold_id.cast::<PyString>() else {
                return Err(PyTypeError::new_err(format!(
                    "items[{i}]: hold_id must be a str, not {}",
                    hold_id.get_type().name()?
                )));
            };
            let hold_id = hold_id.to_str()?.to_owned();
            let deadline_ms = non_negative(&pair.get_item(1)?, &format!("items[{i}]: deadline_ms"))?;
            batch.push((hold_id, deadline_ms));
        }
        let inner = &mut self.inner;
        if batch.len() >= DETACH_MIN_ITEMS {
            py.detach(move || inner.schedule_many(&batch)).py(py)
        } else {
            inner.schedule_many(&batch).py(py)
        }
    }

    /// Stop tracking `hold_id`. Returns whether it was tracked.
    #[pyo3(signature = (hold_id))]
    fn cancel(&mut self, hold_id: &str) -> bool {
        self.inner.cancel(hold_id)
    }

    /// Advance the wheel's clock to `now_ms` and remove and return the holds due by then, as
    /// `(hold_id, deadline_ms)` tuples in deadline order (equal deadlines in schedule order).
    ///
    /// At most `limit` are returned (all when None); the rest stay due and come first next time.
    /// A `now_ms` earlier than the wheel's clock moves nothing, but holds already due are still
    /// returned. Raises ValueError for a negative `now_ms` or `limit`.
    #[pyo3(signature = (now_ms, limit = None))]
    fn pop_expired(
        &mut self,
        py: Python<'_>,
        now_ms: &Bound<'_, PyAny>,
        limit: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Vec<(String, u64)>> {
        let now_ms = non_negative(now_ms, "now_ms")?;
        let limit = match limit {
            Some(limit) => usize::try_from(non_negative(limit, "limit")?).unwrap_or(usize::MAX),
            None => usize::MAX,
        };
        let inner = &mut self.inner;
        if inner.len() >= DETACH_MIN_ITEMS && limit > 0 {
            Ok(py.detach(move || inner.pop_expired(now_ms, limit)))
        } else {
            Ok(inner.pop_expired(now_ms, limit))
        }
    }

    /// The earliest deadline tracked (due or not), exactly, or None when the wheel is empty.
    fn next_deadline_ms(&self) -> Option<u64> {
        self.inner.next_deadline_ms()
    }

    /// The deadline `hold_id` is scheduled for, or None if it is not tracked.
    #[pyo3(signature = (hold_id))]
    fn deadline_ms(&self, hold_id: &str) -> Option<u64> {
        self.inner.deadline_ms(hold_id)
    }

    /// The most holds the wheel tracks at once.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __contains__(&self, hold_id: &Bound<'_, PyAny>) -> bool {
        hold_id
            .cast::<PyString>()
            .ok()
            .and_then(|hold_id| hold_id.to_str().ok())
            .is_some_and(|hold_id| self.inner.contains(hold_id))
    }

    fn __repr__(&self) -> String {
        format!(
            "ExpiryWheel(capacity={}, len={}, now_ms={})",
            self.inner.capacity(),
            self.inner.len(),
            self.inner.now_ms()
        )
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyExpiryWheel>()
}
