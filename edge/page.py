"""The seat-map web page (docs/web-page.md): `GET /events/{event_id}` serves the page and
`GET /static/...` its files (edge/static/: plain ES modules, no build step). The page then talks
to the fan API of this same edge.

- `GET /static/{version}/{name}`: the page asks for this form; `version` is a hash of every file,
  so an answer for the current version is cacheable for a year (`immutable`). Relative imports
  between the modules keep the version. Another version (a page from before a deploy) still gets
  today's file, cacheable briefly only.
- `GET /static/{name}`: the same files for anyone else (`seatmap.mjs`, the seat-map decoder),
  cacheable briefly; every answer carries a strong `ETag` and honours `If-None-Match`.
- `POST /v1/dev/token` `{"user_id"}` → `{"token"}`: a fan JWT for any user id, so the page can
  sign in on a local stack. Only when the edge runs with `TESSERA_DEV_TOKENS=true`; otherwise the
  route answers 404 as if it did not exist. Production must leave it off: anyone could become
  anyone (the settings refuse it with `TESSERA_PRODUCTION=true`). The token comes from the local
  identity provider's `POST /token` (`TESSERA_DEV_TOKEN_URL`, what `tessera up` sets), so the
  edge holds no signing key; an edge with only the HS256 development secret signs it itself.

The files are read once, at import: a handful of kilobytes served from memory.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath

from edge.controllers import BODY_BYTES_MAX, decode, json_response, read_body, settings_of
from edge.errors import EdgeError
from edge.fans import admit_rate
from edge.settings import RouteClass
from tessera import auth, http1, limits
from tessera.httpcache import etag_matches

STATIC_DIR: Final = Path(__file__).resolve().parent / "static"
PAGE_FILE: Final = "index.html"
# The placeholder in index.html replaced by the versioned static prefix.
STATIC_MARK: Final = "__STATIC__"
CONTENT_TYPES: Final = {
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
# The page itself is revalidated on every visit (it names the static version).
PAGE_CACHE: Final = "no-cache"
# The page loads only its own files and talks only to this edge.
PAGE_POLICY: Final = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
VERSIONED_CACHE: Final = "public, max-age=31536000, immutable"
UNVERSIONED_CACHE: Final = "public, max-age=300"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def asset(body: bytes, content_type: str) -> Asset:
    return Asset(body, content_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def load(directory: Path) -> tuple[dict[str, Asset], Asset, str]:
    """The static files by name, the page (pointing at their version) and that version."""
    files = {
        path.name: asset(path.read_bytes(), CONTENT_TYPES[path.suffix])
        for path in sorted(directory.iterdir())
        if path.is_file() and path.suffix in CONTENT_TYPES and path.name != PAGE_FILE
    }
    digest = hashlib.sha256()
    for name, file in files.items():
        digest.update(f"{name}\0{file.etag}\0".encode())
    version = digest.hexdigest()[:16]
    html = (directory / PAGE_FILE).read_text("utf-8").replace(STATIC_MARK, f"/static/{version}")
    return files, asset(html.encode(), CONTENT_TYPES[".html"]), version


ASSETS, PAGE, VERSION = load(STATIC_DIR)


def serve(
    request: Request[Any, Any, Any],
    file: Asset,
    cache_control: str,
    extra: dict[str, str] | None = None,
) -> Response[bytes]:
    headers = {
        "Cache-Control": cache_control,
        "ETag": file.etag,
        "X-Content-Type-Options": "nosniff",
        **(extra or {}),
    }
    given = request.headers.get("if-none-match")
    if given is not None and etag_matches(given, file.etag):
        return Response(b"", status_code=304, headers=headers)
    return Response(file.body, media_type=file.content_type, headers=headers)


def static_file(name: str) -> Asset:
    file = ASSETS.get(name)
    if file is None:
        raise EdgeError(404, "not_found", "no such file")
    return file


@get("/events/{event_id:str}", include_in_schema=False)
async def seatmap_page(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[bytes]:
    await admit_rate(request, RouteClass.reads, None)
    try:
        canonical = str(uuid.UUID(event_id)) == event_id
    except ValueError:
        canonical = False
    if not canonical:
        raise EdgeError(404, "not_found", "no such event")
    return serve(request, PAGE, PAGE_CACHE, {"Content-Security-Policy": PAGE_POLICY})


@get("/static/{name:str}", include_in_schema=False)
async def static(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
    await admit_rate(request, RouteClass.reads, None)
    return serve(request, static_file(name), UNVERSIONED_CACHE)


@get("/static/{version:str}/{name:str}", include_in_schema=False)
async def versioned_static(
    request: Request[Any, Any, Any], version: FromPath[str], name: FromPath[str]
) -> Response[bytes]:
    await admit_rate(request, RouteClass.reads, None)
    cache_control = VERSIONED_CACHE if version == VERSION else UNVERSIONED_CACHE
    return serve(request, static_file(name), cache_control)


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user_id: auth.UserId


class TokenAnswer(msgspec.Struct, frozen=True):
    """The identity provider's answer (extra fields tolerated: it is another program)."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=limits.bearer_token_chars_max)]


_TOKEN_DECODER: Final = msgspec.json.Decoder(TokenRequest)
_ANSWER_DECODER: Final = msgspec.json.Decoder(TokenAnswer)
_ENCODER: Final = msgspec.json.Encoder()


async def provider_token(url: str, user_id: str) -> str:
    """A token from the identity provider at `url`; 502 when it cannot give one."""
    unavailable = EdgeError(
        502,
        "identity_provider_unavailable",
        "the identity provider gave no token; retry",
        {"Retry-After": "1"},
    )
    try:
        answer = await http1.fetch(
            url,
            [(b"content-type", b"application/json")],
            method=b"POST",
            body=_ENCODER.encode(TokenRequest(user_id)),
            timeout_s=limits.jwks_fetch_s_max,
        )
    except http1.HttpError:
        raise unavailable from None
    if answer.status != 200:
        raise unavailable
    try:
        return _ANSWER_DECODER.decode(answer.body).token
    except msgspec.DecodeError:
        raise unavailable from None


@post(
    "/v1/dev/token",
    status_code=200,
    include_in_schema=False,
    request_max_body_size=BODY_BYTES_MAX,
)
async def dev_token(request: Request[Any, Any, Any]) -> Response[bytes]:
    settings = settings_of(request)
    if not settings.dev_tokens:
        raise EdgeError(404, "not_found", "no such route")
    await admit_rate(request, RouteClass.queue, None)
    body = decode(_TOKEN_DECODER, await read_body(request))
    if settings.dev_token_url:
        token = await provider_token(settings.dev_token_url, body.user_id)
    else:
        token = auth.mint_token(body.user_id, settings.jwt_secret)
    return json_response({"token": token, "user_id": body.user_id})


ROUTE_HANDLERS: Final[list[Any]] = [seatmap_page, static, versioned_static, dev_token]
