//! Model test: random operation sequences against `ExpiryWheel` and a plain `BTreeMap` model must
//! agree on every pop (same holds, same deadline order, ties in schedule order), every error, and
//! `len` / `next_deadline_ms` / `deadline_ms` / `contains` after every step.

use std::collections::{BTreeMap, HashSet};

use proptest::prelude::*;

use tessera_core::limits::{WHEEL_HOLD_ID_BYTES_MAX, WHEEL_HORIZON_MS};
use tessera_core::wheel::ExpiryWheel;
use tessera_core::CoreError;

const H: u64 = WHEEL_HORIZON_MS;
/// Valid ids `h0..h23`; index 24 is the empty id and 25 an id one byte too long.
const ID_POOL: u8 = 24;

fn hold_id(index: u8) -> String {
    match index {
        i if i < ID_POOL => format!("h{i}"),
        ID_POOL => String::new(),
        _ => "x".repeat(WHEEL_HOLD_ID_BYTES_MAX + 1),
    }
}

/// A time relative to the current clock.
#[derive(Debug, Clone, Copy)]
enum When {
    Before(u64),
    After(u64),
}

impl When {
    fn at(self, now_ms: u64) -> u64 {
        match self {
            When::Before(ms) => now_ms.saturating_sub(ms),
            When::After(ms) => now_ms.saturating_add(ms),
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Schedule(u8, When),
    ScheduleMany(Vec<(u8, When)>),
    Cancel(u8),
    Pop(When, usize),
}

fn deadline() -> impl Strategy<Value = When> {
    prop_oneof![
        3 => (0..64u64).prop_map(When::After),
        3 => (0..5_000u64).prop_map(When::After),
        2 => (0..1u64 << 24).prop_map(When::After),
        2 => (0..=H).prop_map(When::After),
        1 => Just(When::After(H)),
        1 => (H + 1..H + 1_000).prop_map(When::After),
        2 => (0..5_000u64).prop_map(When::Before),
        1 => any::<u64>().prop_map(When::Before),
    ]
}

fn pop_time() -> impl Strategy<Value = When> {
    prop_oneof![
        2 => Just(When::After(0)),
        4 => (0..64u64).prop_map(When::After),
        4 => (0..5_000u64).prop_map(When::After),
        2 => (0..1u64 << 24).prop_map(When::After),
        2 => (0..=H + 1).prop_map(When::After),
        1 => (0..1u64 << 40).prop_map(When::After),
        2 => (0..10_000u64).prop_map(When::Before),
    ]
}

fn id_index() -> impl Strategy<Value = u8> {
    prop_oneof![20 => 0..ID_POOL, 1 => ID_POOL..ID_POOL + 2]
}

fn op() -> impl Strategy<Value = Op> {
    let limit = prop_oneof![3 => Just(usize::MAX), 2 => 0..4usize];
    prop_oneof![
        8 => (id_index(), deadline()).prop_map(|(i, w)| Op::Schedule(i, w)),
        2 => prop::collection::vec((id_index(), deadline()), 0..8).prop_map(Op::ScheduleMany),
        3 => id_index().prop_map(Op::Cancel),
        4 => (pop_time(), limit).prop_map(|(w, l)| Op::Pop(w, l)),
    ]
}

fn start_time() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0..1u64 << 41,
        (H - 5_000..H + 5_000),
        (u64::MAX - (1 << 38)..=u64::MAX),
        any::<u64>(),
    ]
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Invalid,
    Full,
}

fn outcome(result: Result<(), CoreError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok,
        Err(CoreError::InvalidArgument(_)) => Outcome::Invalid,
        Err(CoreError::CapacityExceeded(_)) => Outcome::Full,
        Err(other) => panic!("unexpected error {other:?}"),
    }
}

struct Model {
    capacity: usize,
    now_ms: u64,
    seq: u64,
    /// id -> (deadline, schedule sequence)
    holds: BTreeMap<String, (u64, u64)>,
}

impl Model {
    fn valid(&self, id: &str, deadline_ms: u64) -> bool {
        !id.is_empty() && id.len() <= WHEEL_HOLD_ID_BYTES_MAX && deadline_ms <= self.now_ms.saturating_add(H)
    }

    fn apply(&mut self, id: &str, deadline_ms: u64) {
        self.holds.insert(id.to_string(), (deadline_ms, self.seq));
        self.seq += 1;
    }

    fn schedule(&mut self, id: &str, deadline_ms: u64) -> Outcome {
        if !self.valid(id, deadline_ms) {
            return Outcome::Invalid;
        }
        if !self.holds.contains_key(id) && self.holds.len() >= self.capacity {
            return Outcome::Full;
        }
        self.apply(id, deadline_ms);
        Outcome::Ok
    }

    fn schedule_many(&mut self, items: &[(String, u64)]) -> Outcome {
        if items.iter().any(|(id, d)| !self.valid(id, *d)) {
            return Outcome::Invalid;
        }
        let new: HashSet<&str> = items
            .iter()
            .map(|(id, _)| id.as_str())
            .filter(|id| !self.holds.contains_key(*id))
            .collect();
        if self.holds.len() + new.len() > self.capacity {
            return Outcome::Full;
        }
        for (id, d) in items {
            self.apply(id, *d);
        }
        Outcome::Ok
    }

    fn pop(&mut self, now_ms: u64, limit: usize) -> Vec<(String, u64)> {
        self.now_ms = self.now_ms.max(now_ms);
        let mut due: Vec<(u64, u64, String)> = self
            .holds
            .iter()
            .filter(|(_, &(d, _))| d <= self.now_ms)
            .map(|(id, &(d, seq))| (d, seq, id.clone()))
            .collect();
        due.sort_unstable();
        due.truncate(limit);
        for (_, _, id) in &due {
            self.holds.remove(id);
        }
        due.into_iter().map(|(d, _, id)| (id, d)).collect()
    }
}

fn compare(wheel: &ExpiryWheel, model: &Model) -> Result<(), TestCaseError> {
    if let Err(msg) = wheel.check_invariants() {
        return Err(TestCaseError::fail(msg));
    }
    prop_assert_eq!(wheel.len(), model.holds.len());
    prop_assert_eq!(wheel.is_empty(), model.holds.is_empty());
    prop_assert_eq!(wheel.now_ms(), model.now_ms);
    prop_assert_eq!(
        wheel.next_deadline_ms(),
        model.holds.values().map(|&(d, _)| d).min()
    );
    for i in 0..ID_POOL + 2 {
        let id = hold_id(i);
        prop_assert_eq!(wheel.contains(&id), model.holds.contains_key(&id));
        prop_assert_eq!(wheel.deadline_ms(&id), model.holds.get(&id).map(|&(d, _)| d));
    }
    Ok(())
}

fn run(capacity: usize, start_ms: u64, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut wheel =
        ExpiryWheel::new(capacity, start_ms).map_err(|err| TestCaseError::fail(err.to_string()))?;
    let mut model = Model {
        capacity,
        now_ms: start_ms,
        seq: 0,
        holds: BTreeMap::new(),
    };
    for op in ops {
        match op {
            Op::Schedule(i, when) => {
                let id = hold_id(i);
                let deadline_ms = when.at(model.now_ms);
                prop_assert_eq!(
                    outcome(wheel.schedule(&id, deadline_ms)),
                    model.schedule(&id, deadline_ms)
                );
            }
            Op::ScheduleMany(items) => {
                let items: Vec<(String, u64)> = items
                    .into_iter()
                    .map(|(i, w)| (hold_id(i), w.at(model.now_ms)))
                    .collect();
                prop_assert_eq!(outcome(wheel.schedule_many(&items)), model.schedule_many(&items));
            }
            Op::Cancel(i) => {
                let id = hold_id(i);
                prop_assert_eq!(wheel.cancel(&id), model.holds.remove(&id).is_some());
            }
            Op::Pop(when, limit) => {
                let now_ms = when.at(model.now_ms);
                let popped = wheel.pop_expired(now_ms, limit);
                prop_assert!(
                    popped.windows(2).all(|p| p[0].1 <= p[1].1),
                    "not in deadline order"
                );
                prop_assert_eq!(popped, model.pop(now_ms, limit));
            }
        }
        compare(&wheel, &model)?;
    }
    // Drain: everything comes out, in order, by the end of the horizon.
    let end_ms = model.now_ms.saturating_add(H);
    prop_assert_eq!(
        wheel.pop_expired(end_ms, usize::MAX),
        model.pop(end_ms, usize::MAX)
    );
    prop_assert!(wheel.is_empty());
    compare(&wheel, &model)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn wheel_matches_model(
        capacity in prop_oneof![1..4usize, 4..=30usize],
        start_ms in start_time(),
        ops in prop::collection::vec(op(), 0..160),
    ) {
        run(capacity, start_ms, ops)?;
    }

    /// Many holds close together: deep slots, many cascades into the same lower slots.
    #[test]
    fn dense_deadlines_match_model(
        start_ms in start_time(),
        deadlines in prop::collection::vec((0..ID_POOL, 0..200_000u64), 1..100),
        steps in prop::collection::vec((0..70_000u64, prop_oneof![Just(usize::MAX), 1..5usize]), 1..40),
    ) {
        let mut ops: Vec<Op> = deadlines
            .into_iter()
            .map(|(i, d)| Op::Schedule(i, When::After(d)))
            .collect();
        ops.extend(steps.into_iter().map(|(jump, limit)| Op::Pop(When::After(jump), limit)));
        run(ID_POOL as usize, start_ms, ops)?;
    }
}
