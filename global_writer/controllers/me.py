from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, put
from litestar.params import FromPath

from global_writer import errors, social
from global_writer.controllers.common import body_of, user_of, writer_of
from global_writer.schemas import Contact, Profile, decode, encoder
from tessera.contracts import UserRecord
from tessera.media import JSON
from tessera.openapi import Answer, documented


class Sharing(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    share: bool


_sharing = msgspec.json.Decoder(Sharing)
PROFILE_ANSWER = Answer.json("My sharing choice, friends and contact details", Profile)
RECORD_ANSWER = Answer.json("My sharing choice and friends, as read nodes see them", UserRecord)


class MeController(Controller):
    path = "/v1/me"
    tags = ["friends"]

    @get(
        "/",
        summary="My sharing choice, friends and contact details",
        operation_class=documented({200: PROFILE_ANSWER}),
    )
    async def me(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        profile = await social.profile(writer_of(request).conns.engine, user_of(request))
        return Response(encoder.encode(profile), media_type=JSON)

    @put(
        "/contact",
        summary="Where my order confirmations go (email, SMS)",
        operation_class=documented({200: PROFILE_ANSWER}, body=Contact),
    )
    async def contact(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        user_id = user_of(request)
        body = decode(Contact, await body_of(request))
        profile = await social.set_contact(writer_of(request).conns.engine, user_id, body)
        return Response(encoder.encode(profile), media_type=JSON)

    @put(
        "/sharing",
        summary="Share (or stop sharing) my purchases with my friends",
        operation_class=documented({200: RECORD_ANSWER}, body=Sharing),
    )
    async def sharing(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        user_id = user_of(request)
        raw = await body_of(request)
        try:
            body = _sharing.decode(raw)
        except msgspec.ValidationError as error:
            raise errors.InvalidRequest(str(error)) from None
        except msgspec.DecodeError as error:
            raise errors.MalformedJson(str(error)) from None
        writer = writer_of(request)
        record, message = await social.set_sharing(writer.conns.engine, user_id, body.share)
        writer.publisher.enqueue([message], {})
        return Response(encoder.encode(record), media_type=JSON)

    @put(
        "/friends/{friend_id:str}",
        summary="Add a friend",
        operation_class=documented({200: RECORD_ANSWER}),
    )
    async def add_friend(
        self, request: Request[Any, Any, Any], friend_id: FromPath[str]
    ) -> Response[bytes]:
        return await self.change(request, friend_id, present=True)

    @delete(
        "/friends/{friend_id:str}",
        status_code=200,
        summary="Remove a friend",
        operation_class=documented({200: RECORD_ANSWER}),
    )
    async def remove_friend(
        self, request: Request[Any, Any, Any], friend_id: FromPath[str]
    ) -> Response[bytes]:
        return await self.change(request, friend_id, present=False)

    async def change(
        self, request: Request[Any, Any, Any], friend_id: str, *, present: bool
    ) -> Response[bytes]:
        writer = writer_of(request)
        record, message = await social.set_friend(
            writer.conns.engine, user_of(request), friend_id, present
        )
        writer.publisher.enqueue([message], {})
        return Response(encoder.encode(record), media_type=JSON)
