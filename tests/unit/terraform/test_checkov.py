"""checkov passes on terraform/, with every skipped check listed and justified in one file
(terraform/.checkov.yaml).

checkov pins `packaging<24` while pytest needs `packaging>=24`, so it cannot live in the project's
venv: the fixture installs the pinned version into its own venv under the user's cache directory
(`$XDG_CACHE_HOME` or `~/.cache`, then `tessera/checkov-<version>`), once per machine (~1 min),
and reuses it afterwards. `TESSERA_CHECKOV` may name a checkov executable to use instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import venv
from pathlib import Path
from typing import Final

import pytest
from terraform_support import TERRAFORM, tf_files

CHECKOV_VERSION: Final = "3.3.30"
CONFIG: Final = TERRAFORM / ".checkov.yaml"
INSTALL_TIMEOUT_S: Final = 600
RUN_TIMEOUT_S: Final = 300


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tessera" / f"checkov-{CHECKOV_VERSION}"


def _install(target: Path) -> None:
    """A venv with checkov at `target`, marked complete only once pip succeeded (an interrupted
    install is redone). Built in place: a venv's scripts name their interpreter by path."""
    shutil.rmtree(target, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(target)
    result = subprocess.run(
        [
            str(target / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"checkov=={CHECKOV_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        pytest.fail(f"installing checkov {CHECKOV_VERSION} failed:\n{result.stderr[-3000:]}")
    (target / _COMPLETE).write_text(CHECKOV_VERSION)


_COMPLETE: Final = "tessera-install-complete"


@pytest.fixture(scope="session")
def checkov() -> Path:
    given = os.environ.get("TESSERA_CHECKOV")
    if given:
        return Path(given)
    target = _cache_dir()
    if not (target / _COMPLETE).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _install(target)
    return target / "bin" / "checkov"


@pytest.mark.slow
def test_checkov_passes(checkov: Path) -> None:
    result = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(TERRAFORM),
            "--config-file",
            str(CONFIG),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
        env={**os.environ, "PYTHONPATH": "", "BC_SKIP_MAPPING": "TRUE"},
    )
    try:
        reports = json.loads(result.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"checkov gave no JSON (exit {result.returncode}):\n{result.stderr[-3000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    assert reports, "checkov reported nothing"
    for report in reports:
        summary = report["summary"]
        failed = [
            f"{c['check_id']} {c['check_name']}: {c['resource']} ({c['file_path']})"
            for c in report["results"]["failed_checks"]
        ]
        assert not failed, "checkov failed:\n" + "\n".join(failed)
        assert summary["parsing_errors"] == 0
        assert summary["passed"] > 0
    assert result.returncode == 0, result.stderr[-3000:]


_SKIP_ENTRY: Final = re.compile(r"^\s*-\s*(CKV2?_[A-Z]+_\d+)\s*(?:#\s*(.*))?$")


def test_every_skipped_check_is_justified_in_the_one_file() -> None:
    entries = [m for line in CONFIG.read_text().splitlines() if (m := _SKIP_ENTRY.match(line))]
    assert entries, "no skip-check entries found"
    seen: set[str] = set()
    for match in entries:
        check, reason = match.group(1), match.group(2) or ""
        assert check not in seen, f"{check} is listed twice"
        seen.add(check)
        assert len(reason) >= 40, f"{check} is skipped without a justification"
    for path in tf_files():
        assert "checkov:skip" not in path.read_text(), f"{path}: skip in .checkov.yaml instead"
