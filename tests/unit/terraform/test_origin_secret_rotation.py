"""The CDN origin secret's rotation Lambda (terraform/modules/edge_cdn/rotation/origin_secret.py)
run through Secrets Manager's four steps against in-memory fakes of the AWS clients it calls
(boto3 is not a dependency of the project: the fakes stand in for it).

What must hold: the values shift one place (previous <- current <- next <- fresh); the edge load
balancers accept the new set before CloudFront sends the new value; whatever CloudFront may send
while its change propagates is accepted by edges started before AND after the rotation; every
replica serves the new version before the edges are redeployed; a retried step changes nothing.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import types
from pathlib import Path
from typing import Any, Final

import pytest
from terraform_support import MODULES, parse

SOURCE: Final = MODULES / "edge_cdn" / "rotation" / "origin_secret.py"
ARN: Final = (
    "arn:aws:secretsmanager:us-east-1:000000000000:secret:tessera-test/cdn/origin-secret-AbCdEf"
)
HEADER: Final = "X-Origin-Secret"
REGIONS: Final = ("us-east-1", "eu-west-1")
SEED: Final = {"previous": "a" * 64, "current": "b" * 64, "next": "c" * 64}


class ClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class Secrets:
    """One secret's versions; replicas in other regions see the same versions once `synced`."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {"v0": json.dumps(SEED)}
        self.stages: dict[str, set[str]] = {"v0": {"AWSCURRENT"}}
        self.synced = True

    def begin_rotation(self, token: str) -> None:
        """What RotateSecret does before calling the Lambda: a pending version, no value yet."""
        self.stages[token] = {"AWSPENDING"}

    def version_with(self, stage: str) -> str:
        return next(v for v, stages in self.stages.items() if stage in stages)


class SecretsClient:
    def __init__(self, store: Secrets, *, replica: bool) -> None:
        self.store = store
        self.replica = replica

    # boto3's keyword arguments are CamelCase: the fakes take them as **call.
    def describe_secret(self, **call: Any) -> dict[str, Any]:
        return {
            "Name": "tessera-test/cdn/origin-secret",
            "RotationEnabled": True,
            "VersionIdsToStages": {v: sorted(s) for v, s in self.store.stages.items() if s},
        }

    def get_secret_value(self, **call: Any) -> dict[str, Any]:
        if self.replica and not self.store.synced:  # still the version before the rotation
            return {"VersionId": "v0", "SecretString": self.store.values["v0"]}
        stage = call.get("VersionStage", "AWSCURRENT")
        version = call.get("VersionId") or self.store.version_with(stage)
        if version not in self.store.values or stage not in self.store.stages[version]:
            raise ClientError("ResourceNotFoundException")
        return {"VersionId": version, "SecretString": self.store.values[version]}

    def put_secret_value(self, **call: Any) -> None:
        self.store.values[call["ClientRequestToken"]] = call["SecretString"]
        self.store.stages[call["ClientRequestToken"]] = set(call["VersionStages"])

    def update_secret_version_stage(self, **call: Any) -> None:
        self.store.stages[call["RemoveFromVersionId"]].discard(call["VersionStage"])
        self.store.stages[call["MoveToVersionId"]] = {call["VersionStage"]}


class LoadBalancers:
    def __init__(self) -> None:
        self.rules: dict[str, list[dict[str, Any]]] = {
            f"rule/{r}": [
                {
                    "Field": "http-header",
                    "HttpHeaderConfig": {"HttpHeaderName": HEADER, "Values": sorted(SEED.values())},
                }
            ]
            for r in REGIONS
        }

    def accepted(self, region: str) -> set[str]:
        return set(self.rules[f"rule/{region}"][0]["HttpHeaderConfig"]["Values"])

    def modify_rule(self, **call: Any) -> None:
        self.rules[call["RuleArn"]] = call["Conditions"]

    def describe_rules(self, **call: Any) -> dict[str, Any]:
        return {"Rules": [{"Conditions": self.rules[arn]} for arn in call["RuleArns"]]}


class CloudFront:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.etag = "E1"
        self.config: dict[str, Any] = {
            "Origins": {
                "Quantity": 2,
                "Items": [
                    {
                        "Id": name,
                        "CustomHeaders": {
                            "Quantity": 1,
                            "Items": [{"HeaderName": HEADER, "HeaderValue": SEED["current"]}],
                        },
                    }
                    for name in ("nearest", "shielded")
                ],
            }
        }

    def sent(self) -> set[str]:
        return {
            item["HeaderValue"]
            for origin in self.config["Origins"]["Items"]
            for item in origin["CustomHeaders"]["Items"]
            if item["HeaderName"] == HEADER
        }

    def get_distribution_config(self, **call: Any) -> dict[str, Any]:
        return {"ETag": self.etag, "DistributionConfig": json.loads(json.dumps(self.config))}

    def update_distribution(self, **call: Any) -> None:
        assert call["IfMatch"] == self.etag, "stale ETag"
        self.config = call["DistributionConfig"]
        self.etag = f"E{int(self.etag[1:]) + 1}"
        self.log.append("cloudfront")


class Ecs:
    def __init__(self, log: list[str], region: str) -> None:
        self.log = log
        self.region = region

    def update_service(self, **call: Any) -> None:
        assert call["forceNewDeployment"] is True
        self.log.append(f"redeploy {self.region} {call['cluster']}/{call['service']}")


class Aws:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.secrets = Secrets()
        self.balancers = {r: LoadBalancers() for r in REGIONS}
        self.cloudfront = CloudFront(self.log)

    def client(self, service: str, region_name: str | None = None) -> Any:
        region = region_name or "us-east-1"
        if service == "secretsmanager":
            return SecretsClient(self.secrets, replica=region != "us-east-1")
        if service == "elbv2":
            balancers = self.balancers[region]
            log = self.log

            class Logged:
                def modify_rule(self, **arguments: Any) -> None:
                    log.append(f"rule {region}")
                    balancers.modify_rule(**arguments)

                def describe_rules(self, **arguments: Any) -> dict[str, Any]:
                    return balancers.describe_rules(**arguments)

            return Logged()
        if service == "cloudfront":
            return self.cloudfront
        if service == "ecs":
            return Ecs(self.log, region)
        raise AssertionError(f"unexpected client {service}")


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Aws:
    fake = Aws()
    boto3 = types.ModuleType("boto3")
    boto3.client = fake.client  # type: ignore[attr-defined]
    botocore = types.ModuleType("botocore")
    exceptions = types.ModuleType("botocore.exceptions")
    exceptions.ClientError = ClientError  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "boto3", boto3)
    monkeypatch.setitem(sys.modules, "botocore", botocore)
    monkeypatch.setitem(sys.modules, "botocore.exceptions", exceptions)
    monkeypatch.setenv("HEADER_NAME", HEADER)
    monkeypatch.setenv("DISTRIBUTION_ID", "E2EXAMPLE")
    monkeypatch.setenv(
        "ORIGIN_RULES", json.dumps([{"region": r, "arn": f"rule/{r}"} for r in REGIONS])
    )
    monkeypatch.setenv(
        "EDGE_SERVICES",
        json.dumps(
            [{"region": r, "cluster": f"edge-{r}", "service": f"edge-{r}"} for r in REGIONS]
        ),
    )
    monkeypatch.setenv("REPLICA_REGIONS", json.dumps(["eu-west-1"]))
    return fake


def _lambda() -> Any:
    spec = importlib.util.spec_from_file_location("origin_secret_under_test", SOURCE)
    assert spec and spec.loader
    module: Any = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.REPLICATION_POLL_S = 0
    return module


def _rotate(function: Any, aws: Aws, token: str) -> None:
    aws.secrets.begin_rotation(token)
    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        function.handler({"SecretId": ARN, "ClientRequestToken": token, "Step": step}, None)


def _current(aws: Aws) -> dict[str, str]:
    values: dict[str, str] = json.loads(aws.secrets.values[aws.secrets.version_with("AWSCURRENT")])
    return values


def test_a_rotation_shifts_the_values_and_updates_both_sides_in_order(aws: Aws) -> None:
    _rotate(_lambda(), aws, "t1")
    after = _current(aws)
    assert after["previous"] == SEED["current"] and after["current"] == SEED["next"]
    assert re.fullmatch(r"[0-9a-f]{64}", after["next"]) and after["next"] not in SEED.values()
    assert aws.cloudfront.sent() == {after["current"]}
    for region in REGIONS:
        assert aws.balancers[region].accepted(region) == set(after.values())
    # the load balancers first, CloudFront second, the redeploys last
    assert aws.log[:2] == ["rule us-east-1", "rule eu-west-1"]
    assert aws.log[2] == "cloudfront"
    assert sorted(aws.log[3:]) == [f"redeploy {r} edge-{r}/edge-{r}" for r in sorted(REGIONS)]


def test_what_cloudfront_sends_during_the_switch_is_accepted_by_old_and_new_edges(aws: Aws) -> None:
    before = _current(aws)
    _rotate(_lambda(), aws, "t1")
    after = _current(aws)
    # while the distribution propagates, a location sends the old or the new current value
    for sent in (before["current"], after["current"]):
        assert sent in set(before.values()), "an edge started before the rotation refuses it"
        assert sent in set(after.values()), "an edge started after the rotation refuses it"


def test_two_rotations_keep_the_chain(aws: Aws) -> None:
    function = _lambda()
    _rotate(function, aws, "t1")
    first = _current(aws)
    _rotate(function, aws, "t2")
    second = _current(aws)
    assert second["previous"] == first["current"] and second["current"] == first["next"]
    assert aws.cloudfront.sent() == {second["current"]}


def test_a_retried_step_changes_nothing(aws: Aws) -> None:
    function = _lambda()
    aws.secrets.begin_rotation("t1")
    event = {"SecretId": ARN, "ClientRequestToken": "t1"}
    function.handler({**event, "Step": "createSecret"}, None)
    pending = aws.secrets.values["t1"]
    function.handler({**event, "Step": "createSecret"}, None)
    assert aws.secrets.values["t1"] == pending
    for step in ("setSecret", "testSecret", "finishSecret"):
        function.handler({**event, "Step": step}, None)
    log = list(aws.log)
    function.handler({**event, "Step": "setSecret"}, None)  # already current: a no-op
    assert aws.log == log


def test_the_edges_are_not_redeployed_before_every_replica_has_the_new_values(aws: Aws) -> None:
    function = _lambda()
    function.REPLICATION_WAIT_S = 0
    aws.secrets.synced = False
    with pytest.raises(RuntimeError, match="did not receive the new version"):
        _rotate(function, aws, "t1")
    assert not any(entry.startswith("redeploy") for entry in aws.log)


def test_a_secret_of_the_wrong_shape_is_refused(aws: Aws) -> None:
    aws.secrets.values["v0"] = json.dumps({"current": "x" * 64})
    with pytest.raises(ValueError, match="previous, current, next"):
        _rotate(_lambda(), aws, "t1")


def test_terraform_gives_the_lambda_the_settings_it_reads() -> None:
    (function,) = [
        body
        for entry in parse(MODULES / "edge_cdn" / "origin_secret.tf")["resource"]
        for kind, named in entry.items()
        if kind == '"aws_lambda_function"'
        for body in named.values()
    ]
    (environment,) = function["environment"]
    given = {k for k in environment["variables"] if not k.startswith("__")}
    read = set(re.findall(r'os\.environ\["([A-Z_]+)"\]', SOURCE.read_text()))
    assert given == read
    assert function["handler"] == '"origin_secret.handler"'
    assert Path(SOURCE).name == "origin_secret.py"
