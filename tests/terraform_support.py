"""Reading terraform/ without a Terraform binary: python-hcl2 parses every file, and these helpers
normalise what it returns (block labels and strings keep their quotes in python-hcl2 8) and pick
out the pieces the structural tests look at. With a `terraform` binary on PATH, `terraform_configs`
also applies the NATS server_config module for real (no provider, no network)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final

import hcl2

from tessera_ops.servers import NatsServerSettings

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


# --- running the real binary on server_config (when there is one on PATH) ---

SERVER_CONFIG_MODULE: Final = MODULES / "nats_regions" / "server_config"

# A root configuration applying server_config once per server of `var.servers` (no provider, no
# resource: it only computes), so `terraform apply` needs no credentials and no network.
_ROOT_MODULE: Final = """
variable "servers" {
  type = map(object({
    server_name            = string
    client_listen          = string
    monitor_listen         = string
    store_dir              = string
    domain                 = string
    hub                    = bool
    max_file_store_bytes   = number
    max_memory_store_bytes = number
    leaf_listen            = optional(string)
    cluster                = optional(object({ name = string, listen = string, routes = list(string) }))
    tls                    = optional(object({ cert_file = string, key_file = string, ca_file = string }))
  }))
}

module "server_config" {
  source   = "SOURCE"
  for_each = var.servers

  ARGUMENTS
}

output "configs" {
  value = { for name, server in module.server_config : name => server.config }
}
"""


def _terraform(binary: str, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TF_DATA_DIR": str(workdir / ".terraform"),
        "TF_IN_AUTOMATION": "1",
        "TF_CLI_CONFIG_FILE": os.devnull,  # no plugin cache, no credentials of the user's
        "CHECKPOINT_DISABLE": "1",  # no version check over the network
    }
    return subprocess.run(
        [binary, f"-chdir={workdir}", *args, "-no-color"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def terraform_configs(
    binary: str, settings: Mapping[str, Mapping[str, Any]], workdir: Path
) -> dict[str, str]:
    """What server_config outputs for each of `settings` (NatsServerSettings as a dict: the
    module's variables), applied by Terraform itself."""
    workdir.mkdir(parents=True, exist_ok=True)
    # A local module source is a relative path (./ or ../), used in place: path.module is the
    # repository's folder, so the module reads the package data as it does in production.
    source = os.path.relpath(SERVER_CONFIG_MODULE, workdir)
    arguments = "\n  ".join(
        f"{f.name} = each.value.{f.name}" for f in dataclasses.fields(NatsServerSettings)
    )
    root = _ROOT_MODULE.replace("SOURCE", source).replace("ARGUMENTS", arguments)
    (workdir / "main.tf").write_text(root)
    (workdir / "servers.tfvars.json").write_text(json.dumps({"servers": settings}, default=str))
    apply = ("apply", "-input=false", "-auto-approve", "-var-file=servers.tfvars.json")
    for args in (("init", "-input=false"), apply):
        done = _terraform(binary, workdir, *args)
        assert done.returncode == 0, done.stdout + done.stderr
    done = _terraform(binary, workdir, "output", "-json")
    assert done.returncode == 0, done.stderr
    configs: dict[str, str] = json.loads(done.stdout)["configs"]["value"]
    return configs
