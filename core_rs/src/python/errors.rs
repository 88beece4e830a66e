//! Exception classes and the one place `CoreError` becomes a Python exception.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::error::CoreError;

// Defined in Python so they can inherit from both `CoreError` and `ValueError` and carry
// attributes (`seats`, `expected`, `actual`) with a normal constructor.
const EXCEPTIONS_SRC: &std::ffi::CStr = c"
class CoreError(Exception):
    '''Base class of every error raised by tessera_core.'''

class SeatUnavailable(CoreError):
    '''Seats are not in the state the operation needs; `seats` lists every one of them.'''
    def __init__(self, message: str, seats: list[int]) -> None:
        super().__init__(message)
        self.seats = seats

class InvalidSeat(CoreError, ValueError):
    '''Seat indices out of range or repeated within one request; `seats` lists them.'''
    def __init__(self, message: str, seats: list[int]) -> None:
        super().__init__(message)
        self.seats = seats

class SeatMapError(CoreError, ValueError):
    '''Encoded seat-map bytes that are truncated, oversized, corrupted or of another layout.'''

class VersionMismatch(CoreError):
    '''A delta built on `expected` was applied to a map at version `actual`.'''
    def __init__(self, message: str, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

class CapacityError(CoreError):
    '''A bounded structure (the expiry wheel) is full.'''

for _cls in (CoreError, SeatUnavailable, InvalidSeat, SeatMapError, VersionMismatch, CapacityError):
    _cls.__module__ = 'tessera_core'
del _cls
";

const NAMES: [&str; 6] = [
    "CoreError",
    "SeatUnavailable",
    "InvalidSeat",
    "SeatMapError",
    "VersionMismatch",
    "CapacityError",
];

static TYPES: PyOnceLock<Vec<Py<PyType>>> = PyOnceLock::new();

fn types(py: Python<'_>) -> PyResult<&Vec<Py<PyType>>> {
    TYPES.get_or_try_init(py, || {
        let module = PyModule::from_code(
            py,
            EXCEPTIONS_SRC,
            c"tessera_core/_errors.py",
            c"tessera_core._errors",
        )?;
        NAMES
            .iter()
            .map(|name| Ok(module.getattr(*name)?.cast_into::<PyType>()?.unbind()))
            .collect()
    })
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    for (name, ty) in NAMES.iter().zip(types(py)?.iter()) {
        m.add(*name, ty.bind(py))?;
    }
    Ok(())
}

fn raise<'py, A>(py: Python<'py>, index: usize, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    let instance = types(py).and_then(|t| t[index].bind(py).call1(args));
    match instance {
        Ok(value) => PyErr::from_value(value),
        Err(err) => err,
    }
}

pub(crate) fn to_py(py: Python<'_>, err: CoreError) -> PyErr {
    let message = err.to_string();
    match err {
        CoreError::SeatUnavailable { seats } => raise(py, 1, (message, seats)),
        CoreError::InvalidSeat { seats, .. } => raise(py, 2, (message, seats)),
        CoreError::Decode(_) => raise(py, 3, (message,)),
        CoreError::VersionMismatch { expected, actual } => raise(py, 4, (message, expected, actual)),
        CoreError::CapacityExceeded(_) => raise(py, 5, (message,)),
        CoreError::InvalidArgument(_) => PyValueError::new_err(message),
    }
}

/// `?`-friendly conversion for binding code: `core_call().map_err(|e| py_err(py, e))?`.
pub(crate) trait IntoPyResult<T> {
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for Result<T, CoreError> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}

/// Indices outside `0..seat_count` (negative ones included) are reported here, all of them, sorted,
/// the way the engine reports the ones it can represent.
pub(crate) fn to_indices(py: Python<'_>, seats: Vec<i64>, seat_count: usize) -> PyResult<Vec<u32>> {
    let mut bad: Vec<i64> = seats
        .iter()
        .copied()
        .filter(|&s| s < 0 || s >= seat_count as i64)
        .collect();
    if !bad.is_empty() {
        bad.sort_unstable();
        bad.dedup();
        let message = format!("seat index out of range: {bad:?}");
        return Err(raise(py, 2, (message, bad)));
    }
    Ok(seats.into_iter().map(|s| s as u32).collect())
}

/// Counts and sizes from Python arrive as `i64` so a negative gets a ValueError, not OverflowError.
pub(crate) fn non_negative(value: i64, what: &str) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| PyValueError::new_err(format!("{what} must be >= 0, got {value}")))
}
