//! The Python face of the engine: thin wrappers that validate, convert, release the GIL for heavy
//! work and map `CoreError` to exceptions. No seat logic lives here.

mod errors;
mod wheel;

use pyo3::prelude::*;

#[pymodule]
fn tessera_core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    wheel::register(m)?;
    Ok(())
}
