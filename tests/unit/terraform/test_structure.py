"""terraform/ without a Terraform binary: every file parses (python-hcl2), every module has its
files, every variable is typed and described, every output described, providers are bounded
from below only, nothing secret or account-specific is written down, and both environments are
composed from the modules so that every region gets NATS, the services, Redis and a CDN origin."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import msgspec
import pytest
from terraform_support import (
    ENV_NAMES,
    ENVS,
    MODULE_NAMES,
    MODULES,
    TERRAFORM,
    directory_blocks,
    locals_of,
    parse,
    resources,
    tf_files,
    unquote,
    variable_default,
)

TF_FILES = tf_files()


def _id(path: Path) -> str:
    return str(path.relative_to(TERRAFORM))


@pytest.mark.parametrize("path", TF_FILES, ids=_id)
def test_every_file_parses(path: Path) -> None:
    assert isinstance(parse(path), dict)


def test_the_modules_and_environments_are_all_there() -> None:
    assert sorted(p.name for p in MODULES.iterdir() if p.is_dir()) == sorted(MODULE_NAMES)
    assert sorted(p.name for p in ENVS.iterdir() if p.is_dir()) == sorted(ENV_NAMES)
    for name in MODULE_NAMES:
        for file in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
            assert (MODULES / name / file).is_file(), f"modules/{name}/{file} is missing"
    for name in ENV_NAMES:
        for file in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (ENVS / name / file).is_file(), f"envs/{name}/{file} is missing"


DIRECTORIES = [MODULES / name for name in MODULE_NAMES] + [ENVS / name for name in ENV_NAMES]


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda d: d.name)
def test_every_variable_is_typed_and_described(directory: Path) -> None:
    variables = directory_blocks(directory, "variable")
    assert variables, f"{directory.name} declares no variables"
    for name, body in variables.items():
        assert "type" in body, f"{directory.name}: variable {name} has no type"
        description = unquote(body.get("description", ""))
        assert isinstance(description, str) and len(description) >= 20, (
            f"{directory.name}: variable {name} is not described"
        )


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda d: d.name)
def test_every_output_is_described(directory: Path) -> None:
    outputs = directory_blocks(directory, "output")
    assert outputs, f"{directory.name} declares no outputs"
    for name, body in outputs.items():
        description = unquote(body.get("description", ""))
        assert isinstance(description, str) and len(description) >= 10, (
            f"{directory.name}: output {name} is not described"
        )


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda d: d.name)
def test_providers_have_lower_bounds_only(directory: Path) -> None:
    (terraform,) = parse(directory / "versions.tf")["terraform"]
    # >= 1.11 everywhere: the S3 backend's use_lockfile (test_hygiene checks the examples too).
    assert unquote(terraform["required_version"]) == ">= 1.11"
    (providers,) = terraform["required_providers"]
    assert "aws" in providers or directory.name == "cockroach_cluster"
    for name, spec in providers.items():
        if name.startswith("__"):  # python-hcl2's __is_block__, __comments__
            continue
        version = str(unquote(spec["version"]))
        assert re.fullmatch(r">= ?\d+(\.\d+)*", version), f"{name}: {version} is not a lower bound"
    used = {kind.split("_", 1)[0] for kind, _ in resources(directory)}
    assert used <= set(providers) | {"terraform"}, f"{directory.name} uses undeclared providers"


# --- nothing secret or account-specific written down ---

_SCANNED = [
    p
    for p in TERRAFORM.rglob("*")
    if p.is_file() and p.suffix in {".tf", ".tftpl", ".example", ".md"}
]
_FORBIDDEN = {
    "an AWS account id": re.compile(r"(?<![\d.])\d{12}(?![\d.])"),
    "an account ARN": re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:"),
    "an AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a literal password": re.compile(r"(password|auth_token|secret_string)\s*=\s*\"[^\"$]+\""),
}


@pytest.mark.parametrize("path", _SCANNED, ids=_id)
def test_no_secrets_or_account_ids_are_hard_coded(path: Path) -> None:
    text = path.read_text()
    for what, pattern in _FORBIDDEN.items():
        match = pattern.search(text)
        assert match is None, f"{_id(path)} contains {what}: {match.group(0)!r}"


def test_secrets_come_from_generators_or_the_secret_store() -> None:
    """Every password-like argument is a generated value, a variable or a secret reference."""
    assignment = re.compile(r"^\s*(password|auth_token|secret_string)\s*=\s*(.+)$", re.M)
    for path in TF_FILES:
        for name, value in assignment.findall(path.read_text()):
            assert any(
                source in value
                for source in ("random_password.", "jsonencode(", "format(", "tls_", "data.", "${")
            ), f"{_id(path)}: {name} = {value}"


# --- the environments ---


def _env_modules(env: str) -> dict[str, dict[str, object]]:
    return directory_blocks(ENVS / env, "module")


@pytest.mark.parametrize("env", ENV_NAMES)
def test_environments_are_composed_only_from_the_modules(env: str) -> None:
    directory = ENVS / env
    for path in directory.glob("*.tf"):
        document = parse(path)
        assert "resource" not in document, f"envs/{env}/{path.name} declares resources"
        assert "data" not in document, f"envs/{env}/{path.name} reads data sources"
    modules = _env_modules(env)
    assert set(modules) >= {"database", "nats", "redis", "writer", "regional", "edge", "cdn"}
    for name, body in modules.items():
        source = str(unquote(body["source"]))
        assert source.startswith("../../modules/"), f"{env}: module {name} comes from {source}"
        assert (directory / source).resolve().parent == MODULES.resolve()


def test_staging_runs_exactly_what_production_runs() -> None:
    """One wiring: the environments differ in variables only."""
    for file in ("main.tf", "outputs.tf", "versions.tf"):
        assert (ENVS / "prod" / file).read_text() == (ENVS / "staging" / file).read_text(), file


def _regions(env: str) -> list[str]:
    default = variable_default(ENVS / env, "regions")
    assert isinstance(default, list)
    return [str(unquote(region)) for region in default]


def test_prod_has_three_regions_and_staging_one() -> None:
    prod, staging = _regions("prod"), _regions("staging")
    assert len(prod) == 3 and len(set(prod)) == 3
    assert len(staging) == 1
    # the writer's home region is the first one, in both
    assert prod[0] == staging[0]


def _covers_every_region(expression: object) -> bool:
    """Whether an argument iterates over every entry of var.regions."""
    text = str(expression)
    return "toset(var.regions)" in text or bool(re.search(r"for \w+ in var\.regions\s*:", text))


@pytest.mark.parametrize("env", ENV_NAMES)
def test_every_region_gets_nats_services_redis_and_a_cdn_origin(env: str) -> None:
    modules = _env_modules(env)
    locals_text = (ENVS / env / "main.tf").read_text()
    assert re.search(r"hub_region\s*=\s*var\.regions\[0\]", locals_text)
    assert _covers_every_region(modules["nats"]["regions"])
    assert modules["nats"]["hub_region"] == "${local.hub_region}"
    assert modules["nats"]["nodes_per_region"] == 3  # a three-node JetStream cluster per region
    assert _covers_every_region(modules["redis"]["regions"])
    assert modules["redis"]["primary_region"] == "${local.hub_region}"
    for tier in ("regional", "edge"):
        assert _covers_every_region(modules[tier]["for_each"]), tier
        assert unquote(modules[tier]["tier"]) == tier
    assert modules["writer"]["region"] == "${local.hub_region}"
    assert _covers_every_region(modules["cdn"]["origins"])
    assert "module.edge[r].load_balancer" in str(modules["cdn"]["origins"])
    assert modules["observability"]["regions"] == "${var.regions}"
    assert _covers_every_region(modules["database"]["regions"])


def _passed(env: str, module: str, arguments: tuple[str, ...]) -> set[str]:
    """The TESSERA_* names an env passes a service in these arguments, `local.*` values (the
    identity settings, TESSERA_PRODUCTION...) expanded."""
    body = _env_modules(env)[module]
    env_locals = locals_of(ENVS / env)
    text = " ".join(str(body.get(argument, "")) for argument in arguments)
    for name in re.findall(r"local\.(\w+)", text):
        text += " " + str(env_locals.get(name, ""))
    return set(re.findall(r"TESSERA_[A-Z0-9_]+", text))


_PLAIN = ("environment",)
_SECRET = ("secret_arns", "secret_names")


@pytest.mark.parametrize("env", ENV_NAMES)
def test_services_get_the_environment_their_settings_read(env: str) -> None:
    """The variables each tier reads (its settings module) are what the env passes it: plain
    settings in `environment`, secrets only through Secrets Manager."""

    def passed(module: str) -> set[str]:
        # the service module adds TESSERA_REGION
        return _passed(env, module, _PLAIN + _SECRET) | {"TESSERA_REGION"}

    identity = {"TESSERA_JWKS_URL", "TESSERA_JWT_ISSUER", "TESSERA_JWT_AUDIENCE"}
    assert {
        "TESSERA_DATABASE_URL",
        "TESSERA_REDIS_URL",
        "TESSERA_NATS_URL",
        "TESSERA_ADMIN_KEY",
        "TESSERA_EDGE_WRITER_CREDENTIAL",
        "TESSERA_PAYMENT_PROVIDER",
        "TESSERA_PRODUCTION",
        "TESSERA_STRIPE_API_KEY",
        "TESSERA_STRIPE_WEBHOOK_SECRET",
        "TESSERA_REGION",
        "TESSERA_JETSTREAM_REPLICAS",
        *identity,
    } <= passed("writer")
    assert {
        "TESSERA_NATS_URL",
        "TESSERA_WRITER_URL",
        "TESSERA_REGION",
        "TESSERA_SEATS_STREAM",
        "TESSERA_KV_STREAM",
        "TESSERA_PRODUCTION",
        *identity,
    } <= passed("regional")
    assert {
        "TESSERA_ORIGIN_URLS",
        "TESSERA_WRITER_URL",
        "TESSERA_REDIS_URL",
        "TESSERA_ADMIN_KEY",
        "TESSERA_ADMISSION_SECRET",
        "TESSERA_EDGE_WRITER_CREDENTIAL",
        "TESSERA_EDGE_ORIGIN_SECRETS",
        "TESSERA_EDGE_INTERNAL_PORT",
        "TESSERA_EDGE_INTERNAL_HOST",
        "TESSERA_EDGE_ORIGIN_HEADER",
        "TESSERA_PRODUCTION",
        "TESSERA_REGION",
        "TESSERA_TRUSTED_PROXIES",
        "TESSERA_RATE_LIMITS",
        *identity,
    } <= passed("edge")
    assert "TESSERA_NATS_URL" in passed("notifier")
    # the read nodes read as `reader`; only their init container manages streams, as `admin`
    modules = _env_modules(env)
    assert '["reader"]' in str(modules["regional"]["secret_arns"])
    assert '["admin"]' in str(modules["regional"]["init_secret_arns"])
    assert "jetstream" in str(modules["regional"]["init_command"])


@pytest.mark.parametrize("env", ENV_NAMES)
def test_each_secret_goes_only_where_it_is_used(env: str) -> None:
    """One secret per purpose (issue 14): no shared JWT HMAC secret at all (HS256 is for local
    development), the admission secret on the edges only, the payment provider's keys on the
    writer only, the origin secret on the edges only, and secrets never as plain variables."""
    text = (ENVS / env / "main.tf").read_text()
    assert "TESSERA_JWT_SECRET" not in text
    tiers = ("writer", "regional", "edge", "notifier")
    secret = {tier: _passed(env, tier, _SECRET) for tier in tiers}
    plain = {tier: _passed(env, tier, _PLAIN) for tier in tiers}
    holders = {
        "TESSERA_ADMISSION_SECRET": {"edge"},
        "TESSERA_ADMIN_KEY": {"writer", "edge"},
        "TESSERA_EDGE_WRITER_CREDENTIAL": {"writer", "edge"},
        "TESSERA_STRIPE_API_KEY": {"writer"},
        "TESSERA_STRIPE_WEBHOOK_SECRET": {"writer"},
        "TESSERA_EDGE_ORIGIN_SECRETS": {"edge"},
        "TESSERA_TICKET_SIGNING_KEYS": {"writer"},
        "TESSERA_DOOR_STAFF_KEYS": {"writer"},
    }
    for name, expected in holders.items():
        assert {tier for tier in tiers if name in secret[tier]} == expected, name
        assert not any(name in plain[tier] for tier in tiers), f"{name} passed as plain text"
    secretish = re.compile(r"(SECRET|PASSWORD|TOKEN|CREDENTIAL|_KEY$)")
    for tier in tiers:
        leaked = {name for name in plain[tier] if secretish.search(name)}
        assert not leaked, f"{tier}: {leaked} must come from Secrets Manager"
    # The same variable, two secrets: the edges' admin API has its own key (issue 14).
    modules = _env_modules(env)
    assert "TESSERA_ADMIN_KEY = var.app_secret_names.admin_key" in str(
        modules["writer"]["secret_names"]
    )
    edge_names = modules["edge"]["secret_names"]
    assert isinstance(edge_names, dict)
    assert edge_names["TESSERA_ADMIN_KEY"] == "${var.app_secret_names.edge_admin_key}"
    variables = (ENVS / env / "variables.tf").read_text()
    assert "edge_admin_key         = string" in variables
    assert f'edge_admin_key         = "tessera/{env}/edge-admin-key"' in variables
    assert "length(distinct(values(var.app_secret_names))) == 8" in variables


@pytest.mark.parametrize("env", ENV_NAMES)
def test_writers_reach_each_other_to_forward_writes(env: str) -> None:
    """Several writers: a write for an event another writer leases goes to that writer's
    advertised address, so the writer tasks must admit each other on their port."""
    assert _env_modules(env)["writer"].get("peer_ingress") is True
    main = (MODULES / "service" / "main.tf").read_text()
    rule = main.split('resource "aws_vpc_security_group_ingress_rule" "tasks_from_peers"')[1]
    rule = rule.split("\n}\n")[0]
    assert "referenced_security_group_id = aws_security_group.tasks.id" in rule
    assert "from_port                    = var.port" in rule


@pytest.mark.parametrize("env", ENV_NAMES)
@pytest.mark.parametrize(
    ("tier", "settings_module"),
    [("edge", "edge.settings"), ("writer", "global_writer.settings")],
)
def test_the_tiers_read_every_secret_they_are_given_and_get_all_they_require(
    env: str, tier: str, settings_module: str
) -> None:
    """A secret passed but not read is a purpose nobody enforces; a required setting not passed
    stops the task at start."""
    module = importlib.import_module(settings_module)
    read = set(module.ENV_FIELDS.values())
    secret = _passed(env, tier, _SECRET)
    assert secret - {"TESSERA_DB_CA"} <= read, secret - read
    passed = _passed(env, tier, _PLAIN + _SECRET)
    required = {
        module.ENV_FIELDS[field.name]
        for field in msgspec.structs.fields(module.Settings)
        if field.required and field.name in module.ENV_FIELDS
    }
    assert required <= passed, required - passed
    if tier == "edge":
        assert {
            "TESSERA_EDGE_ORIGIN_SECRETS",
            "TESSERA_EDGE_INTERNAL_PORT",
            "TESSERA_EDGE_INTERNAL_HOST",
            "TESSERA_EDGE_ORIGIN_HEADER",
            "TESSERA_EDGE_WRITER_CREDENTIAL",
            "TESSERA_ADMISSION_SECRET",
        } <= read & passed


@pytest.mark.parametrize("env", ENV_NAMES)
def test_the_public_edge_admits_only_our_cdn_and_hides_metrics_and_admin(env: str) -> None:
    """Issue 15 item 5: the edge load balancers accept CloudFront's addresses AND the origin
    secret header (403 otherwise), never route /metrics or /v1/admin/*, and serve those on an
    internal listener reachable from inside the VPC only."""
    edge = _env_modules(env)["edge"]
    balancer = edge["load_balancer"]
    assert isinstance(balancer, dict)
    assert balancer["internal"] is False
    assert "origin_facing_prefix_list_ids" in str(balancer["ingress_prefix_list_ids"])
    assert "ingress_cidrs" not in balancer  # no operator bypass on the public side
    assert balancer["origin_header_name"] == "${module.cdn.origin_header_name}"
    assert {"/metrics", "/v1/admin/*"} <= {str(unquote(p)) for p in balancer["blocked_paths"]}
    assert "module.cdn.origin_secret_values" in str(edge["origin_secret_values"])
    internal = str(edge["internal_listener"])
    assert "local.edge_internal_port" in internal and "vpc_cidr" in internal
    assert "TESSERA_EDGE_INTERNAL_PORT = tostring(local.edge_internal_port)" in str(
        edge["environment"]
    )
    cdn = (MODULES / "edge_cdn" / "main.tf").read_text()
    assert cdn.count("name  = var.origin_header_name") == 2  # both origins send the header
    assert unquote(variable_default(MODULES / "edge_cdn", "origin_header_name")) == (
        "X-Origin-Secret"
    )
    service = (MODULES / "service" / "main.tf").read_text()
    assert 'status_code  = "403"' in service
    assert "http_header_name = var.load_balancer.origin_header_name" in service
    assert "values           = var.origin_secret_values" in service


def test_every_service_checks_readyz_and_scales_on_cpu_and_requests() -> None:
    text = (MODULES / "service" / "main.tf").read_text()
    default = variable_default(MODULES / "service", "health_check_path")
    assert unquote(default) == "/readyz"
    assert "path                = var.health_check_path" in text
    assert "ECSServiceAverageCPUUtilization" in text
    assert "ALBRequestCountPerTarget" in text
    assert '"--host", "0.0.0.0", "--port"' in text


def test_every_alarm_links_its_runbook_entry() -> None:
    """Each alarm's description names a section of docs/operations.md that exists."""
    runbook = (TERRAFORM.parent / "docs" / "operations.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    text = "\n".join(p.read_text() for p in sorted((MODULES / "observability").glob("*.tf")))
    linked = set(re.findall(r"docs/operations\.md#([a-z0-9-]+)", text)) | set(
        re.findall(r"\$\{local\.runbook\}#([a-z0-9-]+)", text)
    )
    assert len(linked) >= 12
    alarms = re.findall(r'resource "aws_cloudwatch_metric_alarm" "(\w+)" \{(.*?)\n\}', text, re.S)
    for name, body in alarms:
        assert "local.runbook}#alarm-" in body, f"alarm {name} does not link its runbook entry"
    assert linked <= anchors, f"missing runbook sections: {linked - anchors}"
