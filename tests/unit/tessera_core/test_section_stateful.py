"""The binding and the plain-Python reference model, driven by the same random operations, must
agree on every outcome: states, errors, versions, picks and the encoded public map."""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import tessera_core
from tessera_ops.seat_model import TRANSITIONS, EventModel, SectionModel

OPS = sorted(TRANSITIONS)

row_lengths = st.lists(st.integers(1, 12), min_size=1, max_size=6)


def outcome(call: Any) -> tuple[str, Any]:
    """What a call did, in a form both implementations can be compared on."""
    try:
        return ("ok", call())
    except (tessera_core.SeatUnavailable, tessera_core.InvalidSeat) as error:
        return (type(error).__name__, error.seats)
    except ValueError as error:
        return ("ValueError", type(error).__name__)


class SectionMachine(RuleBasedStateMachine):
    @initialize(data=st.data(), lengths=row_lengths)
    def build(self, data: st.DataObject, lengths: list[int]) -> None:
        ranks = data.draw(
            st.none() | st.lists(st.integers(0, 5), min_size=len(lengths), max_size=len(lengths))
        )
        self.engine = tessera_core.Section(lengths, ranks)
        self.model = SectionModel(lengths, ranks)
        self.seats = st.lists(st.integers(-1, self.model.seat_count), min_size=0, max_size=5)

    @rule(data=st.data(), op=st.sampled_from(OPS))
    def change(self, data: st.DataObject, op: str) -> None:
        seats = data.draw(self.seats)
        got = outcome(lambda: getattr(self.engine, op)(seats))
        want = outcome(lambda: self.model.apply(op, seats))
        assert got == want

    @rule(data=st.data(), op=st.sampled_from(["hold", "release", "sell"]))
    def change_many(self, data: st.DataObject, op: str) -> None:
        requests = data.draw(st.lists(self.seats.filter(bool), max_size=4))
        got = outcome(lambda: getattr(self.engine, f"{op}_many")(requests))
        want = outcome(lambda: self.model.apply_many(op, requests))
        assert got == want

    @rule(k=st.integers(0, 8), adjacent=st.booleans(), avoid_orphans=st.booleans())
    def best_available(self, k: int, adjacent: bool, avoid_orphans: bool) -> None:
        got = outcome(lambda: self.engine.best_available(k, adjacent, avoid_orphans))
        want = outcome(lambda: self.model.best_available(k, adjacent, avoid_orphans))
        assert got == want

    @precondition(lambda self: self.model.available_count > 0)
    @rule(data=st.data())
    def hold_the_best(self, data: st.DataObject) -> None:
        """Fill the way a sale does, so searches also run on crowded rows."""
        k = data.draw(st.integers(1, 4))
        pick = self.engine.best_available(k)
        if pick is not None:
            self.engine.hold(pick)
            self.model.apply("hold", pick)

    @rule()
    def round_trip_map(self) -> None:
        seat_map = tessera_core.SeatMap.decode(self.engine.encode())
        assert seat_map == self.engine.seat_map()
        assert [
            seat_map.is_available(i) for i in range(seat_map.seat_count)
        ] == self.model.availability()

    @invariant()
    def same_state(self) -> None:
        assert list(self.engine.states()) == self.model.states
        assert self.engine.version == self.model.version
        assert self.engine.available_count == self.model.available_count


class EventMachine(RuleBasedStateMachine):
    @initialize(data=st.data(), sections=st.lists(row_lengths, min_size=1, max_size=4))
    def build(self, data: st.DataObject, sections: list[list[int]]) -> None:
        spec = [
            (
                lengths,
                data.draw(
                    st.lists(st.integers(0, 6), min_size=len(lengths), max_size=len(lengths))
                ),
            )
            for lengths in sections
        ]
        self.engine = tessera_core.EventSeats(spec)
        self.model = EventModel(spec)
        self.section_ids = st.integers(-1, len(spec))
        self.previous = [self.engine.seat_map(s) for s in range(len(spec))]

    def seats_for(self, data: st.DataObject, section: int) -> list[int]:
        top = (
            self.model.sections[section].seat_count
            if 0 <= section < len(self.model.sections)
            else 3
        )
        return data.draw(st.lists(st.integers(-1, top), min_size=1, max_size=4))

    @rule(data=st.data(), op=st.sampled_from(OPS))
    def change(self, data: st.DataObject, op: str) -> None:
        section = data.draw(self.section_ids)
        seats = self.seats_for(data, section)
        got = outcome(lambda: getattr(self.engine, op)(section, seats))
        want = outcome(lambda: self.model.apply(op, section, seats))
        assert got == want

    @rule(data=st.data(), op=st.sampled_from(["hold", "release", "sell"]))
    def change_many(self, data: st.DataObject, op: str) -> None:
        sections = data.draw(st.lists(self.section_ids, max_size=5))
        requests = [(s, self.seats_for(data, s)) for s in sections]
        got = outcome(lambda: getattr(self.engine, f"{op}_many")(requests))
        want = outcome(lambda: self.model.apply_many(op, requests))
        assert got == want

    @rule(
        data=st.data(),
        k=st.integers(1, 6),
        adjacent=st.booleans(),
        avoid_orphans=st.booleans(),
    )
    def best_available(
        self, data: st.DataObject, k: int, adjacent: bool, avoid_orphans: bool
    ) -> None:
        within = data.draw(st.none() | st.lists(self.section_ids, max_size=3))
        got = outcome(lambda: self.engine.best_available(k, within, adjacent, avoid_orphans))
        want = outcome(lambda: self.model.best_available(k, within, adjacent, avoid_orphans))
        if got[0] == "ok" and got[1] is not None:
            got = ("ok", (got[1][0], got[1][1]))
        assert got == want

    @precondition(lambda self: any(s.available_count for s in self.model.sections))
    @rule(k=st.integers(1, 4))
    def hold_the_best(self, k: int) -> None:
        pick = self.engine.best_available(k)
        if pick is not None:
            self.engine.hold(*pick)
            self.model.apply("hold", *pick)

    @rule()
    def deltas_replay(self) -> None:
        """Deltas from the last seen maps bring them to the current ones."""
        for s in range(self.engine.section_count):
            current = self.engine.seat_map(s)
            if current.version > self.previous[s].version:
                self.previous[s].apply_delta(self.previous[s].delta_to(current))
            assert self.previous[s] == current

    @rule(include_versions=st.booleans())
    def event_map_round_trip(self, include_versions: bool) -> None:
        counts = self.engine.section_seat_counts()
        tag, versions, maps = tessera_core.decode_event(
            self.engine.encode(include_versions), counts
        )
        assert tag == tessera_core.version_tag(self.engine.versions())
        assert versions == (self.engine.versions() if include_versions else None)
        for s, seat_map in enumerate(maps):
            assert seat_map.bitmap() == self.engine.seat_map(s).bitmap()

    @invariant()
    def same_state(self) -> None:
        for s, section in enumerate(self.model.sections):
            assert list(self.engine.states(s)) == section.states
            assert self.engine.version(s) == section.version


SETTINGS = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestSection = SectionMachine.TestCase
TestSection.settings = SETTINGS
TestEvent = EventMachine.TestCase
TestEvent.settings = SETTINGS


def test_model_and_engine_pick_the_same_in_a_known_case() -> None:
    """A hand-checked anchor for the machines above: 5 free seats and k = 4 strand one seat,
    so the pick moves to the next row where it does not."""
    lengths, ranks = [5, 8], [0, 1]
    for impl in (tessera_core.Section(lengths, ranks), SectionModel(lengths, ranks)):
        assert impl.best_available(4) == [7, 8, 9, 10]
        assert impl.best_available(4, avoid_orphans=False) == [0, 1, 2, 3]


pytestmark = pytest.mark.filterwarnings("error")


def test_reference_encoder_output_decodes_in_the_engine() -> None:
    """The plain-Python encoder (the benchmark's baseline) writes the documented format: the
    engine's strict decoder accepts it and sees the same seats, for every body encoding."""
    spec: list[tuple[list[int], list[int] | None]] = [([30] * 40, None), ([25] * 30, None)]
    engine, model = tessera_core.EventSeats(spec), EventModel(spec)
    fills = [
        [],  # all available: runs
        [(0, list(range(r * 30, r * 30 + 15))) for r in range(20)],  # regular runs: deflated
        [(0, [i]) for i in range(600, 1200, 3)]
        + [(1, [i]) for i in range(0, 750, 2)],  # fragmented
    ]
    body_tags = set()
    for fill in fills:
        # Header: 5 fixed bytes, section count (1), seat count (2), layout hash (4), tag (8).
        body_tags.add(model.encode()[20])
        for section, seats in fill:
            engine.hold(section, seats)
            model.apply("hold", section, seats)
        for include_versions in (False, True):
            data = model.encode(include_versions)
            tag, versions, maps = tessera_core.decode_event(data, engine.section_seat_counts())
            assert tag == tessera_core.version_tag(engine.versions())
            assert versions == (engine.versions() if include_versions else None)
            assert [m.bitmap() for m in maps] == [
                engine.seat_map(s).bitmap() for s in range(engine.section_count)
            ]
    body_tags.add(model.encode()[20])
    assert body_tags >= {1, 3}, "runs and deflated runs"
    assert body_tags & {0, 2}, "a raw bitmap, plain or deflated"
