"""Rotation of the CDN's origin secret: Secrets Manager calls `handler` once per step
(createSecret, setSecret, testSecret, finishSecret) with the version being rotated in.

The secret is JSON `{"previous": ..., "current": ..., "next": ...}`. CloudFront sends `current`
as the origin header; each edge (TESSERA_EDGE_ORIGIN_SECRETS, read at task start) and each edge
load balancer's listener rule accept all three values. A rotation shifts every value one place
(previous <- current <- next <- a fresh one), so while CloudFront's change propagates (minutes),
an edge started before the rotation (it knows the old current and next) and one started after it
(the new previous and current) both accept either value CloudFront may send. finishSecret then
redeploys the edges, so that every task knows the new values long before the next rotation.

Configuration (environment, set by terraform/modules/edge_cdn):
  HEADER_NAME      the header CloudFront adds, e.g. X-Origin-Secret
  DISTRIBUTION_ID  the CloudFront distribution
  ORIGIN_RULES     JSON list of {"region", "arn"}: the edge load balancers' origin rules
  EDGE_SERVICES    JSON list of {"region", "cluster", "service"}: the edge ECS services
  REPLICA_REGIONS  JSON list of the regions the secret is replicated to
"""

from __future__ import annotations

import json
import os
import secrets
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

KEYS = ("previous", "current", "next")
PENDING = "AWSPENDING"
CURRENT = "AWSCURRENT"
# A rotation runs inside the Lambda's 300 s: leave room for the redeploy calls after the wait.
REPLICATION_WAIT_S = 150
REPLICATION_POLL_S = 5


def handler(event: dict[str, Any], context: object) -> None:
    arn = event["SecretId"]
    token = event["ClientRequestToken"]
    step = event["Step"]
    client = boto3.client("secretsmanager")
    described = client.describe_secret(SecretId=arn)
    if not described.get("RotationEnabled"):
        raise ValueError(f"rotation is not enabled on {arn}")
    stages = described.get("VersionIdsToStages", {})
    if token not in stages:
        raise ValueError(f"version {token} is not a version of {arn}")
    if CURRENT in stages[token]:
        return  # a retried step of a rotation that already finished
    if PENDING not in stages[token]:
        raise ValueError(f"version {token} of {arn} is not pending rotation")
    steps = {
        "createSecret": create_secret,
        "setSecret": set_secret,
        "testSecret": test_secret,
        "finishSecret": finish_secret,
    }
    if step not in steps:
        raise ValueError(f"unknown rotation step {step}")
    steps[step](client, arn, token)


def create_secret(client: Any, arn: str, token: str) -> None:
    """The pending version: every value shifted one place, a fresh `next`. Idempotent."""
    try:
        client.get_secret_value(SecretId=arn, VersionId=token, VersionStage=PENDING)
        return
    except ClientError as error:
        if error.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    current = values_of(client, arn, stage=CURRENT)
    # 64 hex characters: no ALB wildcard (* ?) and unaffected by its case-insensitive match.
    pending = {
        "previous": current["current"],
        "current": current["next"],
        "next": secrets.token_hex(32),
    }
    client.put_secret_value(
        SecretId=arn,
        ClientRequestToken=token,
        SecretString=json.dumps(pending),
        VersionStages=[PENDING],
    )


def set_secret(client: Any, arn: str, token: str) -> None:
    """The load balancers first (they then accept both what CloudFront sends now and what it
    will send), CloudFront second."""
    pending = values_of(client, arn, stage=PENDING, version=token)
    accepted = [pending[key] for key in KEYS]
    for rule in json.loads(os.environ["ORIGIN_RULES"]):
        boto3.client("elbv2", region_name=rule["region"]).modify_rule(
            RuleArn=rule["arn"],
            Conditions=[
                {
                    "Field": "http-header",
                    "HttpHeaderConfig": {
                        "HttpHeaderName": os.environ["HEADER_NAME"],
                        "Values": accepted,
                    },
                }
            ],
        )
    cloudfront = boto3.client("cloudfront")
    distribution = os.environ["DISTRIBUTION_ID"]
    answer = cloudfront.get_distribution_config(Id=distribution)
    config = answer["DistributionConfig"]
    if with_header(config, pending["current"]):
        cloudfront.update_distribution(
            Id=distribution, IfMatch=answer["ETag"], DistributionConfig=config
        )


def test_secret(client: Any, arn: str, token: str) -> None:
    """Both sides say what set_secret wrote."""
    pending = values_of(client, arn, stage=PENDING, version=token)
    accepted = sorted(pending[key] for key in KEYS)
    header = os.environ["HEADER_NAME"].lower()
    for rule in json.loads(os.environ["ORIGIN_RULES"]):
        described = boto3.client("elbv2", region_name=rule["region"]).describe_rules(
            RuleArns=[rule["arn"]]
        )
        found = [
            sorted(condition["HttpHeaderConfig"]["Values"])
            for condition in described["Rules"][0]["Conditions"]
            if condition.get("Field") == "http-header"
            and condition["HttpHeaderConfig"]["HttpHeaderName"].lower() == header
        ]
        if found != [accepted]:
            raise RuntimeError(f"listener rule {rule['arn']} does not accept the pending values")
    config = boto3.client("cloudfront").get_distribution_config(Id=os.environ["DISTRIBUTION_ID"])[
        "DistributionConfig"
    ]
    if with_header(config, pending["current"]):
        raise RuntimeError("CloudFront does not send the pending value on every origin")


def finish_secret(client: Any, arn: str, token: str) -> None:
    """Make the version current, wait until every replica serves it, redeploy the edges."""
    described = client.describe_secret(SecretId=arn)
    previous_version = next(
        version for version, stages in described["VersionIdsToStages"].items() if CURRENT in stages
    )
    client.update_secret_version_stage(
        SecretId=arn,
        VersionStage=CURRENT,
        MoveToVersionId=token,
        RemoveFromVersionId=previous_version,
    )
    # An edge restarted before its region's replica changed would start with the old values.
    deadline = time.monotonic() + REPLICATION_WAIT_S
    waiting = set(json.loads(os.environ["REPLICA_REGIONS"]))
    while waiting:
        for region in sorted(waiting):
            answer = boto3.client("secretsmanager", region_name=region).get_secret_value(
                SecretId=described["Name"], VersionStage=CURRENT
            )
            if answer["VersionId"] == token:
                waiting.discard(region)
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(
                f"replicas in {sorted(waiting)} did not receive the new version: redeploy their "
                "edges once they have (docs/operations.md#alarm-origin-secret-rotation)"
            )
        if waiting:
            time.sleep(REPLICATION_POLL_S)
    for service in json.loads(os.environ["EDGE_SERVICES"]):
        boto3.client("ecs", region_name=service["region"]).update_service(
            cluster=service["cluster"], service=service["service"], forceNewDeployment=True
        )


def values_of(client: Any, arn: str, *, stage: str, version: str | None = None) -> dict[str, str]:
    arguments = {"SecretId": arn, "VersionStage": stage}
    if version is not None:
        arguments["VersionId"] = version
    values = json.loads(client.get_secret_value(**arguments)["SecretString"])
    if not isinstance(values, dict) or sorted(values) != sorted(KEYS):
        raise ValueError(f"{arn} ({stage}) is not a JSON object of {', '.join(KEYS)}")
    return {key: str(values[key]) for key in KEYS}


def with_header(config: dict[str, Any], value: str) -> bool:
    """Set the origin header to `value` on every origin of a distribution config, in place;
    whether anything changed."""
    name = os.environ["HEADER_NAME"]
    changed = False
    for origin in config["Origins"]["Items"]:
        items = origin.get("CustomHeaders", {}).get("Items", [])
        others = [item for item in items if item["HeaderName"].lower() != name.lower()]
        ours = [item for item in items if item["HeaderName"].lower() == name.lower()]
        if ours != [{"HeaderName": name, "HeaderValue": value}]:
            changed = True
            items = [*others, {"HeaderName": name, "HeaderValue": value}]
            origin["CustomHeaders"] = {"Quantity": len(items), "Items": items}
    return changed
