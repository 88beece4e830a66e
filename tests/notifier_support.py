"""Real peers for the notifier's tests: an SMTP server (aiosmtpd, the mail catcher's handler) and
an HTTP sink for the SMS webhook, each on a free 127.0.0.1 port, in a thread of the test
process so a test can stop, restart and reconfigure them and read what they received."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from notifier.mailcatcher import CatcherHandler, Mailbox
from tessera_ops.servers import free_port


class SmtpServer:
    """A real SMTP server on a fixed port that can be stopped and started again (an outage)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.handler = CatcherHandler(self.mailbox)
        self._controller: Controller | None = None

    def start(self) -> None:
        controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


@dataclass
class SinkRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class HttpSink:
    """The SMS provider: records every POST and answers `status`."""

    status: int = 200
    requests: list[SinkRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/sms"

    def start(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with sink.lock:
                    sink.requests.append(SinkRequest(self.path, dict(self.headers), body))
                    status = sink.status
                payload = b'{"ok":true}' if status < 400 else b'{"error":"refused"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the test reads `requests`

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def received(self) -> list[SinkRequest]:
        with self.lock:
            return list(self.requests)


_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def metric(base_url: str, name: str, **labels: str) -> float:
    """The value of one sample of a service's /metrics (0 when absent)."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name and (match["labels"] or "") == wanted:
            return float(match["value"])
    return 0.0
