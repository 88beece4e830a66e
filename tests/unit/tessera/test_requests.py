"""Request ids and the access log (tessera/requests.py), on a small ASGI app of the test's."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import pytest

from tessera.observability import configure_logging
from tessera.requests import AccessLog, current_request_id, request_id_of

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"traceparent", TRACEPARENT)], TRACE_ID),
        ([(b"traceparent", TRACEPARENT), (b"x-request-id", b"mine")], TRACE_ID),
        ([(b"x-request-id", b"req-42.a:b")], "req-42.a:b"),
    ],
)
def test_the_id_comes_from_the_request_when_it_is_well_formed(
    headers: list[tuple[bytes, bytes]], expected: str
) -> None:
    assert request_id_of(headers) == expected


@pytest.mark.parametrize(
    "headers",
    [
        [],
        [(b"traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")],  # all-zero trace id
        [(b"traceparent", b"garbage")],
        [(b"x-request-id", b"has space")],
        [(b"x-request-id", b"x" * 129)],
        [(b"x-request-id", "é".encode())],
    ],
)
def test_anything_else_gets_a_new_id(headers: list[tuple[bytes, bytes]]) -> None:
    made = request_id_of(headers)
    assert len(made) == 32 and int(made, 16) >= 0
    assert made != request_id_of(headers), "each request its own"


def serve(app: AccessLog, path: str, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def main() -> None:
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
        try:
            await app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            app.flush()

    asyncio.run(main())
    return sent


def test_the_answer_the_log_line_and_the_app_share_the_id() -> None:
    seen: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(current_request_id())
        scope["path_template"] = "/v1/queue/{ticket}"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    stream = io.StringIO()
    app = AccessLog(inner, "edge", stream)
    sent = serve(app, "/v1/queue/SECRET-TICKET", [(b"traceparent", TRACEPARENT)])
    assert seen == [TRACE_ID]
    assert (b"x-request-id", TRACE_ID.encode()) in sent[0]["headers"]
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "access" and entry["service"] == "edge"
    assert entry["request_id"] == TRACE_ID and entry["status"] == 200
    assert entry["route"] == "/v1/queue/{ticket}" and entry["method"] == "GET"
    assert "SECRET-TICKET" not in line, "the raw path (a ticket is a credential) is never logged"
    assert current_request_id() == "", "the id belongs to the request only"


def test_an_unanswered_request_is_logged_as_499() -> None:
    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise asyncio.CancelledError  # the client went away mid-request

    stream = io.StringIO()
    with pytest.raises(asyncio.CancelledError):
        serve(AccessLog(inner, "writer", stream), "/x", [])
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["status"] == 499


def test_log_records_written_during_a_request_carry_its_id() -> None:
    stream = io.StringIO()
    configure_logging("writer", stream=stream)

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        logging.getLogger("global_writer.test").info("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    serve(AccessLog(inner, "writer", io.StringIO()), "/x", [(b"x-request-id", b"abc")])
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert {"request_id": "abc"}.items() <= next(
        e for e in entries if e["message"] == "inside"
    ).items()
