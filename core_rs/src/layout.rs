//! A section's geometry: row boundaries and per-row ranks, validated once.

use crate::error::{invalid, CoreResult};
use crate::limits::{ROW_SEATS_MAX, SECTION_ROWS_MAX, SECTION_SEATS_MAX};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `row_starts[r]..row_starts[r + 1]` are the seat indices of row `r`; one extra end entry.
    row_starts: Vec<u32>,
    /// Lower is better. Ties are broken by row order.
    row_ranks: Vec<u32>,
    /// Row indices sorted best first: by `(rank, row)`.
    rank_order: Vec<u32>,
    /// Inverse of `rank_order`: the position of each row in it.
    rank_position: Vec<u32>,
}

impl Layout {
    /// `row_ranks` defaults to the row order (front rows best).
    pub fn new(row_lengths: &[u32], row_ranks: Option<&[u32]>) -> CoreResult<Layout> {
        if row_lengths.is_empty() || row_lengths.len() > SECTION_ROWS_MAX {
            return invalid(format!(
                "a section needs 1 to {SECTION_ROWS_MAX} rows, got {}",
                row_lengths.len()
            ));
        }
        let mut row_starts = Vec::with_capacity(row_lengths.len() + 1);
        let mut total: usize = 0;
        row_starts.push(0);
        for (row, &len) in row_lengths.iter().enumerate() {
            if len == 0 || len as usize > ROW_SEATS_MAX {
                return invalid(format!(
                    "row {row} has {len} seats; a row has 1 to {ROW_SEATS_MAX}"
                ));
            }
            total += len as usize;
            if total > SECTION_SEATS_MAX {
                return invalid(format!("a section holds at most {SECTION_SEATS_MAX} seats"));
            }
            row_starts.push(total as u32);
        }
        let row_ranks: Vec<u32> = match row_ranks {
            Some(ranks) if ranks.len() != row_lengths.len() => {
                return invalid(format!(
                    "{} row ranks given for {} rows",
                    ranks.len(),
                    row_lengths.len()
                ))
            }
            Some(ranks) => ranks.to_vec(),
            None => (0..row_lengths.len() as u32).collect(),
        };
        let mut rank_order: Vec<u32> = (0..row_lengths.len() as u32).collect();
        rank_order.sort_by_key(|&row| (row_ranks[row as usize], row));
        let mut rank_position = vec![0u32; rank_order.len()];
        for (position, &row) in rank_order.iter().enumerate() {
            rank_position[row as usize] = position as u32;
        }
        Ok(Layout {
            row_starts,
            row_ranks,
            rank_order,
            rank_position,
        })
    }

    pub fn seat_count(&self) -> usize {
        self.row_starts[self.row_starts.len() - 1] as usize
    }

    pub fn row_count(&self) -> usize {
        self.row_ranks.len()
    }

    /// Seat index range of `row`.
    pub fn row_range(&self, row: usize) -> (usize, usize) {
        (self.row_starts[row] as usize, self.row_starts[row + 1] as usize)
    }

    pub fn row_lengths(&self) -> Vec<u32> {
        self.row_starts.windows(2).map(|w| w[1] - w[0]).collect()
    }

    pub fn row_ranks(&self) -> &[u32] {
        &self.row_ranks
    }

    /// The row holding `seat`; `seat` must be in range.
    pub fn row_of(&self, seat: usize) -> usize {
        debug_assert!(seat < self.seat_count());
        self.row_starts.partition_point(|&start| start as usize <= seat) - 1
    }

    pub fn rank_order(&self) -> &[u32] {
        &self.rank_order
    }

    pub fn rank_position(&self, row: usize) -> usize {
        self.rank_position[row] as usize
    }
}
