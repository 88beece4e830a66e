"""The waiting room's fan endpoints (docs/edge-waiting-room.md).

- `GET /v1/events/{event_id}/queue/challenge`: a proof-of-work challenge (no auth);
- `POST /v1/events/{event_id}/queue` (fan JWT), body empty or `{"challenge", "solution"}`:
  201 with a new ticket, 200 with the fan's existing one;
- `GET /v1/queue/{ticket}` (no auth: the admission token it yields is bound to the ticket's
  fan): position, ETA and, once admitted, a fresh admission token. A ticket that does not verify
  is a 404 `ticket_not_found`, whatever is wrong with it (forged, garbled, too long, expired).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath

from edge.controllers import (
    BODY_BYTES_MAX,
    decode,
    json_response,
    parse_event_id,
    read_body,
    room_of,
)
from edge.fans import admit_rate, fan_of, optional_fan
from edge.pow import SOLUTION_PATTERN
from edge.settings import RouteClass
from edge.waiting_room import ChallengeView, QueueStatus
from tessera import limits
from tessera.openapi import Answer, documented


class JoinRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    challenge: (
        Annotated[str, msgspec.Meta(min_length=1, max_length=limits.edge_signed_token_chars_max)]
        | None
    ) = None
    solution: Annotated[str, msgspec.Meta(pattern=SOLUTION_PATTERN)] | None = None


_JOIN_DECODER: Final = msgspec.json.Decoder(JoinRequest)
STATUS_ANSWER: Final = Answer.json("The fan's place in the queue", QueueStatus)


@get(
    "/v1/events/{event_id:str}/queue/challenge",
    summary="A proof-of-work challenge for joining",
    operation_class=documented({200: Answer.json("A challenge", ChallengeView)}),
)
async def queue_challenge(
    request: Request[Any, Any, Any], event_id: FromPath[str]
) -> Response[bytes]:
    # Without a token, the class's anonymous budgets (edge/settings.py), never the joins'.
    await admit_rate(request, RouteClass.queue, optional_fan(request))
    return json_response(await room_of(request).challenge(parse_event_id(event_id)))


@post(
    "/v1/events/{event_id:str}/queue",
    summary="Join the event's waiting room (fan JWT)",
    operation_class=documented(
        {201: STATUS_ANSWER, 200: STATUS_ANSWER}, body=JoinRequest, body_required=False
    ),
    request_max_body_size=BODY_BYTES_MAX,
)
async def join_queue(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    user_id = fan_of(request)
    await admit_rate(request, RouteClass.queue, user_id)
    event = parse_event_id(event_id)
    body = await read_body(request)
    join = decode(_JOIN_DECODER, body) if body.strip() else JoinRequest()
    status, created = await room_of(request).join(
        event, user_id, challenge=join.challenge, solution=join.solution
    )
    answer = json_response(status, 201 if created else 200)
    if created:
        answer.headers["Location"] = f"/v1/queue/{status.ticket}"
    return answer


@get(
    "/v1/queue/{ticket:str}",
    summary="Where a queue ticket stands",
    operation_class=documented({200: STATUS_ANSWER}),
)
async def queue_status(request: Request[Any, Any, Any], ticket: FromPath[str]) -> Response[bytes]:
    await admit_rate(request, RouteClass.reads, optional_fan(request))
    return json_response(await room_of(request).status(ticket))


ROUTE_HANDLERS: Final[list[Any]] = [queue_challenge, join_queue, queue_status]
