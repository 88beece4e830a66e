"""The demo venues are package data (tessera_ops/venues/), found through the import system: an
installed `tessera` works from any directory, not only from a source checkout. And `tessera
--version` tells which release is installed."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

import tessera_ops
from tessera.venue import load_venue_file
from tessera_ops import stack, venue_gen
from tessera_ops.cli import main

PACKAGE_VENUES = Path(tessera_ops.__file__).resolve().parent / "venues"
TESSERA = Path(sys.executable).parent / "tessera"  # the installed console script


def test_shipped_venue_is_the_file_inside_the_package() -> None:
    path = venue_gen.shipped_venue("theatre-500.json")
    assert path == PACKAGE_VENUES / "theatre-500.json"
    assert load_venue_file(path).seat_count == 500


def test_the_demo_venue_does_not_depend_on_the_working_directory(tmp_path: Path) -> None:
    """Imported afresh from a directory with no source tree around, `tessera up`'s default venue
    is still the stadium inside the package."""
    probe = "from tessera_ops import stack; print(stack.DEMO_VENUE)"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    found = Path(result.stdout.strip())
    assert found == stack.DEMO_VENUE == PACKAGE_VENUES / "stadium-70k.json"
    assert tmp_path not in found.parents
    assert load_venue_file(found).seat_count == 70_000


def test_tessera_up_defaults_to_the_demo_venue() -> None:
    from tessera_ops.cli import _parser  # noqa: PLC0415  (the parser, without running `up`)

    assert _parser().parse_args(["up"]).venue == stack.DEMO_VENUE


@pytest.mark.parametrize("name", sorted(p.name for p in PACKAGE_VENUES.glob("*.json")))
def test_the_installed_cli_validates_each_shipped_venue_from_elsewhere(
    tmp_path: Path, name: str
) -> None:
    result = subprocess.run(
        [TESSERA, "venue", "validate", venue_gen.shipped_venue(name)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok ")


def test_version_is_the_installed_distributions(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"tessera {importlib.metadata.version('tessera')}\n"
