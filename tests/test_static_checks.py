"""The house rules as tests, so the one test command enforces them: rustfmt, clippy with warnings
denied (with and without the Python binding), ruff lint and format, mypy --strict, the
extension's stubs checked against the compiled module by mypy.stubtest, and the import layers
(import-linter's contracts in pyproject.toml)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str | Path) -> None:
    env = {**os.environ, "PYO3_PYTHON": sys.executable}
    result = subprocess.run(
        [str(part) for part in command],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"


def cargo() -> str:
    found = shutil.which("cargo")
    assert found, "cargo is required (README: a Rust toolchain on PATH)"
    return found


def test_rustfmt() -> None:
    run(cargo(), "fmt", "--all", "--check")


@pytest.mark.slow
@pytest.mark.parametrize("features", [[], ["--features", "python"]], ids=["core", "python"])
def test_clippy_denies_warnings(features: list[str]) -> None:
    run(cargo(), "clippy", "-p", "tessera_core", "--all-targets", *features, "--", "-D", "warnings")


def test_ruff_lint() -> None:
    run(BIN / "ruff", "check", ".")


def test_ruff_format() -> None:
    run(BIN / "ruff", "format", "--check", ".")


@pytest.mark.slow
def test_mypy_strict() -> None:
    run(BIN / "mypy")


def test_stubs_match_the_extension() -> None:
    allowlist = ROOT / "tests" / "stubtest-allowlist.txt"
    run(sys.executable, "-m", "mypy.stubtest", "tessera_core", "--allowlist", allowlist)


def test_import_layers() -> None:
    """Kernel < tiers < tooling, and no tier imports another (pyproject.toml)."""
    run(BIN / "lint-imports")
