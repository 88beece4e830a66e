//! One section's seat states: the exact state machine every tier shares.
//!
//! `available → held → sold`, `held → available` (release), `available ⇄ blocked`. Every
//! successful call is one change batch and bumps `version` by exactly one; a failed call changes
//! nothing.

use crate::batch::Batch;
use crate::best;
use crate::error::{invalid, CoreError, CoreResult};
use crate::layout::Layout;
use crate::limits::{BATCH_REQUESTS_MAX, OP_SEATS_MAX};
use crate::runtree::{free_runs, RowSummary, RunTree};

/// Requests up to this size are checked for repeats pairwise, without sorting a copy.
const PAIRWISE_CHECK_SEATS_MAX: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SeatState {
    Available = 0,
    Held = 1,
    Sold = 2,
    Blocked = 3,
}

impl SeatState {
    pub fn from_u8(value: u8) -> Option<SeatState> {
        match value {
            0 => Some(SeatState::Available),
            1 => Some(SeatState::Held),
            2 => Some(SeatState::Sold),
            3 => Some(SeatState::Blocked),
            _ => None,
        }
    }
}

/// A state change: seats must all be in `from` and end in `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: SeatState,
    pub to: SeatState,
}

/// Per-request outcome of a batch: `None` if applied, else the seats that blocked it.
pub type Outcomes = Vec<Option<Vec<u32>>>;

pub const HOLD: Transition = Transition {
    from: SeatState::Available,
    to: SeatState::Held,
};
pub const RELEASE: Transition = Transition {
    from: SeatState::Held,
    to: SeatState::Available,
};
pub const SELL: Transition = Transition {
    from: SeatState::Held,
    to: SeatState::Sold,
};
pub const BLOCK: Transition = Transition {
    from: SeatState::Available,
    to: SeatState::Blocked,
};
pub const UNBLOCK: Transition = Transition {
    from: SeatState::Blocked,
    to: SeatState::Available,
};

#[derive(Debug, Clone)]
pub struct Section {
    layout: Layout,
    states: Vec<SeatState>,
    /// Bit `i` set iff seat `i` is available: the public one-bit view, kept in step with `states`.
    available_bits: Vec<u64>,
    available: usize,
    row_available: Vec<u32>,
    /// Row summaries indexed by rank position.
    runs: RunTree,
    version: u64,
    /// Rows changed since the last commit, and a mark per row so each is listed once.
    dirty_rows: Vec<u32>,
    row_dirty: Vec<bool>,
}

impl Section {
    pub fn new(layout: Layout) -> Section {
        let seats = layout.seat_count();
        let mut section = Section {
            states: vec![SeatState::Available; seats],
            available_bits: vec![0; seats.div_ceil(64)],
            available: 0,
            row_available: vec![0; layout.row_count()],
            runs: RunTree::new(layout.row_count()),
            dirty_rows: Vec::new(),
            row_dirty: vec![false; layout.row_count()],
            layout,
            version: 0,
        };
        section.rebuild_indexes();
        section
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn seat_count(&self) -> usize {
        self.states.len()
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn available_count(&self) -> usize {
        self.available
    }

    pub fn row_available(&self, row: usize) -> usize {
        self.row_available[row] as usize
    }

    pub fn available_bits(&self) -> &[u64] {
        &self.available_bits
    }

    pub fn runs(&self) -> &RunTree {
        &self.runs
    }

    pub fn states(&self) -> &[SeatState] {
        &self.states
    }

    pub fn state(&self, seat: u32) -> CoreResult<SeatState> {
        self.states
            .get(seat as usize)
            .copied()
            .ok_or_else(|| CoreError::InvalidSeat {
                seats: vec![seat],
                reason: "seat index out of range",
            })
    }

    /// Replace every state and the version at once (recovery from the database or a snapshot).
    pub fn restore(&mut self, states: &[u8], version: u64) -> CoreResult<()> {
        if states.len() != self.states.len() {
            return invalid(format!(
                "{} states given for a section of {} seats",
                states.len(),
                self.states.len()
            ));
        }
        let mut decoded = Vec::with_capacity(states.len());
        for (seat, &value) in states.iter().enumerate() {
            match SeatState::from_u8(value) {
                Some(state) => decoded.push(state),
                None => return invalid(format!("seat {seat}: unknown state {value}")),
            }
        }
        self.states = decoded;
        self.version = version;
        self.rebuild_indexes();
        Ok(())
    }

    /// Apply one transition to all `seats` or to none.
    pub fn apply(&mut self, seats: &[u32], transition: Transition) -> CoreResult<()> {
        self.validate(seats)?;
        self.try_apply(seats, transition)
            .map_err(|seats| CoreError::SeatUnavailable { seats })?;
        self.commit(&mut Vec::new());
        Ok(())
    }

    /// Many requests, one version bump: each request is all-or-nothing on its own and sees the
    /// effect of the ones before it, so two requests for the same seat cannot both win.
    /// Returns, per request, `None` if applied or the seats that blocked it. Invalid seat indices
    /// anywhere reject the whole batch before anything changes.
    pub fn apply_many(&mut self, requests: &[Vec<u32>], transition: Transition) -> CoreResult<Outcomes> {
        let mut batch = Batch::with_capacity(requests.len(), requests.iter().map(Vec::len).sum());
        requests.iter().for_each(|seats| batch.push(0, seats));
        self.apply_batch(&batch, transition)
    }

    /// `apply_many` over a flat batch; the batch's section numbers are ignored.
    pub fn apply_batch(&mut self, batch: &Batch, transition: Transition) -> CoreResult<Outcomes> {
        if batch.len() > BATCH_REQUESTS_MAX {
            return invalid(format!("a batch holds at most {BATCH_REQUESTS_MAX} requests"));
        }
        for (_, seats) in batch.iter() {
            self.validate(seats)?;
        }
        let outcomes: Outcomes = batch
            .iter()
            .map(|(_, seats)| self.try_apply(seats, transition).err())
            .collect();
        if outcomes.iter().any(Option::is_none) {
            self.commit(&mut Vec::new());
        }
        Ok(outcomes)
    }

    /// Apply a validated request if every seat is in `transition.from`; otherwise change nothing
    /// and return the offending seats, sorted. Indexes are brought up to date by `commit`.
    pub(crate) fn try_apply(&mut self, seats: &[u32], transition: Transition) -> Result<(), Vec<u32>> {
        if seats.iter().any(|&s| self.states[s as usize] != transition.from) {
            return Err(self.conflicts(seats, transition.from));
        }
        self.set_states(seats, transition.to);
        Ok(())
    }

    /// End a change batch: bump the version once and refresh the summaries of the rows touched,
    /// appending `(row, summary)` for each to `changed` so an enclosing index can follow.
    pub(crate) fn commit(&mut self, changed: &mut Vec<(u32, RowSummary)>) {
        self.version += 1;
        let first = changed.len();
        for &row in &self.dirty_rows {
            self.row_dirty[row as usize] = false;
            changed.push((row, self.row_summary(row as usize)));
        }
        self.dirty_rows.clear();
        let layout = &self.layout;
        let updates = changed[first..]
            .iter()
            .map(|&(row, summary)| (layout.rank_position(row as usize), summary));
        self.runs.set_many(updates);
    }

    /// Best `k` seats; see `best` for the rules. `None` when nothing fits.
    pub fn best_available(
        &self,
        k: u32,
        adjacent: bool,
        avoid_orphans: bool,
    ) -> CoreResult<Option<Vec<u32>>> {
        best::check_quantity(k)?;
        Ok(best::in_section(self, k, adjacent, avoid_orphans).map(|pick| pick.seats))
    }

    pub(crate) fn validate(&self, seats: &[u32]) -> CoreResult<()> {
        if seats.is_empty() {
            return invalid("no seats given");
        }
        if seats.len() > OP_SEATS_MAX {
            return invalid(format!("at most {OP_SEATS_MAX} seats per request"));
        }
        let mut out_of_range: Vec<u32> = seats
            .iter()
            .copied()
            .filter(|&s| s as usize >= self.states.len())
            .collect();
        if !out_of_range.is_empty() {
            out_of_range.sort_unstable();
            out_of_range.dedup();
            return Err(CoreError::InvalidSeat {
                seats: out_of_range,
                reason: "seat index out of range",
            });
        }
        if seats.len() <= PAIRWISE_CHECK_SEATS_MAX
            && !(1..seats.len()).any(|i| seats[..i].contains(&seats[i]))
        {
            return Ok(());
        }
        let mut sorted = seats.to_vec();
        sorted.sort_unstable();
        let mut repeated: Vec<u32> = sorted.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]).collect();
        if !repeated.is_empty() {
            repeated.dedup();
            return Err(CoreError::InvalidSeat {
                seats: repeated,
                reason: "seat index repeated",
            });
        }
        Ok(())
    }

    fn conflicts(&self, seats: &[u32], required: SeatState) -> Vec<u32> {
        let mut conflicts: Vec<u32> = seats
            .iter()
            .copied()
            .filter(|&s| self.states[s as usize] != required)
            .collect();
        conflicts.sort_unstable();
        conflicts
    }

    fn set_states(&mut self, seats: &[u32], to: SeatState) {
        for &seat in seats {
            let index = seat as usize;
            let was_available = self.states[index] == SeatState::Available;
            let now_available = to == SeatState::Available;
            self.states[index] = to;
            if was_available != now_available {
                self.available_bits[index / 64] ^= 1u64 << (index % 64);
                let row = self.layout.row_of(index);
                if !self.row_dirty[row] {
                    self.row_dirty[row] = true;
                    self.dirty_rows.push(row as u32);
                }
                if now_available {
                    self.available += 1;
                    self.row_available[row] += 1;
                } else {
                    self.available -= 1;
                    self.row_available[row] -= 1;
                }
            }
        }
    }

    pub fn row_summary(&self, row: usize) -> RowSummary {
        let (start, end) = self.layout.row_range(row);
        RowSummary::from_runs(free_runs(&self.available_bits, start, end))
    }

    fn rebuild_indexes(&mut self) {
        self.dirty_rows.clear();
        self.row_dirty.iter_mut().for_each(|d| *d = false);
        self.available_bits.iter_mut().for_each(|w| *w = 0);
        self.available = 0;
        self.row_available.iter_mut().for_each(|c| *c = 0);
        for row in 0..self.layout.row_count() {
            let (start, end) = self.layout.row_range(row);
            for seat in start..end {
                if self.states[seat] == SeatState::Available {
                    self.available_bits[seat / 64] |= 1u64 << (seat % 64);
                    self.row_available[row] += 1;
                    self.available += 1;
                }
            }
        }
        for row in 0..self.layout.row_count() {
            let summary = self.row_summary(row);
            self.runs.set(self.layout.rank_position(row), summary);
        }
    }
}
