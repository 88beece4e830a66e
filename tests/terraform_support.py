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
# The tiers' Python packages: where the metrics the dashboards and alarms name are defined.
METRIC_SOURCES: Final = ("global_writer", "regional", "edge", "notifier", "tessera")

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


def example_dir(module: str) -> Path:
    """The module's example configuration (terraform/modules/<m>/examples/basic)."""
    return MODULES / module / "examples" / "basic"


def lock_file(env: str) -> Path:
    return ENVS / env / ".terraform.lock.hcl"


_METRIC_DEFINITION: Final = re.compile(
    r"\b(Counter|Gauge|Histogram)\(\s*\"(tessera_[a-z0-9_]+)\"", re.MULTILINE
)


@cache
def defined_metrics() -> dict[str, str]:
    """Every Prometheus metric the tiers define (name -> Counter, Gauge or Histogram), read from
    the Python sources as written: `Counter(\n    "tessera_...",`."""
    found: dict[str, str] = {}
    for package in METRIC_SOURCES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for kind, name in _METRIC_DEFINITION.findall(path.read_text()):
                found[name] = kind
    return found


def exposed_series(kind: str, name: str) -> set[str]:
    """The series names prometheus_client exposes for one metric (counters gain `_total`,
    histograms `_bucket`, `_sum` and `_count`)."""
    if kind == "Counter":
        return {f"{name}_total", f"{name}_created"}
    if kind == "Histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count", f"{name}_created"}
    return {name}


def prometheus_series() -> set[str]:
    """Every series name a PromQL expression may use."""
    return {s for name, kind in defined_metrics().items() for s in exposed_series(kind, name)}


def cloudwatch_metrics() -> set[str]:
    """Every metric name the ADOT sidecars write to CloudWatch: counters keep `_total` (the
    collector does not normalise names), histograms and gauges keep their own name."""
    return {
        f"{name}_total" if kind == "Counter" else name for name, kind in defined_metrics().items()
    }


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
