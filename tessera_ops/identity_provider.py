"""The local stack's identity provider (docs/identity.md): what stands in for Auth0, Cognito or
Keycloak on a laptop, so the tiers verify fans' tokens exactly as in production.

A key ring of ES256 (default) or RS256 signing keys lives in one JSON file, readable only by its
owner (the private keys are in it). The newest key signs; every key is published, so tokens
signed before a rotation still verify until they expire. The provider serves:

- `GET /.well-known/jwks.json`: the public keys (what the tiers' `TESSERA_JWKS_URL` names);
- `POST /token` with `{"user_id": ...}`: a fan token, for the seat-map page's "sign in as"
  (the edge's `/v1/dev/token` asks here; the edge itself never holds a private key);
- `GET /readyz`.

It is the standard library's threaded HTTP server, bound to loopback: a development tool that
serves a handful of requests, not a production service. `tessera token` and `tessera onsale`
sign with the same key file directly.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any, Final, Literal

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tessera import auth, limits

Algorithm = Literal["ES256", "RS256"]
JWKS_PATH: Final = "/.well-known/jwks.json"
TOKEN_PATH: Final = "/token"  # noqa: S105 (a URL path, not a password)
KEYS_ENV: Final = "TESSERA_IDP_KEYS"


class SigningKey(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    kid: str
    algorithm: Algorithm
    private_pem: str


class KeyRing(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Signing keys, oldest first; the last one signs new tokens."""

    issuer: str = auth.ISSUER
    audience: str = auth.AUDIENCE
    keys: list[SigningKey] = msgspec.field(default_factory=list)

    @classmethod
    def generate(
        cls,
        algorithm: Algorithm = "ES256",
        *,
        issuer: str = auth.ISSUER,
        audience: str = auth.AUDIENCE,
    ) -> KeyRing:
        ring = cls(issuer=issuer, audience=audience)
        ring.rotate(algorithm)
        return ring

    def rotate(self, algorithm: Algorithm = "ES256") -> SigningKey:
        """A new signing key; the older ones stay published (limits.idp_keys_max of them)."""
        private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
            ec.generate_private_key(ec.SECP256R1())
            if algorithm == "ES256"
            else rsa.generate_private_key(public_exponent=65_537, key_size=2_048)
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        key = SigningKey(kid=secrets.token_urlsafe(12), algorithm=algorithm, private_pem=pem)
        self.keys = [*self.keys, key][-limits.idp_keys_max :]
        return key

    def jwks(self) -> dict[str, Any]:
        published = []
        for key in self.keys:
            private = serialization.load_pem_private_key(key.private_pem.encode(), None)
            algorithm = jwt.get_algorithm_by_name(key.algorithm)
            jwk = algorithm.to_jwk(private.public_key(), as_dict=True)
            published.append({**jwk, "kid": key.kid, "alg": key.algorithm, "use": "sig"})
        return {"keys": published}

    def mint(
        self,
        user_id: str,
        *,
        ttl_s: int = limits.jwt_default_ttl_s,
        now: float | None = None,
        claims: dict[str, Any] | None = None,
    ) -> str:
        """A token for `user_id` signed by the newest key; `claims` adds to (or overrides) the
        standard ones, as a real provider's tokens carry more than Tessera reads."""
        if not auth.is_user_id(user_id):
            raise ValueError(
                f"user id must be 1-{limits.user_id_chars_max} characters of [A-Za-z0-9._-]"
            )
        if not 1 <= ttl_s <= limits.jwt_ttl_s_max:
            raise ValueError(f"ttl_s must be in 1..{limits.jwt_ttl_s_max}")
        if not self.keys:
            raise ValueError("the key ring has no keys")
        key = self.keys[-1]
        issued_at = int(time.time() if now is None else now)
        payload = {
            "sub": user_id,
            "iat": issued_at,
            "exp": issued_at + ttl_s,
            "iss": self.issuer,
            "aud": self.audience,
            **(claims or {}),
        }
        return jwt.encode(
            payload, key.private_pem, algorithm=key.algorithm, headers={"kid": key.kid}
        )

    def save(self, path: Path) -> None:
        """Write the ring readable by its owner only, whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(msgspec.json.encode(self))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        return msgspec.json.decode(path.read_bytes(), type=cls)


class TokenRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    user_id: auth.UserId


_TOKEN_REQUEST: Final = msgspec.json.Decoder(TokenRequest)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: IdentityServer

    def do_GET(self) -> None:
        if self.path == JWKS_PATH:
            self.answer(200, self.server.ring().jwks(), cache_s=60)
        elif self.path == "/readyz":
            self.answer(200, {"status": "ready"})
        else:
            self.answer(404, {"error": {"code": "not_found", "message": "no such route"}})

    def do_POST(self) -> None:
        if self.path != TOKEN_PATH:
            self.answer(404, {"error": {"code": "not_found", "message": "no such route"}})
            return
        size = int(self.headers.get("Content-Length") or 0)
        if not 0 < size <= limits.idp_token_request_bytes_max:
            self.answer(413, {"error": {"code": "body_invalid", "message": "body size"}})
            return
        try:
            body = _TOKEN_REQUEST.decode(self.rfile.read(size))
        except msgspec.DecodeError as error:
            self.answer(400, {"error": {"code": "body_invalid", "message": str(error)}})
            return
        token = self.server.ring().mint(body.user_id)
        self.answer(200, {"token": token, "user_id": body.user_id})

    def answer(self, status: int, body: dict[str, Any], cache_s: int = 0) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", f"max-age={cache_s}" if cache_s else "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return  # one line per key fetch is noise in a stack's log


class IdentityServer(http.server.ThreadingHTTPServer):
    """Serves a key ring: one held in memory (tests), or a file re-read when it changes (the
    local stack, so that a rotation written by another process is published at once)."""

    daemon_threads = True

    def __init__(self, source: KeyRing | Path, port: int = 0) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.source = source
        self._cached: tuple[float, KeyRing] | None = None
        self._thread: threading.Thread | None = None

    def ring(self) -> KeyRing:
        if isinstance(self.source, KeyRing):
            return self.source
        changed = self.source.stat().st_mtime
        if self._cached is None or self._cached[0] != changed:
            self._cached = (changed, KeyRing.load(self.source))
        return self._cached[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return self.url + JWKS_PATH

    def start(self) -> IdentityServer:
        """Serve from a background thread (tests)."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tessera_ops.identity_provider")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    keys = Path(os.environ[KEYS_ENV])
    KeyRing.load(keys)  # a missing or broken key file fails here, not on the first request
    IdentityServer(keys, args.port).serve_forever()


if __name__ == "__main__":
    main()
