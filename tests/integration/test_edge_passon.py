"""What only the writer serves, reached through a real edge as production reaches it (the writer
sits on an internal load balancer): a fan's tickets and their QR codes, the published ticket keys,
the door's scan with a staff key, and Stripe's webhook with its signature and body untouched.
The edge holds none of those credentials: each refusal below comes from the writer."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import stripe
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from edge_support import EdgeStack, fan_headers, open_edge_stack
from stripe_support import API_KEY, WEBHOOK_SECRET, LocalStripe, start_localstripe

from tessera import tickets as tk
from tessera_ops.processes import ServiceProcess
from tessera_ops.servers import create_database, drop_database

STAFF_KEY = "door-" + "k" * 40
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ring() -> str:
    raw = Ed25519PrivateKey.generate().private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )
    return json.dumps({"current": "k1", "private": {"k1": tk.b64url(raw)}})


@dataclass
class Through:
    stack: EdgeStack
    edge: ServiceProcess
    event: str


@pytest.fixture(scope="module")
def through(
    postgres_admin_url: str, redis_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Through]:
    name = f"t_passon_{secrets.token_hex(4)}"
    database_url = create_database(postgres_admin_url, name)
    workdir = tmp_path_factory.mktemp("passon")
    localstripe: LocalStripe = start_localstripe(workdir / "localstripe")
    try:
        for stack in open_edge_stack(
            database_url,
            redis_url,
            nats_url,
            workdir,
            regionals=1,
            payment_provider="stripe",
            stripe_api_key=API_KEY,
            stripe_api_base=localstripe.url,
            stripe_webhook_secret=WEBHOOK_SECRET,
            ticket_signing_keys=ring(),
            door_staff_keys=json.dumps({"gates": STAFF_KEY}),
        ):
            edge = stack.start_edge("edge")
            event = stack.create_event()
            stack.wait_seen(event)
            yield Through(stack, edge, event)
    finally:
        localstripe.stop()
        drop_database(postgres_admin_url, name)


def buy(through: Through, user: str) -> dict[str, str]:
    url = through.edge.url
    hold = httpx.post(
        f"{url}/v1/events/{through.event}/holds",
        json={"best_available": {"quantity": 1}},
        headers=fan_headers(user, f"h-{user}"),
        timeout=30,
    )
    assert hold.status_code == 201, hold.text
    order = httpx.post(
        f"{url}/v1/events/{through.event}/orders",
        json={"hold_id": hold.json()["hold_id"], "payment_token": "pm_card_visa"},
        headers=fan_headers(user, f"o-{user}"),
        timeout=30,
    )
    assert order.status_code == 201, order.text
    tickets = httpx.get(
        f"{url}/v1/me/orders/{order.json()['order_id']}/tickets", headers=fan_headers(user)
    )
    assert tickets.status_code == 200, tickets.text
    found: dict[str, str] = tickets.json()["tickets"][0]
    return {**found, "order_id": order.json()["order_id"]}


def test_a_fan_gets_tickets_and_the_door_admits_them_through_the_edge(through: Through) -> None:
    url = through.edge.url
    ticket = buy(through, "ann")
    order, ticket_id = ticket["order_id"], ticket["ticket_id"]
    qr = httpx.get(
        f"{url}/v1/me/orders/{order}/tickets/{ticket_id}/qr?format=png", headers=fan_headers("ann")
    )
    assert qr.status_code == 200, qr.text
    assert qr.headers["content-type"] == "image/png"
    assert qr.content.startswith(PNG_MAGIC)
    svg = httpx.get(
        f"{url}/v1/me/orders/{order}/tickets/{ticket_id}/qr", headers=fan_headers("ann")
    )
    assert svg.headers["content-type"].startswith("image/svg+xml")
    stranger = httpx.get(f"{url}/v1/me/orders/{order}/tickets", headers=fan_headers("bob"))
    assert stranger.status_code == 404
    assert httpx.get(f"{url}/v1/me/orders/{order}/tickets").status_code == 401
    assert httpx.get(f"{url}/v1/me/orders/not-an-id/tickets").status_code == 404

    keys = httpx.get(f"{url}/v1/tickets/keys")
    assert keys.status_code == 200, keys.text
    assert [key["kid"] for key in keys.json()["keys"]] == ["k1"]

    mine = httpx.get(f"{url}/v1/me/orders", params={"limit": 5}, headers=fan_headers("ann"))
    assert mine.status_code == 200, mine.text
    assert [o["order_id"] for o in mine.json()["orders"]] == [order]
    bad_page = httpx.get(f"{url}/v1/me/orders?limit=0", headers=fan_headers("ann"))
    assert bad_page.status_code == 422, bad_page.text
    cancel = httpx.post(f"{url}/v1/me/orders/{order}/cancel", headers=fan_headers("ann"))
    assert cancel.status_code == 409, cancel.text  # the event allows no cancellation
    assert cancel.json()["error"]["code"] == "cancel_window_closed"

    scan = {"token": ticket["token"], "event_id": through.event, "gate": "north 1"}
    refused = httpx.post(f"{url}/v1/tickets/scan", json=scan)
    assert refused.status_code in (401, 403), refused.text
    staff = {"X-Staff-Key": STAFF_KEY}
    admitted = httpx.post(f"{url}/v1/tickets/scan", json=scan, headers=staff)
    assert admitted.status_code == 200, admitted.text
    again = httpx.post(f"{url}/v1/tickets/scan", json={**scan, "gate": "south 2"}, headers=staff)
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "already_scanned"


def test_stripes_signed_webhook_reaches_the_writer_unchanged(through: Through) -> None:
    url = f"{through.edge.url}/v1/payments/stripe/webhook"
    event = {
        "id": "evt_passon",
        "object": "event",
        "type": "customer.created",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": "cus_1", "object": "customer"}},
    }
    # Stripe's own spacing: the signature covers these exact bytes, so a proxy that re-encoded
    # the JSON would break it.
    body = json.dumps(event, indent=2)
    signature = stripe.WebhookSignature.generate_signature_header(body, WEBHOOK_SECRET)
    headers = {"Stripe-Signature": signature, "Content-Type": "application/json; charset=utf-8"}
    delivered = httpx.post(url, content=body.encode(), headers=headers)
    assert delivered.status_code == 200, delivered.text
    assert delivered.json()["handled"] is False
    forged = httpx.post(url, content=body.encode() + b" ", headers=headers)
    assert forged.status_code == 400
    assert forged.json()["error"]["code"] == "webhook_refused"
