//! `Section`, `EventSeats` and `SeatState` for Python.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::codec::PySeatMap;
use super::convert::{event_batch, section_batch};
use super::errors::{non_negative, to_indices, IntoPyResult};
use crate::codec::{encode_event, SeatMap};
use crate::event::EventSeats;
use crate::layout::Layout;
use crate::section::{self, SeatState, Section, Transition};

#[pyclass(name = "SeatState", module = "tessera_core", eq, eq_int, frozen, hash)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum PySeatState {
    #[pyo3(name = "AVAILABLE")]
    Available = 0,
    #[pyo3(name = "HELD")]
    Held = 1,
    #[pyo3(name = "SOLD")]
    Sold = 2,
    #[pyo3(name = "BLOCKED")]
    Blocked = 3,
}

impl From<SeatState> for PySeatState {
    fn from(state: SeatState) -> Self {
        match state {
            SeatState::Available => PySeatState::Available,
            SeatState::Held => PySeatState::Held,
            SeatState::Sold => PySeatState::Sold,
            SeatState::Blocked => PySeatState::Blocked,
        }
    }
}

fn layout(py: Python<'_>, row_lengths: Vec<i64>, row_ranks: Option<Vec<i64>>) -> PyResult<Layout> {
    let to_u32 = |values: Vec<i64>, what: &str| -> PyResult<Vec<u32>> {
        values
            .into_iter()
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("{what} out of range: {v}")))
            })
            .collect()
    };
    let lengths = to_u32(row_lengths, "row length")?;
    let ranks = row_ranks.map(|r| to_u32(r, "row rank")).transpose()?;
    Layout::new(&lengths, ranks.as_deref()).py(py)
}

fn quantity(k: i64) -> PyResult<u32> {
    let max = crate::limits::BEST_AVAILABLE_SEATS_MAX as i64;
    if !(1..=max).contains(&k) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "quantity must be 1 to {max}, got {k}"
        )));
    }
    Ok(k as u32)
}

/// One section's seats: the state machine `available → held → sold`, `held → available`,
/// `available ⇄ blocked`. Every successful change call bumps `version` by one; a failed call
/// changes nothing. Not safe to share between threads without a lock.
#[pyclass(name = "Section", module = "tessera_core")]
pub struct PySection {
    inner: Section,
}

#[pymethods]
impl PySection {
    #[new]
    #[pyo3(signature = (row_lengths, row_ranks = None))]
    fn new(py: Python<'_>, row_lengths: Vec<i64>, row_ranks: Option<Vec<i64>>) -> PyResult<Self> {
        Ok(PySection {
            inner: Section::new(layout(py, row_lengths, row_ranks)?),
        })
    }

    #[getter]
    fn seat_count(&self) -> usize {
        self.inner.seat_count()
    }

    #[getter]
    fn row_count(&self) -> usize {
        self.inner.layout().row_count()
    }

    #[getter]
    fn row_lengths(&self) -> Vec<u32> {
        self.inner.layout().row_lengths()
    }

    #[getter]
    fn row_ranks(&self) -> Vec<u32> {
        self.inner.layout().row_ranks().to_vec()
    }

    #[getter]
    fn version(&self) -> u64 {
        self.inner.version()
    }

    #[getter]
    fn available_count(&self) -> usize {
        self.inner.available_count()
    }

    fn state(&self, py: Python<'_>, seat: i64) -> PyResult<PySeatState> {
        let seat = to_indices(py, vec![seat], self.inner.seat_count())?[0];
        Ok(self.inner.state(seat).py(py)?.into())
    }

    /// One byte per seat (0 available, 1 held, 2 sold, 3 blocked), for snapshots.
    fn states<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes: Vec<u8> = self.inner.states().iter().map(|&s| s as u8).collect();
        PyBytes::new(py, &bytes)
    }

    fn restore(&mut self, py: Python<'_>, states: &[u8], version: i64) -> PyResult<()> {
        let version = non_negative(version, "version")?;
        self.inner.restore(states, version).py(py)
    }

    fn hold(&mut self, py: Python<'_>, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, seats, section::HOLD)
    }

    fn release(&mut self, py: Python<'_>, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, seats, section::RELEASE)
    }

    fn sell(&mut self, py: Python<'_>, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, seats, section::SELL)
    }

    fn block(&mut self, py: Python<'_>, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, seats, section::BLOCK)
    }

    fn unblock(&mut self, py: Python<'_>, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, seats, section::UNBLOCK)
    }

    fn hold_many(&mut self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::HOLD)
    }

    fn release_many(
        &mut self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::RELEASE)
    }

    fn sell_many(&mut self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::SELL)
    }

    #[pyo3(signature = (k, adjacent = true, avoid_orphans = true))]
    fn best_available(
        &self,
        py: Python<'_>,
        k: i64,
        adjacent: bool,
        avoid_orphans: bool,
    ) -> PyResult<Option<Vec<u32>>> {
        self.inner
            .best_available(quantity(k)?, adjacent, avoid_orphans)
            .py(py)
    }

    fn seat_map(&self) -> PySeatMap {
        PySeatMap::from(SeatMap::of_section(&self.inner))
    }

    fn encode<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &SeatMap::of_section(&self.inner).encode())
    }

    fn __len__(&self) -> usize {
        self.inner.seat_count()
    }

    fn __repr__(&self) -> String {
        format!(
            "Section(seats={}, rows={}, available={}, version={})",
            self.inner.seat_count(),
            self.inner.layout().row_count(),
            self.inner.available_count(),
            self.inner.version()
        )
    }
}

impl PySection {
    fn change(&mut self, py: Python<'_>, seats: Vec<i64>, transition: Transition) -> PyResult<()> {
        let seats = to_indices(py, seats, self.inner.seat_count())?;
        self.inner.apply(&seats, transition).py(py)
    }

    fn change_many(
        &mut self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        transition: Transition,
    ) -> PyResult<Vec<Option<Vec<u32>>>> {
        let batch = section_batch(py, requests, self.inner.seat_count())?;
        let inner = &mut self.inner;
        py.detach(|| inner.apply_batch(&batch, transition)).py(py)
    }
}

/// Every section of one event: batches across sections in one call, and best-available over the
/// whole venue in O(log rows). Sections are addressed by position (0-based, venue order).
#[pyclass(name = "EventSeats", module = "tessera_core")]
pub struct PyEventSeats {
    inner: EventSeats,
}

#[pymethods]
impl PyEventSeats {
    /// `sections`: per section, `(row_lengths, row_ranks or None)`.
    #[new]
    fn new(py: Python<'_>, sections: Vec<(Vec<i64>, Option<Vec<i64>>)>) -> PyResult<Self> {
        let layouts = sections
            .into_iter()
            .map(|(lengths, ranks)| layout(py, lengths, ranks))
            .collect::<PyResult<Vec<Layout>>>()?;
        Ok(PyEventSeats {
            inner: EventSeats::new(layouts).py(py)?,
        })
    }

    #[getter]
    fn section_count(&self) -> usize {
        self.inner.sections().len()
    }

    #[getter]
    fn seat_count(&self) -> usize {
        self.inner.sections().iter().map(Section::seat_count).sum()
    }

    #[getter]
    fn available_count(&self) -> usize {
        self.inner.available_count()
    }

    fn section_seat_counts(&self) -> Vec<usize> {
        self.inner.sections().iter().map(Section::seat_count).collect()
    }

    fn versions(&self) -> Vec<u64> {
        self.inner.sections().iter().map(Section::version).collect()
    }

    fn version(&self, py: Python<'_>, section: i64) -> PyResult<u64> {
        Ok(self.section(py, section)?.version())
    }

    fn section_available_count(&self, py: Python<'_>, section: i64) -> PyResult<usize> {
        Ok(self.section(py, section)?.available_count())
    }

    fn state(&self, py: Python<'_>, section: i64, seat: i64) -> PyResult<PySeatState> {
        let found = self.section(py, section)?;
        let seat = to_indices(py, vec![seat], found.seat_count())?[0];
        Ok(found.state(seat).py(py)?.into())
    }

    fn states<'py>(&self, py: Python<'py>, section: i64) -> PyResult<Bound<'py, PyBytes>> {
        let bytes: Vec<u8> = self
            .section(py, section)?
            .states()
            .iter()
            .map(|&s| s as u8)
            .collect();
        Ok(PyBytes::new(py, &bytes))
    }

    fn restore(&mut self, py: Python<'_>, section: i64, states: &[u8], version: i64) -> PyResult<()> {
        let version = non_negative(version, "version")?;
        self.inner.restore(section_index(section), states, version).py(py)
    }

    fn hold(&mut self, py: Python<'_>, section: i64, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, section, seats, section::HOLD)
    }

    fn release(&mut self, py: Python<'_>, section: i64, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, section, seats, section::RELEASE)
    }

    fn sell(&mut self, py: Python<'_>, section: i64, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, section, seats, section::SELL)
    }

    fn block(&mut self, py: Python<'_>, section: i64, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, section, seats, section::BLOCK)
    }

    fn unblock(&mut self, py: Python<'_>, section: i64, seats: Vec<i64>) -> PyResult<()> {
        self.change(py, section, seats, section::UNBLOCK)
    }

    fn hold_many(&mut self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::HOLD)
    }

    fn release_many(
        &mut self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::RELEASE)
    }

    fn sell_many(&mut self, py: Python<'_>, requests: &Bound<'_, PyAny>) -> PyResult<Vec<Option<Vec<u32>>>> {
        self.change_many(py, requests, section::SELL)
    }

    /// Best `k` seats within one section of `sections` (every section when `None`):
    /// `(section, seats)` or `None`.
    #[pyo3(signature = (k, sections = None, adjacent = true, avoid_orphans = true))]
    fn best_available(
        &self,
        py: Python<'_>,
        k: i64,
        sections: Option<Vec<i64>>,
        adjacent: bool,
        avoid_orphans: bool,
    ) -> PyResult<Option<(u32, Vec<u32>)>> {
        let within: Option<Vec<u32>> = sections.map(|list| list.into_iter().map(section_index).collect());
        self.inner
            .best_available(quantity(k)?, within.as_deref(), adjacent, avoid_orphans)
            .py(py)
    }

    fn seat_map(&self, py: Python<'_>, section: i64) -> PyResult<PySeatMap> {
        Ok(PySeatMap::from(SeatMap::of_section(self.section(py, section)?)))
    }

    fn encode_section<'py>(&self, py: Python<'py>, section: i64) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(
            py,
            &SeatMap::of_section(self.section(py, section)?).encode(),
        ))
    }

    /// The whole event's seat map (see docs/seatmap-format.md).
    #[pyo3(signature = (include_versions = false))]
    fn encode<'py>(&self, py: Python<'py>, include_versions: bool) -> PyResult<Bound<'py, PyBytes>> {
        let inner = &self.inner;
        let encoded = py.detach(|| {
            let parts: Vec<(&[u64], usize, u64)> = inner
                .sections()
                .iter()
                .map(|s| (s.available_bits(), s.seat_count(), s.version()))
                .collect();
            encode_event(&parts, include_versions)
        });
        Ok(PyBytes::new(py, &encoded.py(py)?))
    }

    fn __repr__(&self) -> String {
        format!(
            "EventSeats(sections={}, seats={}, available={})",
            self.inner.sections().len(),
            self.seat_count(),
            self.inner.available_count()
        )
    }
}

/// Out-of-range positions (including negative ones) map to `u32::MAX`, which the engine rejects.
fn section_index(section: i64) -> u32 {
    u32::try_from(section).unwrap_or(u32::MAX)
}

impl PyEventSeats {
    fn section(&self, py: Python<'_>, section: i64) -> PyResult<&Section> {
        self.inner.section(section_index(section)).py(py)
    }

    fn change(
        &mut self,
        py: Python<'_>,
        section: i64,
        seats: Vec<i64>,
        transition: Transition,
    ) -> PyResult<()> {
        let seats = to_indices(py, seats, self.section(py, section)?.seat_count())?;
        self.inner
            .apply(section_index(section), &seats, transition)
            .py(py)
    }

    fn change_many(
        &mut self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        transition: Transition,
    ) -> PyResult<Vec<Option<Vec<u32>>>> {
        let batch = event_batch(py, requests, |section| {
            Ok(self.section(py, section)?.seat_count())
        })?;
        let inner = &mut self.inner;
        py.detach(|| inner.apply_batch(&batch, transition)).py(py)
    }
}
