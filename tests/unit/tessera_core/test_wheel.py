"""`tessera_core.ExpiryWheel` through Python: behaviour, argument validation, and a stateful test
against a plain-dict model that must agree on every pop, error, length and deadline."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import tessera_core
from tessera import limits
from tessera_core import CapacityError, ExpiryWheel

HORIZON_MS = 2**36
I64_MAX = 2**63 - 1
ID_BYTES_MAX = limits.wheel_hold_id_bytes_max


def make(capacity: int = 100, now_ms: int = 0) -> ExpiryWheel:
    return ExpiryWheel(capacity, now_ms)


# --- behaviour -----------------------------------------------------------------------------------


def test_empty_wheel() -> None:
    wheel = make(5, 123)
    assert len(wheel) == 0
    assert wheel.capacity == 5
    assert wheel.next_deadline_ms() is None
    assert wheel.deadline_ms("a") is None
    assert "a" not in wheel
    assert wheel.pop_expired(10**9) == []
    assert repr(wheel) == "ExpiryWheel(capacity=5, len=0, now_ms=1000000000)"


def test_pops_in_deadline_order_with_ties_in_schedule_order() -> None:
    wheel = make()
    for hold_id, deadline in [("e", 70_000), ("a", 5), ("d", 4_096), ("b", 64), ("c", 64)]:
        wheel.schedule(hold_id, deadline)
    assert len(wheel) == 5
    assert wheel.pop_expired(63) == [("a", 5)]
    assert wheel.pop_expired(100_000) == [("b", 64), ("c", 64), ("d", 4_096), ("e", 70_000)]
    assert len(wheel) == 0


def test_deadline_at_or_before_now_is_due_at_next_pop() -> None:
    wheel = make(now_ms=1_000)
    wheel.schedule("now", 1_000)
    wheel.schedule("past", 3)
    assert wheel.next_deadline_ms() == 3
    # Even a smaller now returns what is already due on the wheel's clock.
    assert wheel.pop_expired(0) == [("past", 3), ("now", 1_000)]


def test_time_never_goes_backwards() -> None:
    wheel = make()
    wheel.schedule("a", 500)
    wheel.schedule("b", 900)
    assert wheel.pop_expired(600) == [("a", 500)]
    assert wheel.pop_expired(100) == []
    assert repr(wheel) == "ExpiryWheel(capacity=100, len=1, now_ms=600)"
    wheel.schedule("c", 550)  # before the wheel's clock (600): due now
    assert wheel.pop_expired(0) == [("c", 550)]
    assert wheel.pop_expired(900) == [("b", 900)]


def test_reschedule_moves_a_hold() -> None:
    wheel = make()
    wheel.schedule("a", 10_000)
    wheel.schedule("b", 20_000)
    wheel.schedule("a", 30_000)  # extension
    assert len(wheel) == 2
    assert wheel.deadline_ms("a") == 30_000
    assert wheel.next_deadline_ms() == 20_000
    assert wheel.pop_expired(25_000) == [("b", 20_000)]
    wheel.schedule("a", 26_000)  # earlier
    assert wheel.pop_expired(26_000) == [("a", 26_000)]


def test_reschedule_a_due_hold_into_the_future() -> None:
    wheel = make()
    wheel.schedule("a", 100)
    wheel.schedule("b", 100)
    assert wheel.pop_expired(200, limit=1) == [("a", 100)]
    wheel.schedule("b", 5_000)
    assert wheel.pop_expired(4_999) == []
    assert wheel.pop_expired(5_000) == [("b", 5_000)]


def test_cancel() -> None:
    wheel = make()
    for hold_id, deadline in [("r", 10), ("w0", 150), ("w1", 150), ("far", 9 * 10**9)]:
        wheel.schedule(hold_id, deadline)
    assert wheel.pop_expired(100, limit=0) == []  # "r" is now due, waiting
    assert wheel.cancel("r") is True
    assert wheel.cancel("r") is False
    assert wheel.cancel("never") is False
    assert wheel.cancel("") is False
    assert wheel.cancel("w0") is True
    assert wheel.cancel("far") is True
    assert "w0" not in wheel and "w1" in wheel
    assert wheel.pop_expired(I64_MAX // 2) == [("w1", 150)]


def test_limit_drains_partially() -> None:
    wheel = make()
    for i in range(10):
        wheel.schedule(f"h{i}", 100 - 7 * i)
    assert wheel.pop_expired(1_000, limit=0) == []
    assert [h for h, _ in wheel.pop_expired(1_000, limit=3)] == ["h9", "h8", "h7"]
    wheel.schedule("late", 1)
    assert [h for h, _ in wheel.pop_expired(0, 3)] == ["late", "h6", "h5"]
    assert len(wheel.pop_expired(0, limit=None)) == 5


def test_far_future_deadlines_cascade_through_every_level() -> None:
    start = 12_345_678_901
    wheel = make(now_ms=start)
    offsets = sorted({min(64**level * k, HORIZON_MS) for level in range(6) for k in (1, 63, 64)})
    offsets.append(HORIZON_MS)
    deadlines = [start + offset for offset in sorted(set(offsets))]
    wheel.schedule_many([(f"h{i}", d) for i, d in enumerate(deadlines)])
    for i, deadline in enumerate(deadlines):
        assert wheel.next_deadline_ms() == deadline
        assert wheel.pop_expired(deadline - 1) == []
        assert wheel.pop_expired(deadline) == [(f"h{i}", deadline)]
    assert len(wheel) == 0


def test_horizon() -> None:
    wheel = make(now_ms=1_000)
    wheel.schedule("edge", 1_000 + HORIZON_MS)
    with pytest.raises(ValueError, match="horizon"):
        wheel.schedule("over", 1_001 + HORIZON_MS)
    with pytest.raises(ValueError, match="horizon"):
        wheel.schedule("edge", I64_MAX)
    assert wheel.deadline_ms("edge") == 1_000 + HORIZON_MS
    wheel.pop_expired(2_000)
    wheel.schedule("over", 1_001 + HORIZON_MS)  # the horizon moves with the clock


def test_largest_times() -> None:
    wheel = make(now_ms=I64_MAX - 10)
    wheel.schedule("max", I64_MAX)
    wheel.schedule("past", 0)
    assert wheel.pop_expired(I64_MAX) == [("past", 0), ("max", I64_MAX)]


def test_contains_takes_any_object() -> None:
    wheel = make()
    wheel.schedule("a", 10)
    assert "a" in wheel
    assert 1 not in wheel
    assert None not in wheel
    assert b"a" not in wheel
    assert "\udcff" not in wheel  # unencodable str


def test_unicode_ids_are_measured_in_bytes() -> None:
    wheel = make()
    wheel.schedule("€" * 42, 1)  # 126 bytes
    with pytest.raises(ValueError, match="hold_id"):
        wheel.schedule("€" * 43, 1)  # 129 bytes
    wheel.schedule("x" * ID_BYTES_MAX, 1)
    assert len(wheel) == 2


def test_schedule_many() -> None:
    wheel = make(3)
    wheel.schedule("a", 50)
    # Tracked and repeated ids take no extra room; the last deadline wins.
    wheel.schedule_many([("a", 5), ("b", 7), ("b", 6), ("c", 6)])
    assert wheel.pop_expired(100) == [("a", 5), ("b", 6), ("c", 6)]
    wheel.schedule_many([])
    wheel.schedule_many(iter([("g", 1)]))  # any iterable
    wheel.schedule_many(tuple((f"t{i}", i) for i in range(2)))
    assert len(wheel) == 3


@pytest.mark.parametrize(
    ("items", "error"),
    [
        ([("b", 1), ("", 2)], ValueError),
        ([("b", 1), ("c", -2)], ValueError),
        ([("b", 1), ("c", HORIZON_MS + 1)], ValueError),
        ([("b", 1), ("x" * (ID_BYTES_MAX + 1), 2)], ValueError),
        ([("b", 1), ("c", 2), ("d", 3)], CapacityError),
        ([("b", 1), ("c", "2")], TypeError),
        ([("b", 1), (3, 2)], TypeError),
        ([("b", 1), ["c", 2]], TypeError),
        ([("b", 1), ("c",)], TypeError),
        ([("b", 1), ("c", 2, 3)], TypeError),
        ("ab", TypeError),
        (5, TypeError),
    ],
)
def test_schedule_many_is_all_or_nothing(items: Any, error: type[Exception]) -> None:
    wheel = make(3)
    wheel.schedule("a", 50)
    with pytest.raises(error):
        wheel.schedule_many(items)
    assert len(wheel) == 1
    assert wheel.deadline_ms("a") == 50


def test_schedule_many_error_names_the_item() -> None:
    wheel = make()
    with pytest.raises(ValueError, match=r"items\[1\]"):
        wheel.schedule_many([("a", 1), ("b", -1)])
    with pytest.raises(TypeError, match=r"items\[2\]"):
        wheel.schedule_many([("a", 1), ("b", 1), "c"])  # type: ignore[list-item]


def test_large_batches_release_the_gil_and_stay_correct() -> None:
    n = 20_000
    wheel = make(n)
    wheel.schedule_many([(f"h{i}", (i * 7_919) % 50_000 + 1) for i in range(n)])
    assert len(wheel) == n
    first = wheel.pop_expired(50_000, limit=5_000)
    rest = wheel.pop_expired(50_000)
    popped = first + rest
    assert len(popped) == n and len(wheel) == 0
    assert [d for _, d in popped] == sorted(d for _, d in popped)
    assert {h for h, _ in popped} == {f"h{i}" for i in range(n)}


def test_capacity_error() -> None:
    wheel = make(2)
    wheel.schedule("a", 1)
    wheel.schedule("b", 2)
    with pytest.raises(CapacityError, match="full") as caught:
        wheel.schedule("c", 3)
    assert isinstance(caught.value, tessera_core.CoreError)
    wheel.schedule("a", 4)  # moving a tracked hold needs no room
    assert "c" not in wheel and len(wheel) == 2


def test_capacity_bounds_mirror_limits() -> None:
    assert make(limits.wheel_capacity_max, 0).capacity == limits.wheel_capacity_max
    with pytest.raises(ValueError, match="capacity"):
        ExpiryWheel(limits.wheel_capacity_max + 1, 0)


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: ExpiryWheel(0, 0), "capacity"),
        (lambda: ExpiryWheel(-1, 0), "capacity must be >= 0"),
        (lambda: ExpiryWheel(2**64, 0), "capacity"),
        (lambda: ExpiryWheel(1, -5), "now_ms must be >= 0"),
        (lambda: ExpiryWheel(1, 2**63), "now_ms must be at most"),
        (lambda: make().schedule("a", -1), "deadline_ms must be >= 0"),
        (lambda: make().schedule("a", -(2**80)), "deadline_ms must be >= 0"),
        (lambda: make().schedule("a", 2**64), "deadline_ms must be at most"),
        (lambda: make().schedule("", 1), "hold_id"),
        (lambda: make().schedule("x" * (ID_BYTES_MAX + 1), 1), "hold_id"),
        (lambda: make().pop_expired(-1), "now_ms must be >= 0"),
        (lambda: make().pop_expired(1, -1), "limit must be >= 0"),
        (lambda: make().schedule_many([("a", -1)]), "deadline_ms must be >= 0"),
    ],
)
def test_value_errors(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "call",
    [
        lambda: ExpiryWheel("1", 0),  # type: ignore[arg-type]
        lambda: ExpiryWheel(1, 0.5),  # type: ignore[arg-type]
        lambda: ExpiryWheel(1),  # type: ignore[call-arg]
        lambda: make().schedule(1, 1),  # type: ignore[arg-type]
        lambda: make().schedule(b"a", 1),  # type: ignore[arg-type]
        lambda: make().schedule("a", "1"),  # type: ignore[arg-type]
        lambda: make().schedule("a", 1.0),  # type: ignore[arg-type]
        lambda: make().schedule("a", None),  # type: ignore[arg-type]
        lambda: make().cancel(None),  # type: ignore[arg-type]
        lambda: make().deadline_ms(3),  # type: ignore[arg-type]
        lambda: make().pop_expired("1"),  # type: ignore[arg-type]
        lambda: make().pop_expired(1, 1.5),  # type: ignore[arg-type]
        lambda: make().schedule_many(None),  # type: ignore[arg-type]
    ],
)
def test_type_errors(call: Callable[[], object]) -> None:
    with pytest.raises(TypeError):
        call()


def test_int_like_objects_are_accepted() -> None:
    class Index:
        def __index__(self) -> int:
            return 7

    wheel = ExpiryWheel(Index(), Index())  # type: ignore[arg-type]
    wheel.schedule("a", Index())  # type: ignore[arg-type]
    assert wheel.capacity == 7
    assert wheel.pop_expired(Index(), limit=Index()) == [("a", 7)]  # type: ignore[arg-type]


# --- stateful model test -------------------------------------------------------------------------

IDS = [f"h{i}" for i in range(12)] + ["", "x" * (ID_BYTES_MAX + 1)]

offsets = st.one_of(
    st.integers(-5_000, 5_000),
    st.integers(0, 2**24),
    st.integers(0, HORIZON_MS + 1),
    st.sampled_from([HORIZON_MS, HORIZON_MS + 1, -(2**40)]),
)
jumps = st.one_of(
    st.integers(-10_000, 5_000),
    st.integers(0, 2**24),
    st.integers(0, HORIZON_MS + 1),
)
limits_st = st.one_of(st.none(), st.integers(0, 4), st.just(-1))


class WheelModel:
    """The wheel's contract in plain Python: a dict of holds and a clock."""

    def __init__(self, capacity: int, now_ms: int) -> None:
        self.capacity = capacity
        self.now_ms = now_ms
        self.seq = 0
        self.holds: dict[str, tuple[int, int]] = {}

    def check(self, hold_id: str, deadline_ms: int) -> None:
        if not 1 <= len(hold_id.encode()) <= ID_BYTES_MAX:
            raise ValueError("hold_id")
        if not 0 <= deadline_ms <= I64_MAX or deadline_ms > self.now_ms + HORIZON_MS:
            raise ValueError("deadline_ms")

    def put(self, hold_id: str, deadline_ms: int) -> None:
        self.holds[hold_id] = (deadline_ms, self.seq)
        self.seq += 1

    def schedule(self, hold_id: str, deadline_ms: int) -> None:
        self.check(hold_id, deadline_ms)
        if hold_id not in self.holds and len(self.holds) >= self.capacity:
            raise CapacityError("full")
        self.put(hold_id, deadline_ms)

    def schedule_many(self, items: list[tuple[str, int]]) -> None:
        for hold_id, deadline_ms in items:
            self.check(hold_id, deadline_ms)
        new = {hold_id for hold_id, _ in items if hold_id not in self.holds}
        if len(self.holds) + len(new) > self.capacity:
            raise CapacityError("full")
        for hold_id, deadline_ms in items:
            self.put(hold_id, deadline_ms)

    def pop_expired(self, now_ms: int, limit: int | None) -> list[tuple[str, int]]:
        if not 0 <= now_ms <= I64_MAX or (limit is not None and limit < 0):
            raise ValueError("now_ms or limit")
        self.now_ms = max(self.now_ms, now_ms)
        due = sorted((d, seq, h) for h, (d, seq) in self.holds.items() if d <= self.now_ms)
        due = due[:limit] if limit is not None else due
        for _, _, hold_id in due:
            del self.holds[hold_id]
        return [(hold_id, d) for d, _, hold_id in due]


def outcome(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except (ValueError, CapacityError) as error:
        return (type(error).__name__, None)


class WheelMachine(RuleBasedStateMachine):
    wheel: ExpiryWheel
    model: WheelModel

    @initialize(
        capacity=st.integers(1, 10),
        now_ms=st.one_of(st.just(0), st.integers(0, 2**41), st.integers(I64_MAX - 2**37, I64_MAX)),
    )
    def start(self, capacity: int, now_ms: int) -> None:
        self.wheel = ExpiryWheel(capacity, now_ms)
        self.model = WheelModel(capacity, now_ms)

    @rule(hold_id=st.sampled_from(IDS), offset=offsets)
    def schedule(self, hold_id: str, offset: int) -> None:
        deadline = self.model.now_ms + offset
        assert outcome(lambda: self.wheel.schedule(hold_id, deadline)) == outcome(
            lambda: self.model.schedule(hold_id, deadline)
        )

    @rule(items=st.lists(st.tuples(st.sampled_from(IDS), offsets), max_size=6))
    def schedule_many(self, items: list[tuple[str, int]]) -> None:
        batch = [(hold_id, self.model.now_ms + offset) for hold_id, offset in items]
        assert outcome(lambda: self.wheel.schedule_many(batch)) == outcome(
            lambda: self.model.schedule_many(batch)
        )

    @rule(hold_id=st.sampled_from(IDS))
    def cancel(self, hold_id: str) -> None:
        assert self.wheel.cancel(hold_id) == (self.model.holds.pop(hold_id, None) is not None)

    @rule(jump=jumps, limit=limits_st)
    def pop_expired(self, jump: int, limit: int | None) -> None:
        now = self.model.now_ms + jump
        got = outcome(lambda: self.wheel.pop_expired(now, limit))
        assert got == outcome(lambda: self.model.pop_expired(now, limit))

    @invariant()
    def agrees(self) -> None:
        holds = self.model.holds
        assert len(self.wheel) == len(holds)
        assert self.wheel.next_deadline_ms() == min((d for d, _ in holds.values()), default=None)
        for hold_id in IDS:
            assert (hold_id in self.wheel) == (hold_id in holds)
            expected = holds[hold_id][0] if hold_id in holds else None
            assert self.wheel.deadline_ms(hold_id) == expected


WheelMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestWheelMachine = WheelMachine.TestCase
