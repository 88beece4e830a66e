"""A real Stripe-compatible server for the Stripe provider's tests: localstripe (PyPI), run as a
subprocess on a free 127.0.0.1 port, plus a real HTTP endpoint for its webhook deliveries and a
signer for Stripe's webhook scheme written from Stripe's documentation (not the SDK's code).

localstripe installs into the project's venv without conflicts (it needs only aiohttp and
python-dateutil), so it is a dev dependency. It is started through this file's `__main__`, a
launcher that changes localstripe in three ways and no other:

- it listens on 127.0.0.1 only (localstripe's own `start()` binds every interface) and does not
  pickle its whole store to /tmp/localstripe.pickle after every write (slow, and shared by every
  localstripe on the machine);
- it records, for each POST, the path and the `Idempotency-Key` header it carried, to a file the
  tests read: localstripe ignores that header, so the tests check the provider sends it;
- it accepts `allowed_payment_method_types=["card"]` on PaymentIntent creation. The Stripe API
  version the SDK pins (2026-10-28.endive) refuses the older `payment_method_types` and wants
  this one; localstripe 1.15.10 predates it and refuses any parameter it does not know. It only
  has cards to offer, which is what the parameter asks for, so the launcher drops it when it is
  exactly `["card"]` and answers 400 for any other value. Every answer is still localstripe's.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from tessera import limits
from tessera_ops.servers import LOCALHOST, ServerStartError, free_port

# localstripe accepts any key that starts with "sk_" and is longer than five characters.
API_KEY: Final = "sk_test_tessera_localstripe"
WEBHOOK_SECRET: Final = "whsec_tessera_test_secret"
_LOG_TAIL_BYTES: Final = 4096


@dataclass(frozen=True)
class RecordedPost:
    path: str
    idempotency_key: str | None


@dataclass
class LocalStripe:
    """A running localstripe. `stop` may be repeated."""

    url: str
    log_path: Path
    posts_path: Path
    process: subprocess.Popen[bytes] | None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # aiohttp's run_app shuts down cleanly on it
        try:
            process.wait(timeout=limits.server_stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def reset(self) -> None:
        """Forget every object (localstripe's own `DELETE /_config/data`) and every recorded
        POST, so each test starts from an empty account."""
        _request(f"{self.url}/_config/data", method="DELETE")
        self.posts_path.write_text("")

    def posts(self) -> list[RecordedPost]:
        lines = self.posts_path.read_text().splitlines()
        return [RecordedPost(**json.loads(line)) for line in lines if line]

    def get(self, path: str) -> Any:
        """An object as localstripe has it: the tests' own view, not the provider's."""
        return json.loads(_request(f"{self.url}{path}"))

    def post(self, path: str, form: dict[str, str]) -> Any:
        """What a client (Stripe.js) would send, for example a card to make a PaymentMethod."""
        body = urllib.parse.urlencode(form).encode()
        return json.loads(_request(f"{self.url}{path}", method="POST", body=body))

    def register_webhook(self, url: str, secret: str, events: list[str]) -> None:
        body = json.dumps({"url": url, "secret": secret, "events": events}).encode()
        _request(f"{self.url}/_config/webhooks/tessera", method="POST", body=body, json=True)


def _request(
    url: str, *, method: str = "GET", body: bytes | None = None, json: bool = False
) -> bytes:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if body is not None:
        headers["Content-Type"] = (
            "application/json" if json else "application/x-www-form-urlencoded"
        )
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=limits.server_probe_timeout_s) as response:
        answer: bytes = response.read()
        return answer


def start_localstripe(workdir: Path) -> LocalStripe:
    """localstripe on a free port, answering, or `ServerStartError` with the end of its log."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = LocalStripe(
        url=f"http://{LOCALHOST}:{port}",
        log_path=workdir / "localstripe.log",
        posts_path=workdir / "posts.jsonl",
        process=None,
    )
    server.posts_path.write_text("")
    with server.log_path.open("ab") as log:
        server.process = subprocess.Popen(  # this interpreter, no shell
            [sys.executable, __file__, str(port), str(server.posts_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    atexit.register(server.stop)  # as tessera_ops.servers does: no server outlives pytest
    deadline = time.monotonic() + limits.server_start_timeout_s
    while not _answers(server):
        if server.process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = server.log_path.read_bytes()[-_LOG_TAIL_BYTES:].decode(errors="replace")
            raise ServerStartError(f"localstripe did not come up; {server.log_path} ends:\n{tail}")
        time.sleep(limits.server_poll_interval_s)
    return server


def _answers(server: LocalStripe) -> bool:
    try:
        _request(f"{server.url}/v1/payment_intents?limit=1")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
    return True


# --- webhooks ---


def sign_webhook(payload: bytes, secret: str, timestamp_s: int) -> str:
    """A `Stripe-Signature` header as Stripe documents it: `t=<unix seconds>,v1=<hex of
    HMAC-SHA256(secret, "<t>." + body)>`."""
    signed = str(timestamp_s).encode() + b"." + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp_s},v1={digest}"


@dataclass(frozen=True)
class Delivery:
    body: bytes  # exactly the bytes received: the signature covers them
    signature_header: str | None


@dataclass
class WebhookReceiver:
    """A real HTTP endpoint on 127.0.0.1 that records each POST and answers 200."""

    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{LOCALHOST}:{self.server.server_address[1]}/stripe/webhook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.deliveries.append(Delivery(body, self.headers.get("Stripe-Signature")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `deliveries`

        self.server = ThreadingHTTPServer((LOCALHOST, 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def wait_for(self, event_type: str, object_id: str, timeout_s: float) -> Delivery:
        """The first delivery of `event_type` about `object_id` (localstripe sends ~1 s late)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.lock:
                for delivery in self.deliveries:
                    event = json.loads(delivery.body)
                    if event["type"] == event_type and event["data"]["object"]["id"] == object_id:
                        return delivery
            time.sleep(limits.server_poll_interval_s)
        raise AssertionError(f"no {event_type} for {object_id} within {timeout_s} s")


# --- the launcher (runs in localstripe's process) ---


def _serve(port: int, posts_path: Path) -> None:
    import logging  # noqa: PLC0415  (the server process only)

    from aiohttp import web  # noqa: PLC0415
    from localstripe import resources, server  # type: ignore[import-untyped]  # noqa: PLC0415
    from localstripe.errors import UserError  # type: ignore[import-untyped]  # noqa: PLC0415

    resources.store.dump_to_disk = lambda: None
    create_intent = resources.PaymentIntent._api_create.__func__

    def create_card_intent(
        cls: Any, /, allowed_payment_method_types: Any = None, **data: Any
    ) -> Any:
        if allowed_payment_method_types not in (None, ["card"]):
            raise UserError(400, "localstripe (via Tessera's launcher) only has cards")
        return create_intent(cls, **data)

    resources.PaymentIntent._api_create = classmethod(create_card_intent)

    @web.middleware
    async def record_posts(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method == "POST":
            line = {"path": request.path, "idempotency_key": request.headers.get("Idempotency-Key")}
            with posts_path.open("a") as posts:
                posts.write(json.dumps(line) + "\n")
        response: web.StreamResponse = await handler(request)
        return response

    server.app.middlewares.insert(0, record_posts)
    logging.basicConfig(level=logging.INFO)
    web.run_app(server.app, host=LOCALHOST, port=port, print=None)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), Path(sys.argv[2]))
