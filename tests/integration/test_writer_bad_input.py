"""Every kind of bad input gets the right 4xx with a machine-readable body, never a 500, and
changes nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from writer_support import WRITER_ADMIN_KEY, WRITER_JWT_SECRET, event_body, settings, writer_env

from tessera.auth import mint_token
from tessera_ops.audit import audit
from tessera_ops.processes import start_writer
from tessera_ops.servers import create_database

pytestmark = pytest.mark.anyio

MISSING = object()


def case(
    name: str,
    status: int,
    code: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    path: str = "/v1/events/{event}/holds",
    method: str = "POST",
    auth: Any = "good",
    key: Any = "k",
) -> Any:
    return pytest.param(
        {
            "status": status,
            "code": code,
            "body": body,
            "raw": raw,
            "headers": headers or {},
            "path": path,
            "method": method,
            "auth": auth,
            "key": key,
        },
        id=name,
    )


def forged_token() -> str:
    return jwt.encode({"sub": "mallory", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256")


def expired_token(secret: str) -> str:
    now = int(time.time())
    claims = {
        "sub": "ann",
        "iat": now - 7200,
        "exp": now - 3600,
        "aud": "tessera",
        "iss": "tessera",
    }
    return jwt.encode(claims, secret, algorithm="HS256")


CASES = [
    case("malformed json", 400, "malformed_json", raw=b'{"seats": ["ORCH:A:1"'),
    case("not json at all", 400, "malformed_json", raw=b"\xff\xfe garbage"),
    case("unknown field", 422, "invalid_request", body={"seats": ["ORCH:A:101"], "vip": True}),
    case("wrong type", 422, "invalid_request", body={"seats": "ORCH:A:101"}),
    case("wrong nested type", 422, "invalid_request", body={"best_available": {"quantity": "2"}}),
    case(
        "both modes",
        422,
        "invalid_request",
        body={"seats": ["ORCH:A:101"], "best_available": {"quantity": 1}},
    ),
    case("neither mode", 422, "invalid_request", body={}),
    case("zero quantity", 422, "invalid_request", body={"best_available": {"quantity": 0}}),
    case("huge quantity", 422, "invalid_request", body={"best_available": {"quantity": 10_000}}),
    case(
        "10,000 seats in one hold (160 KB body)",
        413,
        "payload_too_large",
        body={"seats": [f"ORCH:A:{n}" for n in range(10_000)]},
    ),
    case(
        "11 seats in one hold",
        422,
        "invalid_request",
        body={"seats": [f"ORCH:A:{101 + n}" for n in range(11)]},
    ),
    case("unknown seat", 422, "invalid_seat", body={"seats": ["ORCH:ZZ:1"]}),
    case("seat id without parts", 422, "invalid_seat", body={"seats": ["ORCH-A-1"]}),
    case(
        "unknown section in best",
        422,
        "invalid_request",
        body={"best_available": {"quantity": 1, "sections": ["NOPE"]}},
    ),
    case("duplicate seat", 422, "invalid_request", body={"seats": ["ORCH:A:101", "ORCH:A:101"]}),
    case("huge body", 413, "payload_too_large", raw=b'{"seats": ["' + b"x" * 100_000 + b'"]}'),
    case(
        "wrong media type",
        415,
        "unsupported_media_type",
        raw=b"seats=1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    ),
    case(
        "unknown event",
        404,
        "not_found",
        body={"best_available": {"quantity": 1}},
        path="/v1/events/00000000-0000-4000-8000-000000000000/holds",
    ),
    case(
        "invalid event id",
        404,
        "not_found",
        body={"best_available": {"quantity": 1}},
        path="/v1/events/not-a-uuid/holds",
    ),
    case("no token", 401, "unauthorized", body={"best_available": {"quantity": 1}}, auth=None),
    case(
        "forged token", 401, "unauthorized", body={"best_available": {"quantity": 1}}, auth="forged"
    ),
    case(
        "expired token",
        401,
        "unauthorized",
        body={"best_available": {"quantity": 1}},
        auth="expired",
    ),
    case(
        "garbage token",
        401,
        "unauthorized",
        body={"best_available": {"quantity": 1}},
        auth="Bearer a.b.c",
    ),
    case(
        "basic auth",
        401,
        "unauthorized",
        body={"best_available": {"quantity": 1}},
        auth="Basic YTpi",
    ),
    case(
        "missing idempotency key",
        400,
        "idempotency_key_required",
        body={"best_available": {"quantity": 1}},
        key=None,
    ),
    case(
        "bad idempotency key",
        422,
        "invalid_request",
        body={"best_available": {"quantity": 1}},
        key="spaces are not ok",
    ),
    case(
        "over-long idempotency key",
        422,
        "invalid_request",
        body={"best_available": {"quantity": 1}},
        key="k" * 500,
    ),
    case(
        "unknown hold",
        404,
        "not_found",
        path="/v1/holds/00000000-0000-4000-8000-000000000000",
        method="GET",
        key=None,
    ),
    case("invalid hold id", 404, "not_found", path="/v1/holds/%00bad", method="GET", key=None),
    case(
        "order for unknown hold",
        404,
        "not_found",
        body={"hold_id": "00000000-0000-4000-8000-000000000000", "payment_token": "tok_approve"},
        path="/v1/events/{event}/orders",
    ),
    case(
        "order with bad hold id",
        422,
        "invalid_request",
        body={"hold_id": "nope", "payment_token": "tok_approve"},
        path="/v1/events/{event}/orders",
    ),
    case(
        "order missing token",
        422,
        "invalid_request",
        body={"hold_id": "00000000-0000-4000-8000-000000000000"},
        path="/v1/events/{event}/orders",
    ),
    case(
        "order under an unknown event",
        404,
        "not_found",
        body={"hold_id": "00000000-0000-4000-8000-000000000000", "payment_token": "tok_approve"},
        path="/v1/events/00000000-0000-4000-8000-000000000001/orders",
    ),
    case(
        "extend unknown hold",
        404,
        "not_found",
        path="/v1/events/{event}/holds/00000000-0000-4000-8000-000000000000/extend",
    ),
    case(
        "release with bad hold id",
        404,
        "not_found",
        path="/v1/events/{event}/holds/nope",
        method="DELETE",
        key=None,
    ),
    case("unknown route", 404, "not_found", path="/v1/nothing/here", method="GET", key=None),
    case(
        "wrong method",
        405,
        "method_not_allowed",
        path="/v1/events/{event}/orders",
        method="PUT",
        body={},
    ),
    case(
        "admin without key",
        401,
        "unauthorized",
        body={},
        path="/v1/admin/events",
        auth=None,
        key=None,
    ),
    case(
        "admin wrong key",
        401,
        "unauthorized",
        body={},
        path="/v1/admin/events",
        headers={"X-Admin-Key": "w" * 40},
        auth=None,
        key=None,
    ),
]


@pytest.fixture(scope="module")
def writer_for_table(
    postgres_admin_url: str, redis_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """One writer and one event for the whole table: every case must leave it untouched."""
    database_url = create_database(postgres_admin_url, "bad_input_table")
    writer_settings = settings(database_url, redis_url, nats_url)
    service = start_writer(tmp_path_factory.mktemp("writer"), writer_env(writer_settings))
    try:
        created = httpx.post(
            f"{service.url}/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(),
        )
        assert created.status_code == 201, created.text
        yield service.url, created.json()["event_id"], database_url
    finally:
        service.stop()


@pytest.mark.parametrize("spec", CASES)
async def test_bad_input_is_a_clear_4xx(
    writer_for_table: tuple[str, str, str], spec: dict[str, Any]
) -> None:
    url, event, database_url = writer_for_table
    headers: dict[str, str] = {"content-type": "application/json", **spec["headers"]}
    if spec["auth"] == "good":
        headers["Authorization"] = f"Bearer {mint_token('ann', WRITER_JWT_SECRET)}"
    elif spec["auth"] == "forged":
        headers["Authorization"] = f"Bearer {forged_token()}"
    elif spec["auth"] == "expired":
        headers["Authorization"] = f"Bearer {expired_token(WRITER_JWT_SECRET)}"
    elif spec["auth"] is not None:
        headers["Authorization"] = spec["auth"]
    if spec["key"] is not None:
        headers["Idempotency-Key"] = spec["key"]
    content = spec["raw"]
    if content is None and spec["body"] is not None:
        content = json.dumps(spec["body"]).encode()
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.request(
            spec["method"], spec["path"].format(event=event), headers=headers, content=content
        )
        health = await client.get("/readyz")
    assert response.status_code == spec["status"], response.text
    error = response.json()["error"]
    assert error["code"] == spec["code"]
    assert isinstance(error["message"], str) and error["message"]
    report = audit(database_url)
    assert report.ok and report.claims == 0, "bad input changed state"
    assert health.status_code == 200
