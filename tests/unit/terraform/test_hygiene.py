"""Terraform hygiene (issue 15, item 11), without a Terraform binary: every variable typed and
described, anything named like a secret marked sensitive, one Terraform floor (>= 1.11, for the
S3 backend's use_lockfile) everywhere, a dependency lock file per environment that agrees with
the configuration, an example per module that passes the module what it requires, and
validation on the variables an SRE can get wrong."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import hcl2
import pytest
from terraform_support import (
    ENV_NAMES,
    ENVS,
    MODULE_NAMES,
    MODULES,
    TERRAFORM,
    Block,
    directory_blocks,
    example_dir,
    labelled,
    lock_file,
    parse,
    unquote,
)

EXAMPLES: Final = [example_dir(name) for name in MODULE_NAMES]
CONFIGURATIONS: Final = (
    [MODULES / name for name in MODULE_NAMES] + [ENVS / name for name in ENV_NAMES] + EXAMPLES
)


def _id(directory: Path) -> str:
    return str(directory.relative_to(TERRAFORM))


@pytest.mark.parametrize("directory", CONFIGURATIONS, ids=_id)
def test_every_variable_has_a_type_and_a_description(directory: Path) -> None:
    for name, body in directory_blocks(directory, "variable").items():
        assert "type" in body, f"{_id(directory)}: variable {name} has no type"
        description = unquote(body.get("description", ""))
        assert isinstance(description, str) and len(description) >= 20, (
            f"{_id(directory)}: variable {name} is not described"
        )


# --- secrets are sensitive ---

SECRET_WORDS: Final = frozenset(
    {"secret", "secrets", "password", "passwords", "key", "keys", "token", "tokens"}
    | {"credential", "credentials"}
)
# A name ending like this names or locates a secret (an ARN, a Secrets Manager name, the region
# it lives in), which is not itself secret and must stay usable in for_each.
REFERENCE_SUFFIXES: Final = (
    "_arn",
    "_arns",
    "_name",
    "_names",
    "_name_prefix",
    "_region",
    "_id",
    "_ids",
    "_path",
    "_schedule",
    "_window",
    "_function",
)


def suggests_a_secret(name: str) -> bool:
    words = set(name.lower().split("_"))
    return bool(words & SECRET_WORDS) and not name.lower().endswith(REFERENCE_SUFFIXES)


def test_the_secret_name_rule() -> None:
    for name in ("auth_token", "origin_secret_values", "admin_key", "stripe_api_key", "secrets"):
        assert suggests_a_secret(name), name
    for name in ("url_secret_arns", "secret_names", "secret_region", "app_secret_names"):
        assert not suggests_a_secret(name), name
    for name in ("monkey", "keyspace", "hub_region", "origin_header_name"):
        assert not suggests_a_secret(name), name


@pytest.mark.parametrize("directory", CONFIGURATIONS, ids=_id)
def test_variables_and_outputs_named_like_secrets_are_sensitive(directory: Path) -> None:
    for kind in ("variable", "output"):
        for name, body in directory_blocks(directory, kind).items():
            if suggests_a_secret(name):
                assert body.get("sensitive") is True, (
                    f"{_id(directory)}: {kind} {name} looks secret but is not sensitive = true"
                )


def test_the_origin_secret_values_are_sensitive_wherever_they_pass() -> None:
    assert directory_blocks(MODULES / "edge_cdn", "output")["origin_secret_values"]["sensitive"]
    assert directory_blocks(MODULES / "service", "variable")["origin_secret_values"]["sensitive"]


# --- one Terraform floor, and the lock files ---


def _terraform_block(directory: Path) -> Block:
    blocks = [
        entry
        for path in sorted(directory.glob("*.tf"))
        for entry in parse(path).get("terraform", [])
    ]
    assert len(blocks) == 1, f"{_id(directory)}: expected one terraform block"
    block: Block = blocks[0]
    return block


@pytest.mark.parametrize("directory", CONFIGURATIONS, ids=_id)
def test_required_version_is_1_11_everywhere(directory: Path) -> None:
    """use_lockfile (the S3 backend's own lock, no DynamoDB table) is generally available from
    Terraform 1.11; a module that allowed less would be planned by a Terraform that ignores it."""
    assert unquote(_terraform_block(directory)["required_version"]) == ">= 1.11"


@pytest.mark.parametrize("env", ENV_NAMES)
def test_the_backend_locks_with_use_lockfile(env: str) -> None:
    example = (ENVS / env / "backend.hcl.example").read_text()
    assert re.search(r"^use_lockfile\s*=\s*true$", example, re.M)
    assert re.search(r"^encrypt\s*=\s*true$", example, re.M)
    assert "backend" in _terraform_block(ENVS / env)


def _required_providers(directory: Path) -> dict[str, str]:
    """source address (registry.terraform.io/ns/name) -> version constraint."""
    (providers,) = _terraform_block(directory)["required_providers"]
    found = {}
    for name, spec in providers.items():
        if name.startswith("__"):
            continue
        source = str(unquote(spec["source"]))
        found[f"registry.terraform.io/{source}"] = str(unquote(spec["version"]))
    return found


_VERSION: Final = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_LOWER_BOUND: Final = re.compile(r"^>= ?(\d+)(?:\.(\d+))?(?:\.(\d+))?$")


def _lower_bound(constraint: str) -> tuple[int, int, int]:
    match = _LOWER_BOUND.match(constraint)
    assert match, f"{constraint} is not a lower bound"
    major, minor, patch = (int(part or 0) for part in match.groups())
    return major, minor, patch


def _locked(env: str) -> dict[str, Block]:
    return labelled(lock_file(env), "provider")


@pytest.mark.parametrize("env", ENV_NAMES)
def test_each_environment_commits_a_lock_file_that_matches_its_configuration(env: str) -> None:
    """Terraform's own format (`terraform init` reads it as written): one block per provider the
    environment and its modules require, the exact version chosen, the constraints in
    Terraform's canonical form (every module's lower bound, normalised to x.y.z, deduplicated)."""
    path = lock_file(env)
    assert path.is_file(), f"envs/{env} has no .terraform.lock.hcl"
    with path.open() as handle:
        hcl2.load(handle)  # parses
    constraints: dict[str, set[tuple[int, int, int]]] = {}
    for directory in [ENVS / env] + [MODULES / name for name in MODULE_NAMES]:
        for address, constraint in _required_providers(directory).items():
            constraints.setdefault(address, set()).add(_lower_bound(constraint))
    locked = _locked(env)
    assert sorted(locked) == sorted(constraints)
    assert list(locked) == sorted(locked), "Terraform writes the providers sorted by address"
    for address, block in locked.items():
        version = str(unquote(block["version"]))
        match = _VERSION.match(version)
        assert match, f"{address}: {version} is not an exact version"
        chosen = tuple(int(part) for part in match.groups())
        assert all(chosen >= bound for bound in constraints[address]), address
        canonical = ", ".join(
            ">= {}.{}.{}".format(*bound) for bound in sorted(constraints[address])
        )
        assert unquote(block["constraints"]) == canonical, address
        for value in block.get("hashes", []):
            assert re.fullmatch(r"(h1:[A-Za-z0-9+/]{43}=|zh:[0-9a-f]{64})", str(unquote(value)))


def test_production_and_staging_lock_the_same_providers() -> None:
    assert lock_file("prod").read_text() == lock_file("staging").read_text()


def test_the_readme_says_how_the_lock_files_were_made() -> None:
    """Lock files written without checksums (no registry access where they were made) say so
    in the README, with the command that adds them; invented checksums would be worse."""
    readme = (TERRAFORM / "README.md").read_text()
    assert ".terraform.lock.hcl" in readme
    assert "providers lock" in readme
    if not any("hashes" in block for env in ENV_NAMES for block in _locked(env).values()):
        assert "no `h1:`/`zh:` checksums" in readme


# --- an example per module ---

_META_ARGUMENTS: Final = frozenset({"source", "version", "providers", "count", "for_each"})
_META_ARGUMENTS_TOO: Final = frozenset({"depends_on"})


@pytest.mark.parametrize("module", MODULE_NAMES)
def test_each_module_has_an_example_that_passes_what_it_requires(module: str) -> None:
    directory = example_dir(module)
    assert (directory / "main.tf").is_file(), f"modules/{module} has no examples/basic/main.tf"
    calls = directory_blocks(directory, "module")
    assert len(calls) == 1, f"modules/{module}/examples/basic: one module call"
    (call,) = calls.values()
    assert unquote(call["source"]) == "../.."
    variables = directory_blocks(MODULES / module, "variable")
    required = {name for name, body in variables.items() if "default" not in body}
    passed = {k for k in call if not k.startswith("__")} - _META_ARGUMENTS - _META_ARGUMENTS_TOO
    assert required <= passed, f"modules/{module} example misses {required - passed}"
    assert passed <= set(variables), f"modules/{module} has no variables {passed - set(variables)}"
    used = {kind.split("_", 1)[0] for kind, _ in _resources_and_data(MODULES / module)}
    (providers,) = _terraform_block(directory)["required_providers"]
    assert used - {"terraform"} <= set(providers), f"{module} example: declare {used}"


def _resources_and_data(directory: Path) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.tf")):
        for kind in ("resource", "data"):
            for entry in parse(path).get(kind, []):
                for name, named in entry.items():
                    if not name.startswith("__"):
                        found.extend((str(unquote(name)), str(unquote(n))) for n in named)
    return found


# --- validation where an SRE can get it wrong ---

VALIDATED: Final = {
    "envs": (
        "environment",
        "regions",
        "networks",
        "dns_zone",
        "public_hostname",
        "image",
        "app_secret_names",
        "identity",
        "payment_provider",
        "operator_cidrs",
        "capacity",
        "onsales",
        "edge_rate_limits",
        "redis",
        "database",
        "notifier",
        "alarm_emails",
        "origin_secret_rotation_schedule",
    ),
    "service": (
        "name",
        "tier",
        "region",
        "image",
        "port",
        "cpu",
        "memory",
        "scaling",
        "scheduled_minimums",
        "environment",
        "vpc_id",
        "subnet_ids",
        "load_balancer",
        "origin_secret_values",
        "internal_listener",
    ),
    "redis": ("name_prefix", "primary_region", "regions", "node_type", "replicas_per_shard"),
    "edge_cdn": ("name", "hostname", "origins", "origin_header_name", "rate_limit_per_ip"),
    "nats_regions": ("name_prefix", "hub_region", "regions", "nodes_per_region", "volume_iops"),
    "cockroach_cluster": ("cluster_name", "regions", "allowed_cidrs", "num_virtual_cpus"),
    "observability": ("name_prefix", "hub_region", "regions", "thresholds"),
}


def _validated_directories() -> list[tuple[Path, str]]:
    pairs = []
    for where, names in VALIDATED.items():
        directories = [ENVS / e for e in ENV_NAMES] if where == "envs" else [MODULES / where]
        pairs += [(directory, name) for directory in directories for name in names]
    return pairs


@pytest.mark.parametrize(
    ("directory", "name"), _validated_directories(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_variables_an_sre_can_get_wrong_are_validated(directory: Path, name: str) -> None:
    body = directory_blocks(directory, "variable")[name]
    validations = body.get("validation", [])
    assert validations, f"{_id(directory)}: variable {name} has no validation"
    for validation in validations:
        assert "condition" in validation and "error_message" in validation


def _image_rule(directory: Path) -> re.Pattern[str]:
    (validation,) = directory_blocks(directory, "variable")["image"]["validation"]
    match = re.search(r'regex\("(.+?)", var\.image\)', str(validation["condition"]))
    assert match
    return re.compile(match.group(1).replace("\\\\", "\\"))


DIGEST: Final = "603c1614873d47ea1b6cc283c5d92d387fac752c1007a5ee41f7e8b98b6df753"


@pytest.mark.parametrize("directory", [ENVS / "prod", ENVS / "staging", MODULES / "service"])
def test_the_image_must_be_pinned_by_digest(directory: Path) -> None:
    rule = _image_rule(directory)
    for good in (
        f"123456789012.dkr.ecr.us-east-1.amazonaws.com/tessera@sha256:{DIGEST}",
        f"registry.example.com/team/tessera-api@sha256:{DIGEST}",
    ):
        assert rule.fullmatch(good), good
    for bad in (
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tessera:latest",
        f"registry.example.com/tessera@sha256:{DIGEST[:-1]}",
        f"registry.example.com/tessera@sha256:{DIGEST.upper()}",
        f"registry.example.com/tessera:1.2@sha256:{DIGEST}",
    ):
        assert not rule.fullmatch(bad), bad


def test_onsales_become_scheduled_floors_in_utc() -> None:
    """Issue 15 item 10: each announced onsale raises the edges' and read nodes' floors before it
    and restores them after, as Application Auto Scaling scheduled actions."""
    service = (MODULES / "service" / "main.tf").read_text()
    for action in ("raise", "restore"):
        assert f'resource "aws_appautoscaling_scheduled_action" "{action}"' in service
    assert service.count('timezone           = "Etc/UTC"') == 2
    assert "plantimestamp()" in service  # an apply inside a window keeps the raised floor
    for env in ENV_NAMES:
        main = (ENVS / env / "main.tf").read_text()
        assert 'timeadd(o.starts_at, "-${o.scale_up_minutes_before}m")' in main
        modules = directory_blocks(ENVS / env, "module")
        assert "w.regional" in str(modules["regional"]["scheduled_minimums"])
        assert "w.edge" in str(modules["edge"]["scheduled_minimums"])
        onsale = str(directory_blocks(ENVS / env, "variable")["onsales"]["type"])
        for field in (
            "name",
            "starts_at",
            "scale_up_minutes_before",
            "edge_min_tasks",
            "regional_min_tasks",
            "duration_minutes",
        ):
            assert field in onsale, field
