//! Best-available against a brute-force search over every legal placement.

use proptest::prelude::*;
use tessera_core::event::EventSeats;
use tessera_core::layout::Layout;
use tessera_core::section::{self, SeatState, Section};

/// `(orphan_free, rank, section, row, distance, start)` for every adjacent placement.
fn placements(sections: &[&Section], k: usize) -> Vec<(bool, u32, usize, usize, usize, usize)> {
    let mut out = Vec::new();
    for (s, section) in sections.iter().enumerate() {
        let layout = section.layout();
        for row in 0..layout.row_count() {
            let (row_start, row_end) = layout.row_range(row);
            let free = |seat: usize| {
                seat >= row_start && seat < row_end && section.states()[seat] == SeatState::Available
            };
            for start in row_start..row_end.saturating_sub(k - 1) {
                if !(start..start + k).all(free) {
                    continue;
                }
                let left_orphan = free(start.wrapping_sub(1)) && !free(start.wrapping_sub(2));
                let right_orphan = free(start + k) && !free(start + k + 1);
                let distance = (2 * start + k).abs_diff(row_start + row_end);
                out.push((
                    !(left_orphan || right_orphan),
                    layout.row_ranks()[row],
                    s,
                    row,
                    distance,
                    start,
                ));
            }
        }
    }
    out
}

/// The best placement by the documented rules: orphan-free first (when asked), then rank,
/// section, row order, distance to the row centre, leftmost.
fn brute_force(sections: &[&Section], k: usize, avoid_orphans: bool) -> Option<(usize, Vec<u32>)> {
    placements(sections, k)
        .into_iter()
        .min_by_key(|&(orphan_free, rank, s, row, distance, start)| {
            let row_key = (rank, s, row);
            (avoid_orphans && !orphan_free, row_key, distance, start)
        })
        .map(|(_, _, s, _, _, start)| (s, (start as u32..(start + k) as u32).collect()))
}

fn layout_strategy() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
    prop::collection::vec(1u32..=14, 1..6).prop_flat_map(|lengths| {
        let rows = lengths.len();
        (Just(lengths), prop::collection::vec(0u32..4, rows))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn section_pick_is_the_brute_force_best(
        (lengths, ranks) in layout_strategy(),
        taken in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        k in 1usize..7,
        avoid_orphans in any::<bool>(),
    ) {
        let mut section = Section::new(Layout::new(&lengths, Some(&ranks)).unwrap());
        for index in taken {
            let seat = index.index(section.seat_count()) as u32;
            let _ = section.apply(&[seat], section::HOLD);
        }
        let got = section.best_available(k as u32, true, avoid_orphans).unwrap();
        let want = brute_force(&[&section], k, avoid_orphans).map(|(_, seats)| seats);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn venue_wide_pick_is_the_brute_force_best(
        layouts in prop::collection::vec(layout_strategy(), 1..5),
        fills in prop::collection::vec(1u32..5, 0..40),
        k in 1usize..7,
        avoid_orphans in any::<bool>(),
    ) {
        let mut event = EventSeats::new(layouts.iter().map(|(l, r)| Layout::new(l, Some(r)).unwrap()).collect()).unwrap();
        // Fill the way a sale does, so the search meets partly full rows.
        for group in fills {
            if let Some((s, seats)) = event.best_available(group, None, true, true).unwrap() {
                event.apply(s, &seats, section::HOLD).unwrap();
            }
        }
        let sections: Vec<&Section> = event.sections().iter().collect();
        let want = brute_force(&sections, k, avoid_orphans).map(|(s, seats)| (s as u32, seats));
        prop_assert_eq!(event.best_available(k as u32, None, true, avoid_orphans).unwrap(), want.clone());
        let all: Vec<u32> = (0..sections.len() as u32).rev().collect();
        prop_assert_eq!(event.best_available(k as u32, Some(&all), true, avoid_orphans).unwrap(), want);
    }

    #[test]
    fn scattered_pick_takes_exactly_k_available_seats(
        (lengths, ranks) in layout_strategy(),
        taken in prop::collection::vec(any::<prop::sample::Index>(), 0..60),
        k in 1u32..10,
    ) {
        let mut section = Section::new(Layout::new(&lengths, Some(&ranks)).unwrap());
        for index in taken {
            let _ = section.apply(&[index.index(section.seat_count()) as u32], section::HOLD);
        }
        match section.best_available(k, false, true).unwrap() {
            Some(seats) => {
                prop_assert_eq!(seats.len(), k as usize);
                prop_assert!(seats.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(seats.iter().all(|&s| section.states()[s as usize] == SeatState::Available));
                prop_assert!(section.apply(&seats, section::HOLD).is_ok());
            }
            None => prop_assert!(section.available_count() < k as usize),
        }
    }
}

#[test]
fn wide_groups_beyond_the_exact_summary_still_avoid_orphans() {
    // k = 70 is past the per-length summary (63): a run of exactly k + 1 must be skipped for a
    // worse row that fits cleanly, and taken only when no clean placement exists anywhere.
    let mut section = Section::new(Layout::new(&[71, 80], None).unwrap());
    assert_eq!(
        section.best_available(70, true, true).unwrap(),
        Some((76..146).collect())
    );
    assert_eq!(
        section.best_available(70, true, false).unwrap(),
        Some((0..70).collect())
    );
    section
        .apply(&(71..80).collect::<Vec<u32>>(), section::HOLD)
        .unwrap();
    assert_eq!(
        section.best_available(70, true, true).unwrap(),
        Some((0..70).collect())
    );
}

#[test]
fn first_group_takes_the_centre_of_the_best_row() {
    let section = Section::new(Layout::new(&[10, 20], Some(&[5, 1])).unwrap());
    assert_eq!(
        section.best_available(4, true, true).unwrap(),
        Some(vec![18, 19, 20, 21])
    );
}

#[test]
fn quantity_bounds() {
    let section = Section::new(Layout::new(&[10], None).unwrap());
    assert!(section.best_available(0, true, true).is_err());
    assert!(section.best_available(257, true, true).is_err());
    assert_eq!(section.best_available(11, true, true).unwrap(), None);
}
