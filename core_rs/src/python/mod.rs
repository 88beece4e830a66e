//! The Python face of the engine: thin wrappers that validate, convert, release the GIL for heavy
//! work and map `CoreError` to exceptions. No seat logic lives here.

mod codec;
mod convert;
mod errors;
mod seats;
mod wheel;

use pyo3::prelude::*;

#[pymodule]
fn tessera_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    wheel::register(m)?;
    m.add_class::<seats::PySeatState>()?;
    m.add_class::<seats::PySection>()?;
    m.add_class::<seats::PyEventSeats>()?;
    m.add_class::<codec::PySeatMap>()?;
    m.add_function(wrap_pyfunction!(codec::encode_event, m)?)?;
    m.add_function(wrap_pyfunction!(codec::decode_event, m)?)?;
    m.add_function(wrap_pyfunction!(codec::version_tag, m)?)?;
    add_limits(m)?;
    Ok(())
}

/// The engine's bounds, so Python code and tests read them instead of copying numbers.
fn add_limits(m: &Bound<'_, PyModule>) -> PyResult<()> {
    use crate::limits::*;
    for (name, value) in [
        ("SECTION_SEATS_MAX", SECTION_SEATS_MAX),
        ("SECTION_ROWS_MAX", SECTION_ROWS_MAX),
        ("ROW_SEATS_MAX", ROW_SEATS_MAX),
        ("EVENT_SECTIONS_MAX", EVENT_SECTIONS_MAX),
        ("EVENT_SEATS_MAX", EVENT_SEATS_MAX),
        ("BEST_AVAILABLE_SEATS_MAX", BEST_AVAILABLE_SEATS_MAX),
        ("BATCH_REQUESTS_MAX", BATCH_REQUESTS_MAX),
        ("SEATMAP_BYTES_MAX", SEATMAP_BYTES_MAX),
        ("WHEEL_CAPACITY_MAX", WHEEL_CAPACITY_MAX),
        ("WHEEL_HOLD_ID_BYTES_MAX", WHEEL_HOLD_ID_BYTES_MAX),
    ] {
        m.add(name, value)?;
    }
    m.add("WHEEL_HORIZON_MS", WHEEL_HORIZON_MS)?;
    Ok(())
}
