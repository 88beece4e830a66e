"""The seat-map page's routes on the edge (edge/page.py), in process: the page, its static files
and their caching, and the dev-token endpoint that exists only when switched on, signing with the
HS256 development secret or asking a real local identity provider (tessera_ops/identity_provider.py,
served from a thread). The page in a browser is tests/e2e/test_seatmap_page.py."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import jwt
import msgspec
import pytest
from litestar.testing import TestClient

from edge import page
from edge.app import create_app
from edge.settings import Budget, Rate, RateLimits, RouteClass, Settings, from_env
from tessera.auth import AuthError, verify_token
from tessera.identity import IdentityConfig, Verifier
from tessera_ops.identity_provider import TOKEN_PATH, IdentityServer, KeyRing

JWT_SECRET = "page-test-jwt-secret-" + "j" * 32
EVENT = "0c066419-2e56-40db-b9fc-8ddfe80be8c5"
# Every budget in process: nothing here may wait for the (absent) Redis.
LOCAL = RateLimits(
    budgets={cls: Budget(ip=Rate(1_000, 1_000), store="local") for cls in RouteClass}
)


def settings(*, dev_tokens: bool) -> Settings:
    return Settings(
        origin_urls=["http://127.0.0.1:9"],
        writer_url="http://127.0.0.1:9",
        redis_url="redis://127.0.0.1:9/0",
        jwt_secret=JWT_SECRET,
        admin_key="page-test-admin-key-" + "a" * 32,
        admission_secret="page-test-edge-secret-" + "e" * 32,
        rate_limits=LOCAL,
        dev_tokens=dev_tokens,
    )


@contextmanager
def edge_client(*, dev_tokens: bool) -> Iterator[TestClient[Any]]:
    app: Any = create_app(settings(dev_tokens=dev_tokens))
    with TestClient(app=app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Any]]:
    """An edge as deployed: no dev tokens."""
    with edge_client(dev_tokens=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def dev_client() -> Iterator[TestClient[Any]]:
    """An edge of a local stack: TESSERA_DEV_TOKENS=true."""
    with edge_client(dev_tokens=True) as test_client:
        yield test_client


def test_the_page_names_its_versioned_modules(client: TestClient[Any]) -> None:
    answer = client.get(f"/events/{EVENT}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-cache"
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert f'src="/static/{page.VERSION}/app.mjs"' in answer.text
    assert "__STATIC__" not in answer.text
    again = client.get(f"/events/{EVENT}", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304


@pytest.mark.parametrize("event", ["not-a-uuid", EVENT.upper(), "{" + EVENT + "}"])
def test_only_canonical_event_ids_get_a_page(client: TestClient[Any], event: str) -> None:
    answer = client.get(f"/events/{event}")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_static_files_are_cached_by_version(client: TestClient[Any]) -> None:
    names = {"app.mjs", "view.mjs", "seatmap.mjs", "style.css"}
    assert names <= set(page.ASSETS)
    for name in names:
        current = client.get(f"/static/{page.VERSION}/{name}")
        assert current.status_code == 200, name
        assert current.headers["cache-control"] == "public, max-age=31536000, immutable"
        expected = "text/css" if name.endswith(".css") else "text/javascript"
        assert current.headers["content-type"].startswith(expected)
        assert current.content == (page.STATIC_DIR / name).read_bytes()
        plain = client.get(f"/static/{name}")
        old = client.get(f"/static/0123456789abcdef/{name}")
        for briefly in (plain, old):
            assert briefly.status_code == 200
            assert briefly.headers["cache-control"] == "public, max-age=300"
            assert briefly.headers["etag"] == current.headers["etag"]
        revalidated = client.get(
            f"/static/{name}", headers={"If-None-Match": current.headers["etag"]}
        )
        assert revalidated.status_code == 304
        assert revalidated.content == b""


@pytest.mark.parametrize(
    "path", ["/static/index.html", "/static/missing.mjs", "/static/..%2fpage.py"]
)
def test_nothing_else_is_served_from_static(client: TestClient[Any], path: str) -> None:
    assert (client.get(path)).status_code == 404


def test_without_the_setting_there_is_no_dev_token_route(
    client: TestClient[Any],
) -> None:
    answer = client.post("/v1/dev/token", json={"user_id": "alice"})
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_a_dev_token_speaks_for_the_user_named(dev_client: TestClient[Any]) -> None:
    answer = dev_client.post("/v1/dev/token", json={"user_id": "alice"})
    assert answer.status_code == 200, answer.text
    assert verify_token(answer.json()["token"], JWT_SECRET).user_id == "alice"


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"user_id": ""}', b'{"user_id": "a b"}', b'{"user_id": "x", "admin": true}', b"["],
)
def test_dev_tokens_refuse_bad_bodies(dev_client: TestClient[Any], body: bytes) -> None:
    answer = dev_client.post(
        "/v1/dev/token", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"


def test_every_file_the_page_names_exists() -> None:
    html = page.PAGE.body.decode()
    named = re.findall(rf"/static/{page.VERSION}/([\w.-]+)", html)
    assert {"app.mjs", "style.css"} <= set(named)
    assert set(named) <= set(page.ASSETS)


@pytest.mark.parametrize(
    ("value", "expected"), [(None, False), ("false", False), ("true", True), ("TRUE", True)]
)
def test_dev_tokens_are_off_unless_the_environment_says_true(
    value: str | None, expected: bool
) -> None:
    base = settings(dev_tokens=False)
    env = {
        "TESSERA_ORIGIN_URLS": base.origin_urls[0],
        "TESSERA_WRITER_URL": base.writer_url,
        "TESSERA_REDIS_URL": base.redis_url,
        "TESSERA_JWT_SECRET": base.jwt_secret,
        "TESSERA_ADMIN_KEY": base.admin_key,
        "TESSERA_ADMISSION_SECRET": base.admission_secret,
    }
    if value is not None:
        env["TESSERA_DEV_TOKENS"] = value
    assert from_env(env).dev_tokens is expected
    with pytest.raises(ValueError, match="TESSERA_DEV_TOKENS"):
        from_env({**env, "TESSERA_DEV_TOKENS": "yes please"})


# --- dev tokens from the local identity provider (TESSERA_DEV_TOKEN_URL) ---


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing.generate("ES256")


@pytest.fixture(scope="module")
def provider(ring: KeyRing) -> Iterator[IdentityServer]:
    server = IdentityServer(ring).start()
    try:
        yield server
    finally:
        server.close()


def provider_settings(dev_token_url: str, jwks_url: str) -> Settings:
    """An edge as `tessera up` starts it: tokens checked against the provider's JWKS, no HS256
    secret, dev tokens asked of the provider."""
    return msgspec.structs.replace(
        settings(dev_tokens=False),
        jwt_secret="",
        jwks_url=jwks_url,
        dev_tokens=True,
        dev_token_url=dev_token_url,
    )


def test_a_dev_token_comes_from_the_identity_provider(
    provider: IdentityServer, ring: KeyRing
) -> None:
    app: Any = create_app(provider_settings(provider.url + TOKEN_PATH, provider.jwks_url))
    with TestClient(app=app) as test_client:
        answer = test_client.post("/v1/dev/token", json={"user_id": "alice"})
        assert answer.status_code == 200, answer.text
        token = answer.json()["token"]
        # Signed by the provider's newest key (ES256), not by anything the edge holds.
        assert jwt.get_unverified_header(token) == {
            "alg": "ES256",
            "kid": ring.keys[-1].kid,
            "typ": "JWT",
        }
        assert test_client.post("/v1/dev/token", json={"user_id": "a b"}).status_code == 422
    # It verifies as the edge, the writer and the read nodes verify: against the JWKS.
    verifier = Verifier(IdentityConfig(jwks_url=provider.jwks_url))
    asyncio.run(verifier.refresh())
    assert verifier.user_id(f"Bearer {token}") == "alice"
    with pytest.raises(AuthError):  # a key ring the provider does not publish
        verifier.user_id(f"Bearer {KeyRing.generate('ES256').mint('alice')}")


def test_an_unreachable_identity_provider_is_a_502(provider: IdentityServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens there once the socket is closed
    app: Any = create_app(
        provider_settings(f"http://127.0.0.1:{closed}{TOKEN_PATH}", provider.jwks_url)
    )
    with TestClient(app=app) as test_client:
        answer = test_client.post("/v1/dev/token", json={"user_id": "alice"})
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "identity_provider_unavailable"
        assert answer.headers["retry-after"] == "1"
        # A provider that answers something other than a token is the same 502.
        wrong = create_app(provider_settings(provider.url + "/nowhere", provider.jwks_url))
        with TestClient(app=wrong) as other:
            refused = other.post("/v1/dev/token", json={"user_id": "alice"})
            assert refused.status_code == 502
            assert refused.json()["error"]["code"] == "identity_provider_unavailable"


def provider_env(**extra: str) -> dict[str, str]:
    base = settings(dev_tokens=False)
    return {
        "TESSERA_ORIGIN_URLS": base.origin_urls[0],
        "TESSERA_WRITER_URL": base.writer_url,
        "TESSERA_REDIS_URL": base.redis_url,
        "TESSERA_JWKS_URL": "http://127.0.0.1:9/.well-known/jwks.json",
        "TESSERA_ADMIN_KEY": base.admin_key,
        "TESSERA_ADMISSION_SECRET": base.admission_secret,
        **extra,
    }


def test_dev_tokens_need_a_provider_or_the_development_secret() -> None:
    with pytest.raises(ValueError, match="TESSERA_DEV_TOKENS: only with a local identity"):
        from_env(provider_env(TESSERA_DEV_TOKENS="true"))
    allowed = from_env(
        provider_env(TESSERA_DEV_TOKENS="true", TESSERA_DEV_TOKEN_URL="http://127.0.0.1:9/token")
    )
    assert (allowed.dev_tokens, allowed.dev_token_url) == (True, "http://127.0.0.1:9/token")
    with pytest.raises(ValueError, match="TESSERA_DEV_TOKEN_URL"):
        from_env(provider_env(TESSERA_DEV_TOKEN_URL="https://id.example.com/token"))


def test_dev_tokens_are_refused_in_production() -> None:
    with pytest.raises(ValueError, match="never when TESSERA_PRODUCTION is true"):
        from_env(
            provider_env(
                TESSERA_DEV_TOKENS="true",
                TESSERA_DEV_TOKEN_URL="http://127.0.0.1:9/token",
                TESSERA_PRODUCTION="true",
            )
        )
    # Without dev tokens the same production edge starts (the URL alone mints nothing).
    assert from_env(
        provider_env(TESSERA_DEV_TOKEN_URL="http://127.0.0.1:9/token", TESSERA_PRODUCTION="true")
    ).production
