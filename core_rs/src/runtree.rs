//! Per-row summaries of free runs, and a segment tree over rows in rank order that finds the best
//! row able to take `k` adjacent seats in O(log rows) — the reason best-available stays fast on a
//! half-sold stadium where most good rows are full.

/// What a row can offer: its longest run of available seats and which exact run lengths (1..=63)
/// it has. An orphan-free placement of `k` seats exists in a run of length `L` iff `L == k` or
/// `L >= k + 2`, so these two facts decide it without looking at the row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowSummary {
    pub max_run: u32,
    pub run_lengths: u64,
}

/// Runs longer than this are known only through `max_run`.
pub const EXACT_RUN_MAX: u32 = 63;

impl RowSummary {
    pub fn from_runs(runs: impl Iterator<Item = (usize, usize)>) -> RowSummary {
        let mut summary = RowSummary::default();
        for (start, end) in runs {
            let len = (end - start) as u32;
            summary.max_run = summary.max_run.max(len);
            if len <= EXACT_RUN_MAX {
                summary.run_lengths |= 1u64 << len;
            }
        }
        summary
    }

    fn merge(self, other: RowSummary) -> RowSummary {
        RowSummary {
            max_run: self.max_run.max(other.max_run),
            run_lengths: self.run_lengths | other.run_lengths,
        }
    }

    pub fn fits(&self, k: u32) -> bool {
        self.max_run >= k
    }

    /// Exact for `k <= EXACT_RUN_MAX`; for larger `k` it may say yes for a run of exactly `k + 1`,
    /// so callers confirm on the row.
    pub fn fits_without_orphan(&self, k: u32) -> bool {
        if k <= EXACT_RUN_MAX {
            self.max_run >= k + 2 || self.run_lengths & (1u64 << k) != 0
        } else {
            self.max_run >= k
        }
    }
}

/// Maximal runs of set bits within `[start, end)` of a bitmap, in order.
pub fn free_runs(bits: &[u64], start: usize, end: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut at = start;
    std::iter::from_fn(move || {
        let run_start = next_with_value(bits, at, end, true)?;
        let run_end = next_with_value(bits, run_start, end, false).unwrap_or(end);
        at = run_end;
        Some((run_start, run_end))
    })
}

/// First index in `[from, end)` whose bit equals `value`, scanning a word at a time.
pub(crate) fn next_with_value(bits: &[u64], from: usize, end: usize, value: bool) -> Option<usize> {
    let mut index = from;
    while index < end {
        let word = bits[index / 64];
        let word = if value { word } else { !word };
        let masked = word >> (index % 64);
        if masked != 0 {
            let found = index + masked.trailing_zeros() as usize;
            return (found < end).then_some(found);
        }
        index = (index / 64 + 1) * 64;
    }
    None
}

#[derive(Debug, Clone)]
pub struct RunTree {
    leaves: usize,
    nodes: Vec<RowSummary>,
    /// Reused by `set_many` so a commit allocates nothing.
    scratch: Vec<usize>,
}

/// Below this many updates, walking each leaf's path is cheaper than sorting the set.
const BULK_UPDATE_MIN: usize = 8;

impl RunTree {
    pub fn new(len: usize) -> RunTree {
        let leaves = len.next_power_of_two().max(1);
        RunTree {
            leaves,
            nodes: vec![RowSummary::default(); 2 * leaves],
            scratch: Vec::new(),
        }
    }

    pub fn set(&mut self, position: usize, summary: RowSummary) {
        self.nodes[self.leaves + position] = summary;
        self.refresh_path(self.leaves + position);
    }

    /// Set many leaves, recomputing each affected inner node once rather than once per leaf.
    pub fn set_many(&mut self, updates: impl Iterator<Item = (usize, RowSummary)>) {
        let mut nodes = std::mem::take(&mut self.scratch);
        nodes.clear();
        for (position, summary) in updates {
            self.nodes[self.leaves + position] = summary;
            nodes.push(self.leaves + position);
        }
        if nodes.len() < BULK_UPDATE_MIN {
            for &leaf in &nodes {
                self.refresh_path(leaf);
            }
        } else {
            nodes.sort_unstable();
            nodes.dedup();
            while nodes.first().is_some_and(|&node| node > 1) {
                for node in nodes.iter_mut() {
                    *node /= 2;
                }
                nodes.dedup();
                for &node in &nodes {
                    self.nodes[node] = self.nodes[2 * node].merge(self.nodes[2 * node + 1]);
                }
            }
        }
        self.scratch = nodes;
    }

    fn refresh_path(&mut self, leaf: usize) {
        let mut node = leaf;
        while node > 1 {
            node /= 2;
            self.nodes[node] = self.nodes[2 * node].merge(self.nodes[2 * node + 1]);
        }
    }

    pub fn get(&self, position: usize) -> RowSummary {
        self.nodes[self.leaves + position]
    }

    pub fn root(&self) -> RowSummary {
        self.nodes[1]
    }

    /// Leftmost position `>= from` whose summary satisfies `accept`. `accept` must be monotone:
    /// true for a merged summary whenever it is true for one of the merged parts.
    pub fn first_from(&self, from: usize, accept: impl Fn(&RowSummary) -> bool) -> Option<usize> {
        self.find(1, 0, self.leaves, from, &accept)
    }

    fn find(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        from: usize,
        accept: &impl Fn(&RowSummary) -> bool,
    ) -> Option<usize> {
        if hi <= from || !accept(&self.nodes[node]) {
            return None;
        }
        if hi - lo == 1 {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.find(2 * node, lo, mid, from, accept)
            .or_else(|| self.find(2 * node + 1, mid, hi, from, accept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits_of(pattern: &str) -> Vec<u64> {
        let mut bits = vec![0u64; pattern.len().div_ceil(64).max(1)];
        for (i, c) in pattern.chars().enumerate() {
            if c == '1' {
                bits[i / 64] |= 1 << (i % 64);
            }
        }
        bits
    }

    #[test]
    fn runs_across_word_boundaries() {
        let mut pattern = "0".repeat(60);
        pattern.push_str(&"1".repeat(10));
        pattern.push_str("0011");
        let bits = bits_of(&pattern);
        let runs: Vec<_> = free_runs(&bits, 0, pattern.len()).collect();
        assert_eq!(runs, vec![(60, 70), (72, 74)]);
        let clipped: Vec<_> = free_runs(&bits, 65, 73).collect();
        assert_eq!(clipped, vec![(65, 70), (72, 73)]);
    }

    #[test]
    fn orphan_free_rule() {
        let five = RowSummary::from_runs([(0usize, 5usize)].into_iter());
        assert!(five.fits(4));
        assert!(!five.fits_without_orphan(4));
        assert!(five.fits_without_orphan(5));
        assert!(five.fits_without_orphan(3));
    }

    #[test]
    fn tree_finds_leftmost_from() {
        let mut tree = RunTree::new(5);
        for (pos, len) in [3u32, 0, 7, 2, 7].iter().enumerate() {
            tree.set(pos, RowSummary::from_runs([(0usize, *len as usize)].into_iter()));
        }
        assert_eq!(tree.first_from(0, |s| s.fits(4)), Some(2));
        assert_eq!(tree.first_from(3, |s| s.fits(4)), Some(4));
        assert_eq!(tree.first_from(0, |s| s.fits(8)), None);
        assert_eq!(tree.first_from(0, |s| s.fits(1)), Some(0));
    }

    #[test]
    fn set_many_equals_one_by_one() {
        let summaries: Vec<RowSummary> = (0..37usize)
            .map(|i| RowSummary::from_runs([(0usize, (i * 7) % 11)].into_iter()))
            .collect();
        let mut one_by_one = RunTree::new(37);
        let mut bulk = RunTree::new(37);
        for (pos, s) in summaries.iter().enumerate() {
            one_by_one.set(pos, *s);
        }
        bulk.set_many(summaries.iter().copied().enumerate().rev());
        assert_eq!(one_by_one.nodes, bulk.nodes);
        one_by_one.set(5, RowSummary::default());
        one_by_one.set(30, RowSummary::default());
        bulk.set_many([(30, RowSummary::default()), (5, RowSummary::default())].into_iter());
        assert_eq!(one_by_one.nodes, bulk.nodes);
        for pos in (0..37).step_by(3) {
            one_by_one.set(pos, summaries[36 - pos]);
        }
        bulk.set_many((0..37).step_by(3).map(|pos| (pos, summaries[36 - pos])));
        assert_eq!(one_by_one.nodes, bulk.nodes);
    }
}
