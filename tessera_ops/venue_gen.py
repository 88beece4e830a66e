"""Deterministic generators of realistic venue documents: a bowl stadium and a three-level theatre.

Both plan sections first (position, first-row width, how fast rows widen), then add rows where
they are most lacking until the requested seat count is nearly reached, and finally widen back
rows by one seat at a time to hit the count exactly. Every row keeps 18..40 seats and rows never
get narrower going back, as in a real bowl.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Final, Literal

from tessera import limits
from tessera.venue import PriceTier, RowSpec, SectionSpec, Venue, VenueSpec

__all__ = [
    "KINDS",
    "Kind",
    "generate",
    "generate_stadium",
    "generate_theatre",
    "row_id",
    "seat_bounds",
    "shipped_venue",
]

Kind = Literal["stadium", "theatre"]
KINDS: Final[tuple[Kind, ...]] = ("stadium", "theatre")


def shipped_venue(name: str) -> Path:
    """The venue file `name` shipped inside this package (tessera_ops/venues/: the default output
    of `generate` for each kind), found through the import system so that an installed `tessera`
    works from any directory, not only from a source checkout."""
    resource = resources.files("tessera_ops") / "venues" / name
    # pip unpacks wheels and the editable install points at the source tree, so the resource is a
    # plain file and its path stays valid for the whole process (as_file() would hand out a
    # temporary copy meant for zipped packages, which this one never is).
    if not isinstance(resource, Path):
        raise FileNotFoundError(f"venue {name!r} is not a file on disk: {resource}")
    return resource


ROW_SEATS_MIN: Final = 18
ROW_SEATS_MAX: Final = 40
# Real venues skip I and O in row letters: they read as 1 and 0.
ROW_LETTERS: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ"
# Ranks are tenths of a "row step" so that tier and view penalties can be fractional.
RANK_SCALE: Final = 10

_DEFAULT_SEATS: Final[dict[Kind, int]] = {"stadium": 70_000, "theatre": 500}
# Wide enough for small arenas up to the largest stadiums, yet every section stays far inside
# section_seats_max and every row id inside venue_id_chars_max.
_SEAT_BOUNDS: Final[dict[Kind, tuple[int, int]]] = {
    "stadium": (10_000, 200_000),
    "theatre": (100, 5_000),
}
_ROWS_PER_SECTION_MAX: Final = min(limits.section_rows_max, len(ROW_LETTERS) * 8)


def row_id(number: int) -> str:
    """Row id of the `number`-th row (0-based): A..Z without I and O, then AA, BB, ..., AAA."""
    letter = ROW_LETTERS[number % len(ROW_LETTERS)]
    return letter * (number // len(ROW_LETTERS) + 1)


def seat_bounds(kind: Kind) -> tuple[int, int]:
    """Smallest and largest seat count `generate` accepts for `kind`."""
    return _SEAT_BOUNDS[kind]


@dataclass
class _Plan:
    """One section being planned; `lengths` grows row by row."""

    id: str
    name: str
    ring: str
    first: float  # seats in the first row, before rounding
    growth: float  # seats added per row going back
    weight: float  # relative number of rows
    # Where the first row sits, and what the worst angle costs, in depths of the front ring (its
    # row count): relative units keep ranks comparable across sections at any venue size.
    depth: float
    view_penalty: float
    view: float  # 0 = facing the centre or stage .. 1 = worst angle
    row_step: float = 1.0  # rank added per row going back, in row steps
    rank_base: float = 0.0  # rank of the first row in row steps, set by _anchor_ranks
    lengths: list[int] = field(default_factory=list)

    def next_length(self) -> int:
        width = round(self.first + self.growth * len(self.lengths))
        return max(ROW_SEATS_MIN, min(ROW_SEATS_MAX, width))

    def rank(self, row: int) -> int:
        return round(RANK_SCALE * (self.rank_base + self.row_step * row))


def _fill(plans: list[_Plan], seats: int, rng: random.Random) -> None:
    """Give every plan rows so that they hold exactly `seats` seats in total."""
    for plan in plans:
        plan.lengths.append(plan.next_length())
    used = sum(plan.lengths[0] for plan in plans)
    if used > seats:
        raise ValueError(f"{seats} seats cannot give each of {len(plans)} sections one row")
    # Always extend the section furthest behind its share, so rings keep their proportions.
    queue = [(1 / plan.weight, number) for number, plan in enumerate(plans)]
    heapq.heapify(queue)
    while queue:
        _, number = heapq.heappop(queue)
        plan = plans[number]
        width = plan.next_length()
        if used + width > seats or len(plan.lengths) >= _ROWS_PER_SECTION_MAX:
            continue  # this section is done; a narrower one may still fit
        plan.lengths.append(width)
        used += width
        heapq.heappush(queue, (len(plan.lengths) / plan.weight, number))
    _widen(plans, seats - used, rng)


def _widen(plans: list[_Plan], missing: int, rng: random.Random) -> None:
    """Add `missing` seats, one per row, sweeping each section from its back row forwards.

    A sweep widens a run of back rows by one each, so rows still never narrow going back, and the
    few leftover seats spread over many sections and rows instead of bulging one back row.
    """
    order = list(range(len(plans)))
    rng.shuffle(order)
    cursor = dict.fromkeys(order, -1)
    while missing:
        widened = False
        for number in order:
            lengths = plans[number].lengths
            row = cursor[number]
            if row < 0 or lengths[row] >= ROW_SEATS_MAX:  # start a new sweep at the back
                narrow = [r for r, n in enumerate(lengths) if n < ROW_SEATS_MAX]
                row = narrow[-1] if narrow else -1
            if row >= 0 and missing:
                lengths[row] += 1
                missing -= 1
                widened = True
                cursor[number] = row - 1
        if not widened:
            raise ValueError(f"no row left to widen below {ROW_SEATS_MAX} seats")


def _anchor_ranks(plans: list[_Plan]) -> None:
    """Turn relative depths into ranks once the front ring's row count is known."""
    front = [len(plan.lengths) for plan in plans if plan.ring == plans[0].ring]
    rows = sum(front) / len(front)
    for plan in plans:
        plan.rank_base = (plan.depth + plan.view_penalty * plan.view) * rows


def _rows(plan: _Plan, tier_of_row: Callable[[int], str | None]) -> list[RowSpec]:
    return [
        RowSpec(id=row_id(r), seats=n, rank=plan.rank(r), price_tier=tier_of_row(r))
        for r, n in enumerate(plan.lengths)
    ]


def _with_blocks(
    row: RowSpec, start: int, count: int, neighbour_tier: str | None = None
) -> RowSpec:
    """`row` with seats start..start+count-1 (0-based) blocked, neighbours re-priced if asked."""
    labels = row.labels or [str(s + 1) for s in range(row.seats)]
    blocked = [*row.blocked, *labels[start : start + count]]
    overrides = dict(row.seat_price_tiers)
    if neighbour_tier is not None:
        for s in (start - 1, start + count):
            if 0 <= s < row.seats and labels[s] not in blocked:
                overrides[labels[s]] = neighbour_tier
    return RowSpec(
        id=row.id,
        seats=row.seats,
        rank=row.rank,
        labels=row.labels,
        price_tier=row.price_tier,
        seat_price_tiers=overrides,
        blocked=blocked,
    )


# --- stadium ---

_STADIUM_TIERS: Final = [
    PriceTier(id="FR", name="Lower Sideline Front", price_minor=29_500, currency="USD"),
    PriceTier(id="LS", name="Lower Sideline", price_minor=22_500, currency="USD"),
    PriceTier(id="LC", name="Lower Corner", price_minor=15_000, currency="USD"),
    PriceTier(id="LE", name="Lower End", price_minor=9_500, currency="USD"),
    PriceTier(id="CS", name="Club Sideline", price_minor=32_500, currency="USD"),
    PriceTier(id="CC", name="Club Corner", price_minor=19_500, currency="USD"),
    PriceTier(id="US", name="Upper Sideline", price_minor=8_500, currency="USD"),
    PriceTier(id="UC", name="Upper Corner", price_minor=6_500, currency="USD"),
    PriceTier(id="UE", name="Upper End", price_minor=4_500, currency="USD"),
    PriceTier(id="LV", name="Limited View", price_minor=3_500, currency="USD"),
]


@dataclass(frozen=True)
class _Ring:
    """One tier of the bowl."""

    prefix: int  # section numbers are prefix + 1, prefix + 2, ...
    name: str
    sections: int
    first: float
    growth: float
    weight: float
    depth: float  # the club's front row is about as good as a row 30% into the lower bowl
    row_step: float  # upper deck rows are steeper and count for more
    view_penalty: float


_RINGS: Final = (
    _Ring(100, "Lower", 40, first=19, growth=0.55, weight=26, depth=0, row_step=1.0,
          view_penalty=0.7),
    _Ring(200, "Club", 24, first=22, growth=0.7, weight=9, depth=0.3, row_step=1.0,
          view_penalty=0.55),
    _Ring(300, "Upper", 36, first=21, growth=0.5, weight=24, depth=1.05, row_step=1.2,
          view_penalty=0.7),
)  # fmt: skip


def _stadium_plans(rng: random.Random) -> list[_Plan]:
    plans: list[_Plan] = []
    for ring in _RINGS:
        for i in range(ring.sections):
            # Section 1 of each ring sits at midfield of the main sideline; numbers go around.
            theta = 2 * math.pi * (i + 0.5) / ring.sections
            view = abs(math.sin(theta))  # 0 at midfield, 1 behind the goals / at the far end
            corner = abs(math.sin(2 * theta))  # wedge-shaped corner sections widen fastest
            plans.append(
                _Plan(
                    id=str(ring.prefix + i + 1),
                    name=f"{ring.name} {ring.prefix + i + 1}",
                    ring=ring.name,
                    first=ring.first - 2 * corner + rng.uniform(-1, 1),
                    growth=ring.growth * (0.6 + 0.8 * corner) * rng.uniform(0.9, 1.1),
                    weight=ring.weight,
                    depth=ring.depth,
                    view_penalty=ring.view_penalty,
                    view=view,
                    row_step=ring.row_step,
                )
            )
    return plans


def _stadium_tier(plan: _Plan, row: int) -> str:
    if plan.ring == "Club":
        return "CS" if plan.view < 0.6 else "CC"
    zone = "S" if plan.view < 0.45 else "C" if plan.view < 0.85 else "E"
    if plan.ring == "Lower":
        return "FR" if zone == "S" and row < 3 else "L" + zone
    return "U" + zone


def _stadium_section(plan: _Plan, rng: random.Random) -> SectionSpec:
    rows = _rows(plan, lambda r: _stadium_tier(plan, r))
    # Camera platforms: four seats in a middle row of the lower sections facing midfield and the
    # ends; the seats beside them become limited view. Railing kills: two aisle seats upstairs.
    number = int(plan.id)
    if number in (101, 121, 111, 131):
        r = len(rows) // 2
        start = rng.randrange(2, rows[r].seats - 6)
        rows[r] = _with_blocks(rows[r], start, 4, neighbour_tier="LV")
    elif plan.ring == "Upper" and number % 9 == 4:
        r = rng.randrange(len(rows))
        rows[r] = _with_blocks(rows[r], rows[r].seats - 2, 2)
    return SectionSpec(id=plan.id, name=plan.name, rows=rows)


def generate_stadium(seats: int = 70_000, seed: int = 1) -> VenueSpec:
    """A 100-section bowl (lower 1xx, club 2xx, upper 3xx) with exactly `seats` seats."""
    rng = random.Random(seed)
    plans = _stadium_plans(rng)
    _fill(plans, seats, rng)
    _anchor_ranks(plans)
    sections = [_stadium_section(plan, rng) for plan in plans]
    return VenueSpec(name="Tessera Stadium", price_tiers=_STADIUM_TIERS, sections=sections)


# --- theatre ---

_THEATRE_TIERS: Final = [
    PriceTier(id="OP", name="Orchestra Premium", price_minor=18_900, currency="USD"),
    PriceTier(id="OR", name="Orchestra", price_minor=12_900, currency="USD"),
    PriceTier(id="MF", name="Front Mezzanine", price_minor=14_900, currency="USD"),
    PriceTier(id="MR", name="Rear Mezzanine", price_minor=8_900, currency="USD"),
    PriceTier(id="BA", name="Balcony", price_minor=5_900, currency="USD"),
    PriceTier(id="PV", name="Partial View", price_minor=3_900, currency="USD"),
]


def _theatre_plans(rng: random.Random) -> list[_Plan]:
    levels = (
        # id, name, first row, growth, rows weight, depth (in orchestra depths)
        ("ORCH", "Orchestra", 18.0, 1.2, 10.0, 0.0),
        # The front mezzanine is sold as premium: about as good as mid-orchestra.
        ("MEZZ", "Mezzanine", 22.0, 1.0, 6.0, 0.45),
        ("BALC", "Balcony", 24.0, 0.8, 5.0, 1.1),
    )
    return [
        _Plan(
            id=sid,
            name=name,
            ring=name,
            first=first + rng.uniform(-0.5, 0.5),
            growth=growth,
            weight=weight,
            depth=depth,
            view_penalty=0.0,
            view=0.0,
        )
        for sid, name, first, growth, weight, depth in levels
    ]


def _theatre_tier(plan: _Plan, row: int) -> str:
    if plan.id == "ORCH":
        return "OP" if row < 6 else "OR"
    if plan.id == "MEZZ":
        return "MF" if row < 3 else "MR"
    return "BA"


def _theatre_section(plan: _Plan, rng: random.Random) -> SectionSpec:
    rows: list[RowSpec] = []
    for row in _rows(plan, lambda r: _theatre_tier(plan, r)):
        # House numbering: seats run 101, 102, ... across the row.
        labels = [str(101 + s) for s in range(row.seats)]
        overrides = {}
        if plan.id == "BALC":  # the ends of balcony rows look past the proscenium
            overrides = {labels[s]: "PV" for s in (0, 1, row.seats - 2, row.seats - 1)}
        rows.append(
            RowSpec(
                id=row.id,
                seats=row.seats,
                rank=row.rank,
                labels=labels,
                price_tier=row.price_tier,
                seat_price_tiers=overrides,
            )
        )
    if plan.id == "ORCH":  # the sound desk takes four centre seats of the last row
        centre = rows[-1].seats // 2 - 2 + rng.randrange(-1, 2)
        rows[-1] = _with_blocks(rows[-1], centre, 4)
    return SectionSpec(id=plan.id, name=plan.name, rows=rows)


def generate_theatre(seats: int = 500, seed: int = 1) -> VenueSpec:
    """Orchestra, mezzanine and balcony with exactly `seats` seats."""
    rng = random.Random(seed)
    plans = _theatre_plans(rng)
    _fill(plans, seats, rng)
    _anchor_ranks(plans)
    sections = [_theatre_section(plan, rng) for plan in plans]
    return VenueSpec(name="Tessera Theatre", price_tiers=_THEATRE_TIERS, sections=sections)


def generate(kind: Kind, seats: int | None = None, seed: int = 1) -> Venue:
    """A validated venue of `kind` with `seats` seats (default 70,000 / 500); same seed, same venue.

    Raises ValueError when `seats` is outside `seat_bounds(kind)`.
    """
    count = _DEFAULT_SEATS[kind] if seats is None else seats
    low, high = _SEAT_BOUNDS[kind]
    if not low <= count <= high:
        raise ValueError(f"a {kind} has {low}..{high} seats, not {count}")
    build = generate_stadium if kind == "stadium" else generate_theatre
    return Venue(build(count, seed))
