"""Reading terraform/ without a Terraform binary: python-hcl2 parses every file, and these helpers
normalise what it returns (block labels and strings keep their quotes in python-hcl2 8) and pick
out the pieces the structural tests look at."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any, Final

import hcl2

ROOT: Final = Path(__file__).resolve().parent.parent
TERRAFORM: Final = ROOT / "terraform"
MODULES: Final = TERRAFORM / "modules"
ENVS: Final = TERRAFORM / "envs"
MODULE_NAMES: Final = (
    "cockroach_cluster",
    "edge_cdn",
    "nats_regions",
    "observability",
    "redis",
    "service",
)
ENV_NAMES: Final = ("prod", "staging")

Block = dict[str, Any]


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


@cache
def parse(path: Path) -> Block:
    """The file as python-hcl2 reads it."""
    with path.open() as handle:
        parsed: Block = hcl2.load(handle)
    return parsed


def unquote(value: object) -> object:
    """A python-hcl2 string literal without its quotes; expressions stay `${...}`."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def labelled(path: Path, kind: str) -> dict[str, Block]:
    """Every `kind "label" { ... }` block of the file (variable, output, module), by label."""
    blocks: dict[str, Block] = {}
    for entry in parse(path).get(kind, []):
        for label, body in entry.items():
            if not label.startswith("__"):
                blocks[str(unquote(label))] = body
    return blocks


def directory_blocks(directory: Path, kind: str) -> dict[str, Block]:
    blocks: dict[str, Block] = {}
    for path in sorted(directory.glob("*.tf")):
        blocks |= labelled(path, kind)
    return blocks


def resources(directory: Path) -> list[tuple[str, str]]:
    """(type, name) of every resource block in a directory."""
    found = []
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("resource", []):
            for kind, named in entry.items():
                for name in named:
                    found.append((str(unquote(kind)), str(unquote(name))))
    return found


def locals_of(directory: Path) -> Block:
    merged: Block = {}
    for path in sorted(directory.glob("*.tf")):
        for entry in parse(path).get("locals", []):
            merged |= {k: v for k, v in entry.items() if not k.startswith("__")}
    return merged


def variable_default(directory: Path, name: str) -> object:
    return directory_blocks(directory, "variable")[name].get("default")


_TEMPLATEFILE_CALL: Final = re.compile(
    r"templatefile\(\s*local\.server_template\s*,\s*\{(.*)\}\s*\)"
)
_OBJECT_KEY: Final = re.compile(r"(?:^|[\s,{])([a-z_][a-z0-9_]*)\s*=(?!=)")


def templatefile_keys(expression: str) -> set[str]:
    """The top-level keys of the object literal a `templatefile(local.server_template, {...})`
    call passes (python-hcl2 keeps expressions as text)."""
    match = _TEMPLATEFILE_CALL.search(expression)
    assert match, f"no templatefile(local.server_template, {{...}}) in {expression[:200]}"
    body = match.group(1)
    keys: set[str] = set()
    depth = 0
    current = ""
    # Only depth-0 text holds the object's own keys; nested brackets are values.
    for char in body:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif depth == 0:
            current += char
            continue
        if depth == 1 and char in "([{":
            current += " "
    keys.update(_OBJECT_KEY.findall(current))
    return keys
