"""`import nats` is always the nats-py client. The NATS definitions are package data of `tessera`
(tessera/resources/nats), never a top-level `nats` folder that an install would put beside the
client's package; the repository's `nats/` keeps only a note pointing there. Neither may hold
Python: with the project root on `sys.path` (editable install, pytest), a `nats` package in the
repository would shadow the client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tessera.jetstream import DEFAULT_DIRECTORY, load_definitions, load_regional_definitions

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DATA = ROOT / "tessera" / "resources" / "nats"


def test_the_nats_folders_hold_no_python() -> None:
    for folder in (ROOT / "nats", PACKAGE_DATA):
        python_files = [p for p in folder.rglob("*") if p.suffix in {".py", ".pyc", ".pyi"}]
        assert python_files == [], folder
    # the repository's nats/ is only the note saying where everything went
    assert sorted(p.name for p in (ROOT / "nats").rglob("*")) == ["README.md"]
    assert "tessera/resources/nats" in (ROOT / "nats" / "README.md").read_text()


def test_the_definitions_are_package_data() -> None:
    assert DEFAULT_DIRECTORY == PACKAGE_DATA / "jetstream"
    assert (PACKAGE_DATA / "server" / "region.json").is_file()


def test_import_nats_is_the_client_library_even_from_the_repository_root() -> None:
    """Run from the root, where `nats/` is the first match a naive import could find."""
    probe = (
        "import nats; "
        "print(nats.__file__); "
        "from nats.aio.client import Client; "
        "from nats.js import JetStreamContext; "
        "print(Client.__module__, JetStreamContext.__module__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    location = Path(result.stdout.splitlines()[0]).resolve()
    assert "site-packages" in location.parts
    assert ROOT / "nats" not in location.parents
    assert PACKAGE_DATA not in location.parents
    assert "nats.aio.client" in result.stdout


def test_the_definitions_load_from_any_directory(tmp_path: Path) -> None:
    """Found through importlib.resources, not the working directory."""
    probe = (
        "from tessera.jetstream import load_definitions, load_regional_definitions; "
        "from tessera_ops.servers import load_nats_shape, load_nats_permissions; "
        "load_nats_shape(); load_nats_permissions(); "
        "print(len(load_definitions()), len(load_regional_definitions()))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    counts = [len(load_definitions()), len(load_regional_definitions())]
    assert result.stdout.split() == [str(n) for n in counts]


def test_every_tier_package_imports() -> None:
    for name in ("tessera", "tessera_core", "global_writer", "regional", "edge", "notifier"):
        result = subprocess.run(
            [sys.executable, "-c", f"import {name}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
