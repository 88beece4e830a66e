"""Every documented rejection through the binding: the right exception, nothing changed."""

from __future__ import annotations

from typing import Any

import pytest

import tessera_core as tc


@pytest.fixture
def section() -> tc.Section:
    return tc.Section([4, 6], [1, 0])


@pytest.fixture
def event() -> tc.EventSeats:
    return tc.EventSeats([([4, 6], None), ([5], [3])])


@pytest.mark.parametrize(
    ("seats", "error", "listed"),
    [
        ([10], tc.InvalidSeat, [10]),
        ([-1, 3, 99], tc.InvalidSeat, [-1, 99]),
        ([2, 2], tc.InvalidSeat, [2]),
        ([2**40], tc.InvalidSeat, [2**40]),
    ],
)
def test_invalid_seats_are_listed_and_change_nothing(
    section: tc.Section, seats: list[int], error: type[tc.InvalidSeat], listed: list[int]
) -> None:
    with pytest.raises(error) as raised:
        section.hold(seats)
    assert raised.value.seats == listed
    assert isinstance(raised.value, ValueError)
    assert section.version == 0
    assert section.available_count == 10


def test_conflicts_list_exactly_the_unavailable_seats(section: tc.Section) -> None:
    section.hold([1, 2])
    section.block([5])
    with pytest.raises(tc.SeatUnavailable) as raised:
        section.hold([0, 1, 2, 3, 5])
    assert raised.value.seats == [1, 2, 5]
    assert section.state(0) == tc.SeatState.AVAILABLE
    assert section.version == 2


@pytest.mark.parametrize("bad", [0, -1, 257, 2**70])
def test_quantity_out_of_range(section: tc.Section, event: tc.EventSeats, bad: int) -> None:
    error = OverflowError if bad >= 2**63 else ValueError
    with pytest.raises(error):
        section.best_available(bad)
    with pytest.raises(error):
        event.best_available(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.hold("12"),
        lambda s: s.hold([1.5]),
        lambda s: s.hold(None),
        lambda s: s.hold_many([1, 2]),
        lambda s: s.best_available("4"),
        lambda s: s.restore("0000000000", 1),
    ],
)
def test_wrong_types_raise_type_error(section: tc.Section, call: Any) -> None:
    with pytest.raises(TypeError):
        call(section)
    assert section.version == 0


def test_empty_requests_are_value_errors(section: tc.Section) -> None:
    with pytest.raises(ValueError, match="no seats"):
        section.hold([])
    with pytest.raises(ValueError, match="no seats"):
        section.hold_many([[1], []])
    assert section.version == 0


@pytest.mark.parametrize(
    ("lengths", "ranks"),
    [([], None), ([0], None), ([3], [1, 2]), ([-1], None), ([4097], None), ([4096] * 17, None)],
)
def test_bad_layouts(lengths: list[int], ranks: list[int] | None) -> None:
    with pytest.raises(ValueError):
        tc.Section(lengths, ranks)


def test_restore_checks_length_and_state_bytes(section: tc.Section) -> None:
    with pytest.raises(ValueError, match="states given"):
        section.restore(bytes(3), 1)
    with pytest.raises(ValueError, match="unknown state"):
        section.restore(bytes([0] * 9 + [7]), 1)
    with pytest.raises(ValueError, match="version"):
        section.restore(bytes(10), -1)
    section.restore(bytes([1, 2, 3, 0, 0, 0, 0, 0, 0, 0]), 9)
    assert [section.state(i) for i in range(3)] == [
        tc.SeatState.HELD,
        tc.SeatState.SOLD,
        tc.SeatState.BLOCKED,
    ]
    assert section.version == 9
    assert section.available_count == 7


def test_event_section_indices(event: tc.EventSeats) -> None:
    for bad in (-1, 2, 2**40):
        with pytest.raises(ValueError, match="section index"):
            event.hold(bad, [0])
        with pytest.raises(ValueError, match="section index"):
            event.best_available(2, sections=[0, bad])
    with pytest.raises(ValueError, match="section index"):
        event.hold_many([(0, [1]), (5, [1])])
    assert event.versions() == [0, 0]


def test_event_batch_rejects_whole_batch_on_an_invalid_seat(event: tc.EventSeats) -> None:
    with pytest.raises(tc.InvalidSeat) as raised:
        event.hold_many([(0, [1, 2]), (1, [7])])
    assert raised.value.seats == [7]
    assert event.available_count == 15


def test_seat_map_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="bitmap"):
        tc.SeatMap(b"\xff", 9)
    with pytest.raises(ValueError):
        tc.SeatMap(b"", 0)
    with pytest.raises(ValueError):
        tc.SeatMap.all_available(tc.SECTION_SEATS_MAX + 1)
    with pytest.raises(ValueError, match="seat_count"):
        tc.SeatMap.all_available(-5)


@pytest.mark.parametrize(
    "data", [b"", b"TS", b"garbage" * 3, bytes(tc.SEATMAP_BYTES_MAX + 1), bytes(range(256))]
)
def test_decoders_reject_bad_bytes_with_value_error(data: bytes) -> None:
    with pytest.raises(tc.SeatMapError):
        tc.SeatMap.decode(data)
    with pytest.raises(ValueError):
        tc.decode_event(data, [10])
    seat_map = tc.SeatMap.all_available(10)
    with pytest.raises(ValueError):
        seat_map.apply_delta(data)
    assert seat_map == tc.SeatMap.all_available(10)


def test_delta_on_the_wrong_version_raises_version_mismatch() -> None:
    section = tc.Section([10])
    base = section.seat_map()
    section.hold([1])
    one = section.seat_map()
    section.hold([2])
    two = section.seat_map()
    delta = one.delta_to(two)
    with pytest.raises(tc.VersionMismatch) as raised:
        base.apply_delta(delta)
    assert (raised.value.expected, raised.value.actual) == (1, 0)
    with pytest.raises(ValueError, match="forward"):
        two.delta_to(one)
    with pytest.raises(ValueError, match="seat counts"):
        base.delta_to(tc.SeatMap.all_available(11, 5))


def test_event_map_for_another_layout_is_rejected(event: tc.EventSeats) -> None:
    data = event.encode()
    with pytest.raises(tc.SeatMapError, match="layout"):
        tc.decode_event(data, [10, 6])
    with pytest.raises(tc.SeatMapError, match="layout"):
        tc.decode_event(data, [5, 10])
