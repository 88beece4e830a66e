"""The repository's `nats/` folder holds configuration, never Python: with the project root on
`sys.path` (editable install, pytest), a `nats` package there would shadow the nats-py client."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_nats_folder_holds_no_python() -> None:
    python_files = [p for p in (ROOT / "nats").rglob("*") if p.suffix in {".py", ".pyc", ".pyi"}]
    assert python_files == []


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
    assert "nats.aio.client" in result.stdout


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
