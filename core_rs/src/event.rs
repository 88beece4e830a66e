//! All sections of one event in one object: one call per batch across the event, and
//! best-available over every row of the venue in O(log rows) through a venue-wide rank index.

use crate::batch::Batch;
use crate::best::{self, Pick};
use crate::error::{invalid, CoreError, CoreResult};
use crate::layout::Layout;
use crate::limits::{BATCH_REQUESTS_MAX, EVENT_SECTIONS_MAX};
use crate::runtree::{RowSummary, RunTree};
use crate::section::{Outcomes, Section, Transition};

#[derive(Debug, Clone)]
pub struct EventSeats {
    sections: Vec<Section>,
    /// Every row of the venue, best first: `(rank, section, row)` order.
    order: Vec<(u32, u32)>,
    /// `positions[section][row]` is the row's index in `order`.
    positions: Vec<Vec<u32>>,
    runs: RunTree,
    /// Per-section marks for the batch being applied (kept to avoid an allocation per batch).
    touched: Vec<bool>,
}

impl EventSeats {
    pub fn new(layouts: Vec<Layout>) -> CoreResult<EventSeats> {
        if layouts.is_empty() || layouts.len() > EVENT_SECTIONS_MAX {
            return invalid(format!(
                "an event has 1 to {EVENT_SECTIONS_MAX} sections, got {}",
                layouts.len()
            ));
        }
        let sections: Vec<Section> = layouts.into_iter().map(Section::new).collect();
        let mut keyed: Vec<(u32, u32, u32)> = Vec::new();
        for (s, section) in sections.iter().enumerate() {
            for (r, &rank) in section.layout().row_ranks().iter().enumerate() {
                keyed.push((rank, s as u32, r as u32));
            }
        }
        keyed.sort_unstable();
        let mut positions: Vec<Vec<u32>> = sections.iter().map(|s| vec![0; s.layout().row_count()]).collect();
        for (position, &(_, s, r)) in keyed.iter().enumerate() {
            positions[s as usize][r as usize] = position as u32;
        }
        let order = keyed.iter().map(|&(_, s, r)| (s, r)).collect();
        let mut runs = RunTree::new(keyed.len());
        runs.set_many(
            keyed
                .iter()
                .enumerate()
                .map(|(position, &(_, s, r))| (position, sections[s as usize].row_summary(r as usize))),
        );
        let touched = vec![false; sections.len()];
        Ok(EventSeats {
            runs,
            sections,
            order,
            positions,
            touched,
        })
    }

    pub fn sections(&self) -> &[Section] {
        &self.sections
    }

    pub fn section(&self, section: u32) -> CoreResult<&Section> {
        match self.sections.get(section as usize) {
            Some(found) => Ok(found),
            None => invalid(format!(
                "section index {section} out of range (the event has {})",
                self.sections.len()
            )),
        }
    }

    pub fn available_count(&self) -> usize {
        self.sections.iter().map(Section::available_count).sum()
    }

    pub fn apply(&mut self, section: u32, seats: &[u32], transition: Transition) -> CoreResult<()> {
        self.section(section)?.validate(seats)?;
        self.sections[section as usize]
            .try_apply(seats, transition)
            .map_err(|seats| CoreError::SeatUnavailable { seats })?;
        self.commit(&[section]);
        Ok(())
    }

    /// Requests `(section, seats)`: per-request all-or-nothing, one version bump per section
    /// touched, nothing changed if any request names an invalid section or seat.
    pub fn apply_many(
        &mut self,
        requests: &[(u32, Vec<u32>)],
        transition: Transition,
    ) -> CoreResult<Outcomes> {
        self.apply_batch(&Batch::from_requests(requests), transition)
    }

    /// `apply_many` over a flat batch.
    pub fn apply_batch(&mut self, batch: &Batch, transition: Transition) -> CoreResult<Outcomes> {
        if batch.len() > BATCH_REQUESTS_MAX {
            return invalid(format!("a batch holds at most {BATCH_REQUESTS_MAX} requests"));
        }
        for (section, seats) in batch.iter() {
            self.section(section)?.validate(seats)?;
        }
        let mut touched: Vec<u32> = Vec::new();
        let outcomes = batch
            .iter()
            .map(|(section, seats)| {
                let result = self.sections[section as usize].try_apply(seats, transition).err();
                if result.is_none() && !self.touched[section as usize] {
                    self.touched[section as usize] = true;
                    touched.push(section);
                }
                result
            })
            .collect();
        touched.iter().for_each(|&s| self.touched[s as usize] = false);
        self.commit(&touched);
        Ok(outcomes)
    }

    pub fn restore(&mut self, section: u32, states: &[u8], version: u64) -> CoreResult<()> {
        self.section(section)?;
        let s = section as usize;
        self.sections[s].restore(states, version)?;
        let updates: Vec<(usize, RowSummary)> = (0..self.sections[s].layout().row_count())
            .map(|row| (self.positions[s][row] as usize, self.sections[s].row_summary(row)))
            .collect();
        self.runs.set_many(updates.into_iter());
        Ok(())
    }

    /// End the change batch of each section in `sections` and carry their row changes into the
    /// venue-wide index.
    fn commit(&mut self, sections: &[u32]) {
        let mut changed: Vec<(u32, RowSummary)> = Vec::new();
        let mut updates: Vec<(usize, RowSummary)> = Vec::new();
        for &section in sections {
            changed.clear();
            self.sections[section as usize].commit(&mut changed);
            let positions = &self.positions[section as usize];
            updates.extend(
                changed
                    .iter()
                    .map(|&(row, summary)| (positions[row as usize] as usize, summary)),
            );
        }
        self.runs.set_many(updates.into_iter());
    }

    /// Best `k` seats in one section, over `within` (all sections when `None`).
    pub fn best_available(
        &self,
        k: u32,
        within: Option<&[u32]>,
        adjacent: bool,
        avoid_orphans: bool,
    ) -> CoreResult<Option<(u32, Vec<u32>)>> {
        best::check_quantity(k)?;
        let candidates: Vec<u32> = match within {
            Some(list) => {
                let mut list = list.to_vec();
                for &s in &list {
                    self.section(s)?;
                }
                list.sort_unstable();
                list.dedup();
                list
            }
            None => (0..self.sections.len() as u32).collect(),
        };
        let phases: &[bool] = if avoid_orphans { &[true, false] } else { &[false] };
        for &orphan_free in phases {
            let found = match within {
                None => self.adjacent_venue_wide(k, orphan_free),
                Some(_) => self.adjacent_among(&candidates, k, orphan_free),
            };
            if let Some(found) = found {
                return Ok(Some(found));
            }
        }
        if adjacent {
            return Ok(None);
        }
        let scattered = candidates
            .iter()
            .filter_map(|&s| best::scattered(&self.sections[s as usize], k).map(|pick| (s, pick)))
            .min_by_key(|(s, pick)| (pick.rank, *s));
        Ok(scattered.map(|(s, pick)| (s, pick.seats)))
    }

    fn adjacent_venue_wide(&self, k: u32, orphan_free: bool) -> Option<(u32, Vec<u32>)> {
        best::first_fit(&self.runs, k, orphan_free, |position| {
            let (s, row) = self.order[position];
            let section = &self.sections[s as usize];
            best::place_in_row(section, row as usize, k, orphan_free)
                .map(|start| (s, best::adjacent_pick(section, row as usize, start, k).seats))
        })
    }

    fn adjacent_among(&self, candidates: &[u32], k: u32, orphan_free: bool) -> Option<(u32, Vec<u32>)> {
        let mut best_pick: Option<(u32, u32, Pick)> = None;
        for &s in candidates {
            let section = &self.sections[s as usize];
            let found = best::first_fit(section.runs(), k, orphan_free, |position| {
                let row = section.layout().rank_order()[position] as usize;
                best::place_in_row(section, row, k, orphan_free)
                    .map(|start| best::adjacent_pick(section, row, start, k))
            });
            if let Some(pick) = found {
                if best_pick.as_ref().is_none_or(|(rank, _, _)| pick.rank < *rank) {
                    best_pick = Some((pick.rank, s, pick));
                }
            }
        }
        best_pick.map(|(_, s, pick)| (s, pick.seats))
    }
}
