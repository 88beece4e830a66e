"""The venue generators and the `tessera venue` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tessera.venue import Venue, dump_venue, load_venue, load_venue_file
from tessera_ops import venue_gen
from tessera_ops.cli import main
from tessera_ops.venue_gen import Kind, generate, row_id

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "tessera_ops" / "venues"


@pytest.fixture(scope="module")
def stadium() -> Venue:
    return generate("stadium")


def all_rows_realistic(venue: Venue) -> bool:
    """18..40 seats per row, and rows never get narrower going back."""
    return all(
        all(18 <= n <= 40 for n in layout.row_lengths)
        and all(a <= b for a, b in zip(layout.row_lengths, layout.row_lengths[1:], strict=False))
        for layout in venue.layouts
    )


def test_stadium_has_100_sections_in_three_tiers(stadium: Venue) -> None:
    assert stadium.seat_count == 70_000
    ids = [layout.section_id for layout in stadium.layouts]
    assert len(ids) == 100
    assert {section_id[0] for section_id in ids} == {"1", "2", "3"}
    assert all_rows_realistic(stadium)
    assert stadium.blocked_count > 0


@pytest.mark.parametrize("seats", [10_000, 70_000, 200_000])
def test_stadium_ranks_are_comparable_across_sections(seats: int) -> None:
    stadium = generate("stadium", seats)
    by_id = {layout.section_id: layout for layout in stadium.layouts}
    for layout in stadium.layouts:  # front rows first within a section
        assert list(layout.row_ranks) == sorted(layout.row_ranks)
    # Midfield beats the end zone, and the lower bowl beats the upper deck at the same angle.
    assert by_id["101"].row_ranks[0] < by_id["111"].row_ranks[0]
    assert by_id["101"].row_ranks[0] < by_id["301"].row_ranks[0]
    assert max(by_id["101"].row_ranks) < by_id["301"].row_ranks[0]


def test_stadium_prices_use_rows_tiers_and_seat_overrides(stadium: Venue) -> None:
    used = {
        layout.price_tier(index) for layout in stadium.layouts for index in range(layout.seat_count)
    }
    assert used == set(stadium.price_tiers)  # every tier sells somewhere, no seat lacks one
    overrides = [r for s in stadium.spec.sections for r in s.rows if r.seat_price_tiers]
    assert overrides


def test_theatre_has_three_levels_and_explicit_labels() -> None:
    theatre = generate("theatre")
    assert theatre.seat_count == 500
    assert [layout.name for layout in theatre.layouts] == ["Orchestra", "Mezzanine", "Balcony"]
    assert all_rows_realistic(theatre)
    assert theatre.layouts[0].seat_id(0) == "ORCH:A:101"
    assert theatre.blocked_count == 4


@pytest.mark.parametrize(
    ("kind", "seats"),
    [
        ("stadium", 10_000),
        ("stadium", 54_321),
        ("stadium", 70_001),
        ("stadium", 200_000),
        ("theatre", 100),
        ("theatre", 777),
        ("theatre", 5_000),
    ],
)
def test_any_seat_count_within_bounds_is_hit_exactly(kind: Kind, seats: int) -> None:
    venue = generate(kind, seats, seed=3)
    assert venue.seat_count == seats
    assert all_rows_realistic(venue)


@pytest.mark.parametrize("kind", venue_gen.KINDS)
def test_seat_counts_outside_the_bounds_are_refused(kind: Kind) -> None:
    low, high = venue_gen.seat_bounds(kind)
    for seats in (low - 1, high + 1):
        with pytest.raises(ValueError, match="seats, not"):
            generate(kind, seats)


@pytest.mark.parametrize("kind", venue_gen.KINDS)
def test_same_seed_same_venue_other_seed_other_venue(kind: Kind) -> None:
    first = dump_venue(generate(kind, seed=42))
    assert dump_venue(generate(kind, seed=42)) == first
    assert dump_venue(generate(kind, seed=43)) != first


@pytest.mark.parametrize(
    ("kind", "name"), [("stadium", "stadium-70k.json"), ("theatre", "theatre-500.json")]
)
def test_shipped_examples_are_the_default_output(kind: Kind, name: str) -> None:
    assert (EXAMPLES / name).read_bytes() == dump_venue(generate(kind))


def test_row_ids_skip_i_and_o_and_double_up_past_z() -> None:
    assert [row_id(n) for n in range(10)] == ["A", "B", "C", "D", "E", "F", "G", "H", "J", "K"]
    assert row_id(23) == "Z"
    assert row_id(24) == "AA"
    assert row_id(25) == "BB"
    assert row_id(48) == "AAA"
    assert not any(c in "IO" for n in range(200) for c in row_id(n))


# --- CLI ---


def test_cli_generate_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "theatre.json"
    assert (
        main(["venue", "generate", "--kind", "theatre", "--seats", "600", "--out", str(out)]) == 0
    )
    venue = load_venue_file(out)
    assert venue.seat_count == 600
    capsys.readouterr()
    assert main(["venue", "validate", str(out)]) == 0
    assert capsys.readouterr().out == (
        f"ok Tessera Theatre: 3 sections, {venue.row_count} rows, 600 seats, 4 blocked\n"
    )


def test_cli_generate_writes_stdout_by_default(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["venue", "generate", "--kind", "theatre", "--seed", "9"]) == 0
    assert capsysbinary.readouterr().out == dump_venue(generate("theatre", seed=9))


def test_cli_validate_reports_the_venue_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(
        b'{"name": "x", "sections": [{"id": "1", "name": "s", "rows": '
        b'[{"id": "A", "seats": 2, "rank": 0, "blocked": ["3"]}]}]}'
    )
    assert main(["venue", "validate", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"{path}: sections[0].rows[0].blocked: unknown seat label '3'\n"


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["venue", "validate", str(tmp_path / "missing.json")]) == 1
    assert "No such file" in capsys.readouterr().err
    assert main(["venue", "generate", "--kind", "theatre", "--seats", "99"]) == 2
    assert "100..5000" in capsys.readouterr().err
    target = tmp_path / "no-such-dir" / "v.json"
    assert main(["venue", "generate", "--kind", "theatre", "--out", str(target)]) == 1
    assert f"cannot write {target}" in capsys.readouterr().err
    for argv in (["venue", "generate", "--kind", "arena"], ["venue", "frobnicate"], []):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_cli_as_a_module(tmp_path: Path) -> None:
    out = tmp_path / "stadium.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "tessera_ops.cli", "venue"]
    generated = subprocess.run(
        [*cli, "generate", "--kind", "stadium", "--seed", "5", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stderr
    validated = subprocess.run(
        [*cli, "validate", str(out)], env=env, capture_output=True, text=True, check=False
    )
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith("ok Tessera Stadium: 100 sections, ")
    assert "70000 seats" in validated.stdout
    assert load_venue(out.read_bytes()).seat_count == 70_000
