//! `SeatMap` and the event-map functions for Python.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::{non_negative, to_py, IntoPyResult};
use crate::bits;
use crate::codec::{self, SeatMap};
use crate::error::CoreError;
use crate::limits::SEATMAP_BYTES_MAX;

/// One section's public availability (one bit per seat) at one version: what regional nodes keep
/// and what fans decode. Build it from a `Section`, from a bitmap, or by decoding bytes.
#[pyclass(name = "SeatMap", module = "tessera_core", eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct PySeatMap {
    inner: SeatMap,
}

impl From<SeatMap> for PySeatMap {
    fn from(inner: SeatMap) -> Self {
        PySeatMap { inner }
    }
}

fn check_input_size(py: Python<'_>, data: &[u8]) -> PyResult<()> {
    // Checked again by the decoder; here so the GIL is not released for a hopeless input.
    if data.len() > SEATMAP_BYTES_MAX {
        let message = format!("{} bytes exceeds the {SEATMAP_BYTES_MAX}-byte limit", data.len());
        return Err(to_py(py, CoreError::Decode(message)));
    }
    Ok(())
}

#[pymethods]
impl PySeatMap {
    /// `bitmap`: bit `i % 8` of byte `i / 8` is seat `i` (1 = available), `ceil(seat_count / 8)` bytes.
    #[new]
    #[pyo3(signature = (bitmap, seat_count, version = 0))]
    fn new(py: Python<'_>, bitmap: &[u8], seat_count: i64, version: i64) -> PyResult<Self> {
        let seat_count = non_negative(seat_count, "seat_count")? as usize;
        let version = non_negative(version, "version")?;
        if bitmap.len() != seat_count.div_ceil(8) {
            return Err(PyValueError::new_err(format!(
                "bitmap has {} bytes; {seat_count} seats need {}",
                bitmap.len(),
                seat_count.div_ceil(8)
            )));
        }
        let mut words = vec![0u64; bits::words_for(seat_count)];
        for (i, &byte) in bitmap.iter().enumerate() {
            words[i / 8] |= u64::from(byte) << (8 * (i % 8));
        }
        Ok(PySeatMap {
            inner: SeatMap::new(seat_count, version, words).py(py)?,
        })
    }

    #[staticmethod]
    #[pyo3(signature = (seat_count, version = 0))]
    fn all_available(py: Python<'_>, seat_count: i64, version: i64) -> PyResult<Self> {
        let seat_count = non_negative(seat_count, "seat_count")? as usize;
        let version = non_negative(version, "version")?;
        Ok(PySeatMap {
            inner: SeatMap::all_available(seat_count, version).py(py)?,
        })
    }

    #[staticmethod]
    fn decode(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        check_input_size(py, data)?;
        Ok(PySeatMap {
            inner: py.detach(|| SeatMap::decode(data)).py(py)?,
        })
    }

    #[getter]
    fn seat_count(&self) -> usize {
        self.inner.seat_count()
    }

    #[getter]
    fn version(&self) -> u64 {
        self.inner.version()
    }

    #[getter]
    fn available_count(&self) -> usize {
        self.inner.available_count()
    }

    fn is_available(&self, py: Python<'_>, seat: i64) -> PyResult<bool> {
        let seat = super::errors::to_indices(py, vec![seat], self.inner.seat_count())?[0];
        self.inner.is_available(seat as usize).py(py)
    }

    fn available_indices(&self) -> Vec<usize> {
        (0..self.inner.seat_count())
            .filter(|&i| bits::get(self.inner.bits(), i))
            .collect()
    }

    fn bitmap<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut bytes: Vec<u8> = self.inner.bits().iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.truncate(self.inner.seat_count().div_ceil(8));
        PyBytes::new(py, &bytes)
    }

    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.encode())
    }

    /// The delta from this map to `newer` (same section, later version).
    fn delta_to<'py>(&self, py: Python<'py>, newer: &PySeatMap) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.inner.delta_to(&newer.inner).py(py)?))
    }

    /// Apply a delta built on exactly this map's version; raises `VersionMismatch` otherwise.
    fn apply_delta(&mut self, py: Python<'_>, delta: &[u8]) -> PyResult<()> {
        check_input_size(py, delta)?;
        self.inner.apply_delta(delta).py(py)
    }

    fn copy(&self) -> Self {
        self.clone()
    }

    fn __len__(&self) -> usize {
        self.inner.seat_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "SeatMap(seats={}, available={}, version={})",
            self.inner.seat_count(),
            self.inner.available_count(),
            self.inner.version()
        )
    }
}

/// One event seat map from per-section maps, in venue section order.
#[pyfunction]
#[pyo3(signature = (maps, include_versions = false))]
pub fn encode_event<'py>(
    py: Python<'py>,
    maps: Vec<PyRef<'py, PySeatMap>>,
    include_versions: bool,
) -> PyResult<Bound<'py, PyBytes>> {
    let parts: Vec<(&[u64], usize, u64)> = maps
        .iter()
        .map(|m| (m.inner.bits(), m.inner.seat_count(), m.inner.version()))
        .collect();
    let encoded = codec::encode_event(&parts, include_versions).py(py)?;
    Ok(PyBytes::new(py, &encoded))
}

/// Decode an event map for a venue whose sections have `seat_counts` seats:
/// `(version_tag, versions or None, maps)`. Without versions in the map, every map's version is 0.
#[pyfunction]
pub fn decode_event(
    py: Python<'_>,
    data: &[u8],
    seat_counts: Vec<i64>,
) -> PyResult<(u64, Option<Vec<u64>>, Vec<PySeatMap>)> {
    check_input_size(py, data)?;
    let seat_counts = seat_counts
        .into_iter()
        .map(|n| non_negative(n, "seat count").map(|n| usize::try_from(n).unwrap_or(usize::MAX)))
        .collect::<PyResult<Vec<usize>>>()?;
    let decoded = py.detach(|| codec::decode_event(data, &seat_counts)).py(py)?;
    Ok((
        decoded.version_tag,
        decoded.versions,
        decoded.maps.into_iter().map(PySeatMap::from).collect(),
    ))
}

/// The 8-byte tag an event map carries for this version vector.
#[pyfunction]
pub fn version_tag(versions: Vec<u64>) -> u64 {
    codec::version_tag(versions.into_iter())
}
