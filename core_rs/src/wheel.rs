//! Hold-expiry timing wheel: which holds are due, in deadline order, without scanning them all.
//!
//! A hierarchical timing wheel of 1 ms ticks (the layout of tokio's timer wheel): [`LEVELS`]
//! levels of 64 slots, a slot of level `L` spanning `64^L` ms. An entry sits at the level of the
//! highest bit in which its deadline differs from the wheel's current time, in the slot named by
//! the deadline's six bits of that level. Each level keeps a `u64` occupancy bitmap, so the next
//! non-empty slot is one `rotate_right` + `trailing_zeros` away and empty time is skipped whole:
//! advancing costs O(levels) per non-empty slot reached, never O(elapsed ticks). When the time
//! reaches the start of an occupied slot of a higher level, its entries cascade to lower levels,
//! or straight to the ready set when already due. An entry cascades at most once per level, so
//! advancing is amortized O(levels) per entry that falls due.
//!
//! Entries live in a dense slab indexed by an interned hold id. Each entry records where it sits
//! (level, slot and position in the slot, or the ready set), so `cancel` removes it eagerly:
//! `swap_remove` from its slot and from the slab, then fix the one entry that moved. There are no
//! tombstones; memory follows the number of live entries.
//!
//! Due entries wait in the ready set, a `BTreeMap` ordered by `(deadline, schedule sequence)`:
//! pops come out in deadline order, and holds with equal deadlines in the order they were
//! (re)scheduled. The ready set is what lets a late schedule (deadline already past) or a partial
//! pop (`limit`) keep the order; it costs O(log due) per pop, and per cancel of a due hold, while
//! cancelling a hold still in the wheel is O(1).
//!
//! The top level is a ring: a deadline up to [`WHEEL_HORIZON_MS`] ahead may wrap around to the
//! slot index the current time is in (one full turn later), which the next-slot search accounts
//! for.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::error::{invalid, CoreError, CoreResult};
use crate::limits::{WHEEL_CAPACITY_MAX, WHEEL_HOLD_ID_BYTES_MAX, WHEEL_HORIZON_MS};

/// Bits of the deadline consumed by one level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Levels of the wheel; level `L` slots span `64^L` ms.
pub const LEVELS: usize = 6;
const TOP_LEVEL: usize = LEVELS - 1;

const _: () = assert!(WHEEL_HORIZON_MS == 1 << (SLOT_BITS as usize * LEVELS));
// Slab keys and slot positions are u32.
const _: () = assert!(WHEEL_CAPACITY_MAX <= u32::MAX as usize);
const _: () = assert!(SLOTS <= u8::MAX as usize + 1 && LEVELS <= u8::MAX as usize);

/// Where an entry sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    /// In `slots[level * SLOTS + slot][pos]`.
    Slot { level: u8, slot: u8, pos: u32 },
    /// In `ready` under `(deadline_ms, seq)`.
    Ready,
    /// Transient, between `unlink` and `link` or removal.
    Unlinked,
}

#[derive(Debug)]
struct Entry {
    id: Arc<str>,
    deadline_ms: u64,
    /// Schedule order; breaks ties between equal deadlines (FIFO).
    seq: u64,
    loc: Loc,
}

/// One slot item: slab key and deadline. The deadline is duplicated here so that cascading and
/// `next_deadline_ms` scan a contiguous vector instead of chasing slab entries.
type SlotItem = (u32, u64);

/// A bounded set of hold deadlines that yields the expired ones in deadline order.
///
/// Time is the caller's clock in milliseconds and only moves forward: it advances to `now_ms` on
/// [`pop_expired`](Self::pop_expired) and stays put when given an earlier time.
pub struct ExpiryWheel {
    capacity: usize,
    /// The wheel's current time: the largest `now_ms` seen.
    now_ms: u64,
    next_seq: u64,
    /// Dense slab: live entries only; a removal moves the last entry into the hole.
    entries: Vec<Entry>,
    index: HashMap<Arc<str>, u32>,
    /// `LEVELS * SLOTS` slots, level-major.
    slots: Vec<Vec<SlotItem>>,
    /// Bit `s` of `occupied[l]` is set iff slot `s` of level `l` is non-empty.
    occupied: [u64; LEVELS],
    /// Entries with `deadline_ms <= now_ms`, by `(deadline_ms, seq)`.
    ready: BTreeMap<(u64, u64), u32>,
}

impl fmt::Debug for ExpiryWheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExpiryWheel")
            .field("len", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("now_ms", &self.now_ms)
            .field("ready", &self.ready.len())
            .finish_non_exhaustive()
    }
}

/// Level an entry due at `deadline_ms > now_ms` goes to: the level holding the highest bit in
/// which the two differ, clamped to the top level (whose slots then wrap around).
fn level_for(now_ms: u64, deadline_ms: u64) -> usize {
    let masked = (now_ms ^ deadline_ms) | SLOT_MASK;
    let significant = (u64::BITS - 1 - masked.leading_zeros()) as usize;
    (significant / SLOT_BITS as usize).min(TOP_LEVEL)
}

fn slot_for(deadline_ms: u64, level: usize) -> usize {
    ((deadline_ms >> (SLOT_BITS as usize * level)) & SLOT_MASK) as usize
}

fn slot_width_ms(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

fn check_id(hold_id: &str) -> Result<(), String> {
    if hold_id.is_empty() || hold_id.len() > WHEEL_HOLD_ID_BYTES_MAX {
        return Err(format!(
            "hold_id must be 1 to {WHEEL_HOLD_ID_BYTES_MAX} bytes of UTF-8, got {} bytes",
            hold_id.len()
        ));
    }
    Ok(())
}

impl ExpiryWheel {
    /// An empty wheel for at most `capacity` holds (1..=[`WHEEL_CAPACITY_MAX`]) whose clock
    /// starts at `now_ms`. Memory grows with the holds tracked, not with `capacity`.
    pub fn new(capacity: usize, now_ms: u64) -> CoreResult<Self> {
        if capacity == 0 || capacity > WHEEL_CAPACITY_MAX {
            return invalid(format!(
                "capacity must be between 1 and {WHEEL_CAPACITY_MAX}, got {capacity}"
            ));
        }
        Ok(Self {
            capacity,
            now_ms,
            next_seq: 0,
            entries: Vec::new(),
            index: HashMap::new(),
            slots: vec![Vec::new(); LEVELS * SLOTS],
            occupied: [0; LEVELS],
            ready: BTreeMap::new(),
        })
    }

    /// Holds tracked (scheduled, not yet popped or cancelled).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The wheel's current time: the initial `now_ms` or the largest one passed to `pop_expired`.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    pub fn contains(&self, hold_id: &str) -> bool {
        self.index.contains_key(hold_id)
    }

    /// The deadline `hold_id` is scheduled for, if tracked.
    pub fn deadline_ms(&self, hold_id: &str) -> Option<u64> {
        let key = *self.index.get(hold_id)?;
        Some(self.entries[key as usize].deadline_ms)
    }

    /// Schedules `hold_id` to expire at `deadline_ms`, or moves it there if already tracked (a
    /// hold extension). A deadline at or before the wheel's current time is due at the next pop.
    ///
    /// Errors: `InvalidArgument` if `hold_id` is empty or longer than
    /// [`WHEEL_HOLD_ID_BYTES_MAX`] bytes, or `deadline_ms` lies more than [`WHEEL_HORIZON_MS`]
    /// after the current time; `CapacityExceeded` if `hold_id` is new and the wheel is full.
    /// On error the wheel is unchanged.
    pub fn schedule(&mut self, hold_id: &str, deadline_ms: u64) -> CoreResult<()> {
        check_id(hold_id).or_else(invalid)?;
        self.check_deadline(deadline_ms).or_else(invalid)?;
        if self.entries.len() >= self.capacity && !self.index.contains_key(hold_id) {
            return Err(CoreError::CapacityExceeded(format!(
                "expiry wheel is full ({} holds, its capacity); cancel or pop holds before \
                 scheduling new ones",
                self.capacity
            )));
        }
        self.schedule_checked(hold_id, deadline_ms);
        Ok(())
    }

    /// Schedules every `(hold_id, deadline_ms)` pair as [`schedule`](Self::schedule) would, in
    /// order (a repeated id ends at its last deadline). All or nothing: every item is validated,
    /// and the capacity checked, before any is applied.
    pub fn schedule_many<S: AsRef<str>>(&mut self, items: &[(S, u64)]) -> CoreResult<()> {
        for (i, (hold_id, deadline_ms)) in items.iter().enumerate() {
            check_id(hold_id.as_ref())
                .and_then(|()| self.check_deadline(*deadline_ms))
                .or_else(|msg| invalid(format!("items[{i}]: {msg}")))?;
        }
        let free = self.capacity.saturating_sub(self.entries.len());
        if items.len() > free {
            // Only distinct ids not yet tracked take room.
            let new_ids: HashSet<&str> = items
                .iter()
                .map(|(hold_id, _)| hold_id.as_ref())
                .filter(|hold_id| !self.index.contains_key(*hold_id))
                .collect();
            if new_ids.len() > free {
                return Err(CoreError::CapacityExceeded(format!(
                    "expiry wheel capacity exceeded: the batch adds {} new holds but only {free} \
                     of {} places are free; nothing was scheduled",
                    new_ids.len(),
                    self.capacity
                )));
            }
        }
        for (hold_id, deadline_ms) in items {
            self.schedule_checked(hold_id.as_ref(), *deadline_ms);
        }
        Ok(())
    }

    /// Stops tracking `hold_id`. Returns whether it was tracked.
    pub fn cancel(&mut self, hold_id: &str) -> bool {
        let Some(&key) = self.index.get(hold_id) else {
            return false;
        };
        self.unlink(key);
        self.remove_unlinked(key);
        true
    }

    /// Advances the clock to `now_ms` (never backwards) and removes and returns the holds due by
    /// then, at most `limit` of them, in deadline order (equal deadlines in schedule order), each
    /// with its deadline. Holds left over by `limit` stay due and come first next time.
    pub fn pop_expired(&mut self, now_ms: u64, limit: usize) -> Vec<(String, u64)> {
        self.advance(now_ms);
        let mut expired = Vec::with_capacity(limit.min(self.ready.len()));
        while expired.len() < limit {
            let Some(((deadline_ms, _), key)) = self.ready.pop_first() else {
                break;
            };
            debug_assert!(deadline_ms <= self.now_ms);
            let entry = &mut self.entries[key as usize];
            debug_assert_eq!(entry.loc, Loc::Ready);
            debug_assert_eq!(entry.deadline_ms, deadline_ms);
            entry.loc = Loc::Unlinked;
            let entry = self.remove_unlinked(key);
            expired.push((String::from(&*entry.id), deadline_ms));
        }
        expired
    }

    /// The earliest deadline tracked, exactly (due or not), or `None` when empty.
    ///
    /// O(levels) plus, when nothing is due, a scan of the deadlines in the earliest occupied slot.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        if let Some((&(deadline_ms, _), _)) = self.ready.first_key_value() {
            return Some(deadline_ms);
        }
        // Entries of a lower level all lie in the current slot of every higher level, so the
        // lowest occupied level's next slot holds the earliest deadline.
        let (level, slot, _) = self.next_expiration()?;
        self.slots[level * SLOTS + slot]
            .iter()
            .map(|&(_, deadline_ms)| deadline_ms)
            .min()
    }

    fn check_deadline(&self, deadline_ms: u64) -> Result<(), String> {
        let latest_ms = self.now_ms.saturating_add(WHEEL_HORIZON_MS);
        if deadline_ms > latest_ms {
            return Err(format!(
                "deadline_ms {deadline_ms} is more than the wheel horizon of {WHEEL_HORIZON_MS} ms \
                 (about 795 days) after the wheel's current time {} ms",
                self.now_ms
            ));
        }
        Ok(())
    }

    /// `schedule` after validation: cannot fail.
    fn schedule_checked(&mut self, hold_id: &str, deadline_ms: u64) {
        debug_assert!(check_id(hold_id).is_ok());
        debug_assert!(self.check_deadline(deadline_ms).is_ok());
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let key = match self.index.get(hold_id) {
            Some(&key) => {
                self.unlink(key);
                key
            }
            None => {
                debug_assert!(self.entries.len() < self.capacity);
                let key = self.entries.len() as u32;
                let id: Arc<str> = Arc::from(hold_id);
                self.entries.push(Entry {
                    id: Arc::clone(&id),
                    deadline_ms,
                    seq,
                    loc: Loc::Unlinked,
                });
                self.index.insert(id, key);
                key
            }
        };
        let entry = &mut self.entries[key as usize];
        entry.deadline_ms = deadline_ms;
        entry.seq = seq;
        self.link(key);
    }

    /// Puts an unlinked entry where its deadline says: the ready set if due, else its slot.
    fn link(&mut self, key: u32) {
        let now_ms = self.now_ms;
        let entry = &mut self.entries[key as usize];
        debug_assert_eq!(entry.loc, Loc::Unlinked);
        let deadline_ms = entry.deadline_ms;
        if deadline_ms <= now_ms {
            let previous = self.ready.insert((deadline_ms, entry.seq), key);
            debug_assert!(previous.is_none(), "two entries share a schedule sequence");
            entry.loc = Loc::Ready;
            return;
        }
        debug_assert!(deadline_ms - now_ms <= WHEEL_HORIZON_MS);
        let level = level_for(now_ms, deadline_ms);
        let slot = slot_for(deadline_ms, level);
        let items = &mut self.slots[level * SLOTS + slot];
        entry.loc = Loc::Slot {
            level: level as u8,
            slot: slot as u8,
            pos: items.len() as u32,
        };
        items.push((key, deadline_ms));
        self.occupied[level] |= 1 << slot;
    }

    /// Takes a linked entry out of its slot or the ready set; it stays in the slab and index.
    fn unlink(&mut self, key: u32) {
        let entry = &mut self.entries[key as usize];
        let loc = entry.loc;
        entry.loc = Loc::Unlinked;
        match loc {
            Loc::Ready => {
                let removed = self.ready.remove(&(entry.deadline_ms, entry.seq));
                debug_assert_eq!(removed, Some(key));
            }
            Loc::Slot { level, slot, pos } => {
                let (level, slot, pos) = (level as usize, slot as usize, pos as usize);
                let items = &mut self.slots[level * SLOTS + slot];
                let removed = items.swap_remove(pos);
                debug_assert_eq!(removed.0, key);
                if let Some(&(moved, _)) = items.get(pos) {
                    match &mut self.entries[moved as usize].loc {
                        Loc::Slot { pos: moved_pos, .. } => *moved_pos = pos as u32,
                        other => debug_assert!(false, "slot item located at {other:?}"),
                    }
                }
                if items.is_empty() {
                    *items = Vec::new();
                    self.occupied[level] &= !(1 << slot);
                } else {
                    shrink(items);
                }
            }
            Loc::Unlinked => debug_assert!(false, "unlinking an unlinked entry"),
        }
    }

    /// Drops an unlinked entry from the slab and index; the slab's last entry fills the hole.
    fn remove_unlinked(&mut self, key: u32) -> Entry {
        let entry = self.entries.swap_remove(key as usize);
        debug_assert_eq!(entry.loc, Loc::Unlinked);
        let removed = self.index.remove(&entry.id);
        debug_assert_eq!(removed, Some(key));
        if let Some(moved) = self.entries.get(key as usize) {
            // The former last entry now lives at `key`: repoint everything that names it.
            if let Some(slot_key) = self.index.get_mut(&moved.id) {
                *slot_key = key;
            }
            match moved.loc {
                Loc::Slot { level, slot, pos } => {
                    let items = &mut self.slots[level as usize * SLOTS + slot as usize];
                    items[pos as usize].0 = key;
                }
                Loc::Ready => {
                    if let Some(ready_key) = self.ready.get_mut(&(moved.deadline_ms, moved.seq)) {
                        *ready_key = key;
                    }
                }
                Loc::Unlinked => debug_assert!(false, "moved an unlinked entry"),
            }
        }
        shrink(&mut self.entries);
        if self.index.capacity() > 64 && self.index.len() < self.index.capacity() / 4 {
            self.index.shrink_to(self.index.len() * 2);
        }
        entry
    }

    /// The lowest occupied level, its next occupied slot, and the time that slot starts.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let width_ms = slot_width_ms(level);
        let now_slot = ((self.now_ms >> (SLOT_BITS as usize * level)) & SLOT_MASK) as u32;
        // Distance, in slots (1..=64), from the current slot to the next occupied one. Below the
        // top, occupied slots lie strictly ahead within the current turn; at the top, the current
        // slot index can also hold deadlines one full turn ahead, which come last (distance 64).
        let after_now = self.occupied[level].rotate_right((now_slot + 1) & SLOT_MASK as u32);
        let distance = after_now.trailing_zeros() + 1;
        debug_assert!(distance < SLOTS as u32 || level == TOP_LEVEL);
        let slot = (now_slot + distance) as usize & (SLOTS - 1);
        let start_ms =
            (self.now_ms & !(width_ms - 1)).wrapping_add(u64::from(distance).wrapping_mul(width_ms));
        debug_assert!(start_ms > self.now_ms);
        Some((level, slot, start_ms))
    }

    /// Moves the clock to `target_ms`, cascading every slot that starts by then.
    fn advance(&mut self, target_ms: u64) {
        if target_ms <= self.now_ms {
            return;
        }
        while let Some((level, slot, start_ms)) = self.next_expiration() {
            if start_ms > target_ms {
                break;
            }
            self.now_ms = start_ms;
            let items = std::mem::take(&mut self.slots[level * SLOTS + slot]);
            self.occupied[level] &= !(1 << slot);
            for (key, deadline_ms) in items {
                debug_assert!(deadline_ms >= start_ms);
                debug_assert!(deadline_ms - start_ms < slot_width_ms(level));
                self.entries[key as usize].loc = Loc::Unlinked;
                // Due now (always so at level 0) → ready; otherwise a strictly lower level.
                self.link(key);
            }
        }
        self.now_ms = target_ms;
    }

    /// Checks every structural invariant; O(len + slots). A debugging and testing aid.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let fail = |msg: String| Err(msg);
        if self.entries.len() > self.capacity {
            return fail(format!(
                "{} entries over capacity {}",
                self.entries.len(),
                self.capacity
            ));
        }
        if self.index.len() != self.entries.len() {
            return fail(format!(
                "index {} != entries {}",
                self.index.len(),
                self.entries.len()
            ));
        }
        let mut linked = 0usize;
        for (key, entry) in self.entries.iter().enumerate() {
            let key = key as u32;
            if self.index.get(&entry.id) != Some(&key) {
                return fail(format!("index does not map {:?} to {key}", entry.id));
            }
            match entry.loc {
                Loc::Ready => {
                    if entry.deadline_ms > self.now_ms {
                        return fail(format!("ready entry {:?} not due", entry.id));
                    }
                    if self.ready.get(&(entry.deadline_ms, entry.seq)) != Some(&key) {
                        return fail(format!("ready set misses {:?}", entry.id));
                    }
                }
                Loc::Slot { level, slot, pos } => {
                    let (level, slot) = (level as usize, slot as usize);
                    let items = &self.slots[level * SLOTS + slot];
                    if items.get(pos as usize) != Some(&(key, entry.deadline_ms)) {
                        return fail(format!("slot item of {:?} misplaced", entry.id));
                    }
                    if entry.deadline_ms <= self.now_ms {
                        return fail(format!("due entry {:?} still in a slot", entry.id));
                    }
                    if level_for(self.now_ms, entry.deadline_ms) != level
                        || slot_for(entry.deadline_ms, level) != slot
                    {
                        return fail(format!("entry {:?} at the wrong level/slot", entry.id));
                    }
                }
                Loc::Unlinked => return fail(format!("entry {:?} unlinked", entry.id)),
            }
            linked += 1;
        }
        let slotted: usize = self.slots.iter().map(Vec::len).sum();
        if slotted + self.ready.len() != linked {
            return fail(format!(
                "{slotted} slotted + {} ready != {linked} entries",
                self.ready.len()
            ));
        }
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let occupied = self.occupied[level] & (1 << slot) != 0;
                if occupied == self.slots[level * SLOTS + slot].is_empty() {
                    return fail(format!("occupancy bit of level {level} slot {slot} is wrong"));
                }
            }
        }
        // Lower levels expire first: the next expiration is the earliest slot start of all.
        if let Some((level, slot, start_ms)) = self.next_expiration() {
            let width_ms = slot_width_ms(level);
            for &(_, deadline_ms) in &self.slots[level * SLOTS + slot] {
                if deadline_ms & !(width_ms - 1) != start_ms {
                    return fail(format!("slot start {start_ms} wrong for deadline {deadline_ms}"));
                }
            }
            for items in &self.slots {
                if items.iter().any(|&(_, deadline_ms)| deadline_ms < start_ms) {
                    return fail(format!("a deadline lies before the next expiration {start_ms}"));
                }
            }
        }
        Ok(())
    }
}

/// Gives memory back once a vector is mostly empty, so it tracks live entries, not the peak.
fn shrink<T>(items: &mut Vec<T>) {
    if items.capacity() > 64 && items.len() < items.capacity() / 4 {
        items.shrink_to(items.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = WHEEL_HORIZON_MS;

    fn wheel(capacity: usize, now_ms: u64) -> ExpiryWheel {
        match ExpiryWheel::new(capacity, now_ms) {
            Ok(wheel) => wheel,
            Err(err) => panic!("new: {err}"),
        }
    }

    fn ok(wheel: &ExpiryWheel) {
        if let Err(msg) = wheel.check_invariants() {
            panic!("invariant broken: {msg}");
        }
    }

    fn sched(wheel: &mut ExpiryWheel, id: &str, deadline_ms: u64) {
        if let Err(err) = wheel.schedule(id, deadline_ms) {
            panic!("schedule({id}, {deadline_ms}): {err}");
        }
        ok(wheel);
    }

    fn pop(wheel: &mut ExpiryWheel, now_ms: u64, limit: usize) -> Vec<(String, u64)> {
        let popped = wheel.pop_expired(now_ms, limit);
        ok(wheel);
        popped
    }

    fn ids(popped: &[(String, u64)]) -> Vec<&str> {
        popped.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn is_invalid<T>(result: CoreResult<T>) -> String {
        match result {
            Err(CoreError::InvalidArgument(msg)) => msg,
            Err(other) => panic!("expected InvalidArgument, got {other:?}"),
            Ok(_) => panic!("expected InvalidArgument, got Ok"),
        }
    }

    #[test]
    fn level_for_picks_highest_differing_bits() {
        assert_eq!(level_for(0, 1), 0);
        assert_eq!(level_for(0, 63), 0);
        assert_eq!(level_for(0, 64), 1);
        assert_eq!(level_for(63, 64), 1);
        assert_eq!(level_for(64, 127), 0);
        assert_eq!(level_for(0, 1 << 30), 5);
        assert_eq!(level_for(0, H - 1), 5);
        // Crossing a 2^36 boundary clamps to the top level.
        assert_eq!(level_for(H - 1, H), 5);
        assert_eq!(level_for(u64::MAX - 1, u64::MAX), 0);
        assert_eq!(level_for((1 << 63) - 1, 1 << 63), 5);
    }

    #[test]
    fn new_validates_capacity() {
        assert!(is_invalid(ExpiryWheel::new(0, 0)).contains("capacity"));
        is_invalid(ExpiryWheel::new(WHEEL_CAPACITY_MAX + 1, 0));
        let full = wheel(WHEEL_CAPACITY_MAX, 7);
        assert_eq!(full.capacity(), WHEEL_CAPACITY_MAX);
        assert_eq!(full.now_ms(), 7);
        assert!(full.is_empty());
        assert_eq!(full.next_deadline_ms(), None);
        ok(&full);
    }

    #[test]
    fn deadline_equal_to_now_is_due_at_next_pop() {
        let mut w = wheel(4, 1_000);
        sched(&mut w, "a", 1_000);
        assert_eq!(w.next_deadline_ms(), Some(1_000));
        assert_eq!(pop(&mut w, 1_000, usize::MAX), vec![("a".to_string(), 1_000)]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_is_due_even_when_now_goes_backwards() {
        let mut w = wheel(4, 1_000);
        sched(&mut w, "late", 10);
        assert_eq!(w.deadline_ms("late"), Some(10));
        // The clock stays at 1000; "late" is due regardless of the smaller now.
        assert_eq!(pop(&mut w, 5, usize::MAX), vec![("late".to_string(), 10)]);
        assert_eq!(w.now_ms(), 1_000);
    }

    #[test]
    fn now_going_backwards_advances_nothing() {
        let mut w = wheel(8, 0);
        sched(&mut w, "a", 500);
        sched(&mut w, "b", 900);
        assert_eq!(ids(&pop(&mut w, 600, usize::MAX)), ["a"]);
        assert!(pop(&mut w, 100, usize::MAX).is_empty());
        assert_eq!(w.now_ms(), 600);
        // Due relative to the wheel's clock (600), not the smaller argument.
        sched(&mut w, "c", 550);
        assert_eq!(ids(&pop(&mut w, 0, usize::MAX)), ["c"]);
        assert_eq!(ids(&pop(&mut w, 900, usize::MAX)), ["b"]);
    }

    #[test]
    fn pops_in_deadline_order_with_fifo_ties() {
        let mut w = wheel(16, 0);
        for (id, deadline_ms) in [("e", 70_000), ("a", 5), ("d", 4_096), ("b", 64), ("c", 64)] {
            sched(&mut w, id, deadline_ms);
        }
        sched(&mut w, "past", 0);
        let popped = pop(&mut w, 100_000, usize::MAX);
        assert_eq!(ids(&popped), ["past", "a", "b", "c", "d", "e"]);
        assert!(popped.windows(2).all(|p| p[0].1 <= p[1].1));
    }

    #[test]
    fn far_future_deadlines_cascade_through_every_level() {
        for start_ms in [0, 12_345_678_901, H - 1, u64::MAX - 2 * H] {
            let mut w = wheel(64, start_ms);
            let mut deadlines: Vec<u64> = (0..LEVELS as u32)
                .flat_map(|level| {
                    let width = slot_width_ms(level as usize);
                    [width, width * 63 + 17, width * 64 - 1]
                })
                .map(|offset| start_ms + offset.min(H))
                .chain([start_ms + H, start_ms + H - 1, start_ms + 1])
                .collect();
            deadlines.sort_unstable();
            deadlines.dedup();
            for (i, &deadline_ms) in deadlines.iter().enumerate() {
                sched(&mut w, &format!("h{i}"), deadline_ms);
            }
            for (i, &deadline_ms) in deadlines.iter().enumerate() {
                assert_eq!(w.next_deadline_ms(), Some(deadline_ms));
                assert!(pop(&mut w, deadline_ms - 1, usize::MAX).is_empty());
                assert_eq!(
                    pop(&mut w, deadline_ms, usize::MAX),
                    vec![(format!("h{i}"), deadline_ms)],
                    "start {start_ms} deadline {deadline_ms}"
                );
            }
            assert!(w.is_empty());
        }
    }

    #[test]
    fn one_jump_across_the_whole_horizon() {
        let mut w = wheel(1_000, 3);
        for i in 0..1_000u64 {
            sched(&mut w, &format!("h{i}"), 3 + (i * 68_719_407) % H + 1);
        }
        let popped = pop(&mut w, 3 + H, usize::MAX);
        assert_eq!(popped.len(), 1_000);
        assert!(popped.windows(2).all(|p| p[0].1 <= p[1].1));
    }

    #[test]
    fn sparse_deadlines_do_not_cost_elapsed_ticks() {
        // Stepping one entry at a time over ~the horizon would take 2^36 iterations if ticks
        // were walked one by one.
        let mut w = wheel(4, 0);
        let mut now_ms = 0;
        for step in 0..200u64 {
            let deadline_ms = now_ms + H - step;
            sched(&mut w, "x", deadline_ms);
            assert_eq!(pop(&mut w, deadline_ms, 1), vec![("x".to_string(), deadline_ms)]);
            now_ms = deadline_ms;
        }
    }

    #[test]
    fn top_level_ring_wraps() {
        // now in the middle of a top-level slot; a deadline one full turn later shares its index.
        let now_ms = (5 << 30) + 123;
        let mut w = wheel(4, now_ms);
        let far_ms = now_ms + H - 1;
        assert_eq!(slot_for(far_ms, TOP_LEVEL), slot_for(now_ms, TOP_LEVEL));
        sched(&mut w, "far", far_ms);
        sched(&mut w, "near", now_ms + (1 << 30));
        assert_eq!(w.next_deadline_ms(), Some(now_ms + (1 << 30)));
        assert_eq!(ids(&pop(&mut w, far_ms - 1, usize::MAX)), ["near"]);
        assert_eq!(w.next_deadline_ms(), Some(far_ms));
        assert_eq!(ids(&pop(&mut w, far_ms, usize::MAX)), ["far"]);
    }

    #[test]
    fn reschedule_moves_earlier_and_later() {
        let mut w = wheel(4, 0);
        sched(&mut w, "a", 10_000);
        sched(&mut w, "b", 20_000);
        sched(&mut w, "a", 30_000); // extension
        assert_eq!(w.len(), 2);
        assert_eq!(w.deadline_ms("a"), Some(30_000));
        assert_eq!(w.next_deadline_ms(), Some(20_000));
        assert!(pop(&mut w, 25_000, usize::MAX).iter().all(|(id, _)| id == "b"));
        sched(&mut w, "a", 26_000); // earlier
        assert_eq!(w.next_deadline_ms(), Some(26_000));
        sched(&mut w, "a", 1); // into the past: due now
        assert_eq!(pop(&mut w, 0, usize::MAX), vec![("a".to_string(), 1)]);
        assert!(w.is_empty());
    }

    #[test]
    fn reschedule_a_due_hold_back_into_the_future() {
        let mut w = wheel(4, 0);
        sched(&mut w, "a", 100);
        sched(&mut w, "b", 100);
        assert_eq!(ids(&pop(&mut w, 200, 1)), ["a"]);
        // "b" is due (in the ready set); extend it.
        sched(&mut w, "b", 5_000);
        assert!(pop(&mut w, 4_999, usize::MAX).is_empty());
        assert_eq!(ids(&pop(&mut w, 5_000, usize::MAX)), ["b"]);
    }

    #[test]
    fn cancel_everywhere() {
        let mut w = wheel(8, 0);
        for (id, deadline_ms) in [
            ("r1", 10),
            ("r2", 20),
            ("w0", 150),
            ("w1", 150),
            ("w2", 9e9 as u64),
        ] {
            sched(&mut w, id, deadline_ms);
        }
        assert_eq!(ids(&pop(&mut w, 100, 0)), Vec::<&str>::new());
        // r1 and r2 are in the ready set now; cancel one of them.
        assert!(w.cancel("r1"));
        ok(&w);
        assert!(!w.cancel("r1"));
        assert!(!w.cancel("never"));
        assert!(!w.cancel(""));
        // Cancel from a slot, with another entry moved into its position.
        assert!(w.cancel("w0"));
        ok(&w);
        assert!(w.cancel("w2"));
        ok(&w);
        assert_eq!(w.len(), 2);
        assert!(!w.contains("w0") && w.contains("w1") && w.contains("r2"));
        assert_eq!(ids(&pop(&mut w, u64::MAX, usize::MAX)), ["r2", "w1"]);
    }

    #[test]
    fn capacity_error_and_reschedule_when_full() {
        let mut w = wheel(2, 0);
        sched(&mut w, "a", 10);
        sched(&mut w, "b", 20);
        match w.schedule("c", 30) {
            Err(CoreError::CapacityExceeded(msg)) => assert!(msg.contains("full"), "{msg}"),
            other => panic!("expected CapacityExceeded, got {other:?}"),
        }
        assert!(!w.contains("c"));
        sched(&mut w, "a", 40); // moving a tracked hold needs no room
        assert!(w.cancel("b"));
        sched(&mut w, "c", 30);
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn horizon() {
        let mut w = wheel(4, 1_000);
        sched(&mut w, "edge", 1_000 + H);
        let msg = is_invalid(w.schedule("over", 1_000 + H + 1));
        assert!(msg.contains("horizon"), "{msg}");
        assert!(!w.contains("over"));
        // A failed reschedule leaves the hold where it was.
        is_invalid(w.schedule("edge", u64::MAX));
        assert_eq!(w.deadline_ms("edge"), Some(1_000 + H));
        // The horizon moves with the clock.
        assert!(pop(&mut w, 2_000, usize::MAX).is_empty());
        sched(&mut w, "over", 1_000 + H + 1);
        // Near the end of time the horizon saturates.
        let mut end = wheel(4, u64::MAX - 10);
        sched(&mut end, "max", u64::MAX);
        sched(&mut end, "past", 0);
        assert_eq!(end.next_deadline_ms(), Some(0));
        assert_eq!(ids(&pop(&mut end, u64::MAX, usize::MAX)), ["past", "max"]);
    }

    #[test]
    fn hold_id_length() {
        let mut w = wheel(4, 0);
        assert!(is_invalid(w.schedule("", 1)).contains("hold_id"));
        let long = "x".repeat(WHEEL_HOLD_ID_BYTES_MAX + 1);
        assert!(is_invalid(w.schedule(&long, 1)).contains("129 bytes"));
        // Bytes, not characters: 43 three-byte characters are 129 bytes.
        is_invalid(w.schedule(&"€".repeat(43), 1));
        sched(&mut w, &"€".repeat(42), 1);
        sched(&mut w, &"x".repeat(WHEEL_HOLD_ID_BYTES_MAX), 1);
        assert!(!w.contains(&long));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn limit_drains_partially_in_order() {
        let mut w = wheel(100, 0);
        for i in 0..10u64 {
            sched(&mut w, &format!("h{i}"), 100 - i * 7);
        }
        assert!(pop(&mut w, 1_000, 0).is_empty());
        let first = pop(&mut w, 1_000, 3);
        assert_eq!(ids(&first), ["h9", "h8", "h7"]);
        // Earlier deadlines scheduled meanwhile jump the queue.
        sched(&mut w, "late", 1);
        let second = pop(&mut w, 0, 3);
        assert_eq!(ids(&second), ["late", "h6", "h5"]);
        assert_eq!(pop(&mut w, 0, usize::MAX).len(), 5);
        assert!(w.is_empty());
    }

    #[test]
    fn next_deadline_is_exact_inside_a_coarse_slot() {
        let mut w = wheel(8, 0);
        // All in level 3 slot 1 (2^18 .. 2^19).
        for (id, deadline_ms) in [("a", 400_000), ("b", 300_000), ("c", 500_000)] {
            sched(&mut w, id, deadline_ms);
        }
        assert_eq!(w.next_deadline_ms(), Some(300_000));
        assert!(w.cancel("b"));
        assert_eq!(w.next_deadline_ms(), Some(400_000));
        assert!(pop(&mut w, 399_999, usize::MAX).is_empty());
        assert_eq!(w.next_deadline_ms(), Some(400_000));
    }

    #[test]
    fn schedule_many_is_all_or_nothing() {
        let mut w = wheel(3, 0);
        sched(&mut w, "a", 50);
        let msg = is_invalid(w.schedule_many(&[("b", 10), ("", 20)]));
        assert!(msg.starts_with("items[1]:"), "{msg}");
        is_invalid(w.schedule_many(&[("b", 10), ("c", H + 1)]));
        match w.schedule_many(&[("a", 1), ("b", 2), ("c", 3), ("d", 4)]) {
            Err(CoreError::CapacityExceeded(msg)) => assert!(msg.contains("3 new"), "{msg}"),
            other => panic!("expected CapacityExceeded, got {other:?}"),
        }
        assert_eq!(w.len(), 1);
        assert_eq!(w.deadline_ms("a"), Some(50));
        // Duplicates and tracked ids take no extra room; the last deadline wins.
        let items = vec![
            ("a".to_string(), 5),
            ("b".to_string(), 7),
            ("b".to_string(), 6),
            ("c".to_string(), 6),
        ];
        if let Err(err) = w.schedule_many(&items) {
            panic!("{err}");
        }
        ok(&w);
        assert_eq!(ids(&pop(&mut w, 100, usize::MAX)), ["a", "b", "c"]);
    }

    #[test]
    fn memory_follows_live_entries() {
        let mut w = wheel(10_000, 0);
        for i in 0..10_000u64 {
            sched_quiet(&mut w, &format!("h{i}"), 1 + i % 3);
        }
        for i in 0..9_990u64 {
            assert!(w.cancel(&format!("h{i}")));
        }
        ok(&w);
        assert!(w.entries.capacity() <= 64);
        assert!(w.index.capacity() <= 256, "{}", w.index.capacity());
        assert!(w.slots.iter().all(|items| items.capacity() <= 64));
        assert_eq!(pop(&mut w, 10, usize::MAX).len(), 10);
    }

    fn sched_quiet(wheel: &mut ExpiryWheel, id: &str, deadline_ms: u64) {
        if let Err(err) = wheel.schedule(id, deadline_ms) {
            panic!("schedule({id}, {deadline_ms}): {err}");
        }
    }
}
