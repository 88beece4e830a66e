//! State-machine invariants of `Section` and `EventSeats` under random operation sequences.

use proptest::prelude::*;
use tessera_core::event::EventSeats;
use tessera_core::layout::Layout;
use tessera_core::section::{self, SeatState, Section, Transition};
use tessera_core::CoreError;

const TRANSITIONS: [Transition; 5] = [
    section::HOLD,
    section::RELEASE,
    section::SELL,
    section::BLOCK,
    section::UNBLOCK,
];

fn layout_strategy() -> impl Strategy<Value = (Vec<u32>, Vec<u32>)> {
    prop::collection::vec(1u32..=70, 1..8).prop_flat_map(|lengths| {
        let rows = lengths.len();
        (Just(lengths), prop::collection::vec(0u32..5, rows))
    })
}

#[derive(Debug, Clone)]
enum Op {
    Single(usize, Vec<u32>),
    Many(usize, Vec<Vec<u32>>),
}

fn op_strategy(max_seat: u32) -> impl Strategy<Value = Op> {
    let seats = prop::collection::vec(0..max_seat + 2, 0..6);
    prop_oneof![
        (0usize..5, seats.clone()).prop_map(|(t, s)| Op::Single(t, s)),
        (0usize..3, prop::collection::vec(seats, 0..5)).prop_map(|(t, r)| Op::Many(t, r)),
    ]
}

/// Every derived index agrees with the states.
fn check_invariants(section: &Section) {
    let states = section.states();
    let available = states.iter().filter(|&&s| s == SeatState::Available).count();
    assert_eq!(section.available_count(), available);
    for (seat, &state) in states.iter().enumerate() {
        let bit = section.available_bits()[seat / 64] >> (seat % 64) & 1 == 1;
        assert_eq!(bit, state == SeatState::Available, "bit of seat {seat}");
    }
    let layout = section.layout();
    for row in 0..layout.row_count() {
        let position = layout.rank_position(row);
        assert_eq!(
            section.runs().get(position),
            section.row_summary(row),
            "summary of row {row}"
        );
        let (start, end) = layout.row_range(row);
        let free = (start..end)
            .filter(|&s| states[s] == SeatState::Available)
            .count();
        assert_eq!(section.row_available(row), free);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn operations_are_atomic_and_versioned((lengths, ranks) in layout_strategy(), ops in prop::collection::vec(op_strategy(300), 1..60)) {
        let mut section = Section::new(Layout::new(&lengths, Some(&ranks)).unwrap());
        for op in ops {
            let before_states = section.states().to_vec();
            let before_version = section.version();
            match op {
                Op::Single(t, seats) => {
                    let transition = TRANSITIONS[t];
                    match section.apply(&seats, transition) {
                        Ok(_) => {
                            prop_assert_eq!(section.version(), before_version + 1);
                            for &seat in &seats {
                                prop_assert_eq!(before_states[seat as usize], transition.from);
                                prop_assert_eq!(section.states()[seat as usize], transition.to);
                            }
                        }
                        Err(error) => {
                            prop_assert_eq!(section.states(), &before_states[..]);
                            prop_assert_eq!(section.version(), before_version);
                            if let CoreError::SeatUnavailable { seats: blocked } = error {
                                let expected: Vec<u32> = {
                                    let mut e: Vec<u32> = seats.iter().copied().filter(|&s| before_states[s as usize] != transition.from).collect();
                                    e.sort_unstable();
                                    e
                                };
                                prop_assert_eq!(blocked, expected);
                            }
                        }
                    }
                }
                Op::Many(t, requests) => {
                    let transition = TRANSITIONS[t];
                    match section.apply_many(&requests, transition) {
                        Ok(outcomes) => {
                            let applied = outcomes.iter().filter(|o| o.is_none()).count();
                            prop_assert_eq!(section.version(), before_version + u64::from(applied > 0));
                            let mut claimed = std::collections::HashSet::new();
                            for (request, outcome) in requests.iter().zip(&outcomes) {
                                if outcome.is_none() {
                                    for &seat in request {
                                        prop_assert!(claimed.insert(seat), "seat {} won twice in one batch", seat);
                                        prop_assert_eq!(before_states[seat as usize], transition.from);
                                    }
                                }
                            }
                        }
                        Err(_) => {
                            prop_assert_eq!(section.states(), &before_states[..]);
                            prop_assert_eq!(section.version(), before_version);
                        }
                    }
                }
            }
            check_invariants(&section);
        }
    }

    #[test]
    fn restore_rebuilds_every_index((lengths, ranks) in layout_strategy(), raw in prop::collection::vec(0u8..4, 0..500)) {
        let mut section = Section::new(Layout::new(&lengths, Some(&ranks)).unwrap());
        let states: Vec<u8> = (0..section.seat_count()).map(|i| raw.get(i).copied().unwrap_or(0)).collect();
        section.restore(&states, 7).unwrap();
        prop_assert_eq!(section.version(), 7);
        check_invariants(&section);
    }

    #[test]
    fn event_batches_match_per_section_batches(
        layouts in prop::collection::vec(layout_strategy(), 1..5),
        requests in prop::collection::vec((0u32..6, prop::collection::vec(0u32..120, 1..4)), 0..12),
    ) {
        let build = || layouts.iter().map(|(l, r)| Layout::new(l, Some(r)).unwrap()).collect::<Vec<_>>();
        let mut event = EventSeats::new(build()).unwrap();
        let mut sections: Vec<Section> = build().into_iter().map(Section::new).collect();
        let valid = requests.iter().all(|(s, seats)| {
            (*s as usize) < sections.len() && {
                let mut sorted = seats.clone();
                sorted.sort_unstable();
                sorted.dedup();
                sorted.len() == seats.len() && seats.iter().all(|&x| (x as usize) < sections[*s as usize].seat_count())
            }
        });
        let result = event.apply_many(&requests, section::HOLD);
        prop_assert_eq!(result.is_ok(), valid);
        if let Ok(outcomes) = result {
            for (index, section) in sections.iter_mut().enumerate() {
                let mine: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].0 as usize == index).collect();
                let batch: Vec<Vec<u32>> = mine.iter().map(|&i| requests[i].1.clone()).collect();
                let expected = section.apply_many(&batch, section::HOLD).unwrap();
                for (&i, want) in mine.iter().zip(expected) {
                    prop_assert_eq!(&outcomes[i], &want);
                }
                prop_assert_eq!(event.sections()[index].states(), section.states());
                check_invariants(&event.sections()[index]);
            }
        }
    }
}

#[test]
fn sell_only_from_held() {
    let mut section = Section::new(Layout::new(&[4], None).unwrap());
    assert_eq!(
        section.apply(&[0], section::SELL),
        Err(CoreError::SeatUnavailable { seats: vec![0] })
    );
    section.apply(&[0, 1], section::HOLD).unwrap();
    section.apply(&[0], section::SELL).unwrap();
    assert_eq!(
        section.apply(&[0], section::RELEASE),
        Err(CoreError::SeatUnavailable { seats: vec![0] })
    );
    assert_eq!(section.version(), 2);
}

#[test]
fn bad_arguments_are_rejected_without_change() {
    let mut section = Section::new(Layout::new(&[3, 3], None).unwrap());
    assert!(matches!(
        section.apply(&[], section::HOLD),
        Err(CoreError::InvalidArgument(_))
    ));
    assert!(matches!(
        section.apply(&[6], section::HOLD),
        Err(CoreError::InvalidSeat { .. })
    ));
    assert!(matches!(
        section.apply(&[1, 1], section::HOLD),
        Err(CoreError::InvalidSeat { .. })
    ));
    assert_eq!(section.version(), 0);
    assert!(Layout::new(&[], None).is_err());
    assert!(Layout::new(&[0], None).is_err());
    assert!(Layout::new(&[4096, 4096], Some(&[1])).is_err());
    assert!(
        Layout::new(&[4096; 17], None).is_err(),
        "over the section seat limit"
    );
}
