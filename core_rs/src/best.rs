//! Best-available seat selection.
//!
//! Rules, in order: `k` adjacent seats in one row; best-ranked row first (ties: section order,
//! then row order); never leave a single stranded seat beside the pick when any placement without
//! one exists; within a row, the placement closest to the row's centre (ties: leftmost). Only when
//! asked (`adjacent = false`) and no adjacent block exists, fall back to the best `k` seats taken
//! row by row in rank order, centre first.

use crate::error::{invalid, CoreResult};
use crate::limits::BEST_AVAILABLE_SEATS_MAX;
use crate::runtree::{free_runs, RowSummary, RunTree, EXACT_RUN_MAX};
use crate::section::Section;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub seats: Vec<u32>,
    /// Rank of the worst row in the pick.
    pub rank: u32,
}

pub fn check_quantity(k: u32) -> CoreResult<()> {
    if k == 0 || k as usize > BEST_AVAILABLE_SEATS_MAX {
        return invalid(format!(
            "quantity must be 1 to {BEST_AVAILABLE_SEATS_MAX}, got {k}"
        ));
    }
    Ok(())
}

pub fn in_section(section: &Section, k: u32, adjacent: bool, avoid_orphans: bool) -> Option<Pick> {
    let phases: &[bool] = if avoid_orphans { &[true, false] } else { &[false] };
    for &orphan_free in phases {
        let found = first_fit(section.runs(), k, orphan_free, |position| {
            let row = section.layout().rank_order()[position] as usize;
            place_in_row(section, row, k, orphan_free).map(|start| adjacent_pick(section, row, start, k))
        });
        if found.is_some() {
            return found;
        }
    }
    if adjacent {
        return None;
    }
    scattered(section, k)
}

/// Walk rank positions whose summary admits `k` seats and return the first that `locate` places.
/// The summary test is exact for `k <= EXACT_RUN_MAX`, so then the first candidate always places.
pub fn first_fit<T>(
    tree: &RunTree,
    k: u32,
    orphan_free: bool,
    mut locate: impl FnMut(usize) -> Option<T>,
) -> Option<T> {
    let accept = |summary: &RowSummary| {
        if orphan_free {
            summary.fits_without_orphan(k)
        } else {
            summary.fits(k)
        }
    };
    let mut from = 0;
    while let Some(position) = tree.first_from(from, accept) {
        if let Some(found) = locate(position) {
            return Some(found);
        }
        debug_assert!(
            k > EXACT_RUN_MAX,
            "summary admitted a row that cannot place {k} seats"
        );
        from = position + 1;
    }
    None
}

pub fn adjacent_pick(section: &Section, row: usize, start: u32, k: u32) -> Pick {
    Pick {
        seats: (start..start + k).collect(),
        rank: section.layout().row_ranks()[row],
    }
}

/// Start of the best placement of `k` adjacent seats in `row`, or `None`.
pub fn place_in_row(section: &Section, row: usize, k: u32, orphan_free: bool) -> Option<u32> {
    let (row_start, row_end) = section.layout().row_range(row);
    let k = k as usize;
    // Twice the distance between the pick's centre and the row's centre, kept in integers.
    let distance = |start: usize| (2 * start + k).abs_diff(row_start + row_end);
    let mut best: Option<(usize, usize)> = None;
    for (run_start, run_end) in free_runs(section.available_bits(), row_start, row_end) {
        let len = run_end - run_start;
        if len < k || (orphan_free && len != k && len < k + 2) {
            continue;
        }
        let (lo, hi) = (run_start, run_end - k);
        let ideal = ((row_start + row_end).saturating_sub(k) / 2).clamp(lo, hi);
        let candidates = [
            lo,
            hi,
            ideal.saturating_sub(2),
            ideal.saturating_sub(1),
            ideal,
            ideal + 1,
            ideal + 2,
        ];
        for start in candidates {
            if start < lo || start > hi {
                continue;
            }
            let strands = start - run_start == 1 || run_end - (start + k) == 1;
            if orphan_free && strands {
                continue;
            }
            let key = (distance(start), start);
            if best.is_none_or(|current| key < current) {
                best = Some(key);
            }
        }
    }
    best.map(|(_, start)| start as u32)
}

/// Non-adjacent fallback: best rows first, each row's available seats from the centre out.
pub fn scattered(section: &Section, k: u32) -> Option<Pick> {
    if section.available_count() < k as usize {
        return None;
    }
    let layout = section.layout();
    let mut seats: Vec<u32> = Vec::with_capacity(k as usize);
    for &row in layout.rank_order() {
        let row = row as usize;
        if section.row_available(row) == 0 {
            continue;
        }
        let (row_start, row_end) = layout.row_range(row);
        let mut free: Vec<usize> = free_runs(section.available_bits(), row_start, row_end)
            .flat_map(|(a, b)| a..b)
            .collect();
        free.sort_by_key(|&seat| ((2 * seat + 1).abs_diff(row_start + row_end), seat));
        let wanted = k as usize - seats.len();
        seats.extend(free.iter().take(wanted).map(|&seat| seat as u32));
        if seats.len() == k as usize {
            seats.sort_unstable();
            return Some(Pick {
                seats,
                rank: layout.row_ranks()[row],
            });
        }
    }
    debug_assert!(false, "available_count promised {k} seats");
    None
}
