"""Tickets and the door against a real writer process (PostgreSQL, Valkey, NATS): one signed
ticket per seat sold, verified offline with the published keys, downloaded by its fan only, its
QR code decoded back; the door admits a ticket exactly once however many gates scan it at once,
and says why it refuses."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest
import writer_support
import zxingcpp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from PIL import Image

from global_writer.settings import Settings
from tessera import tickets as tk

pytestmark = pytest.mark.anyio

CURRENT = Ed25519PrivateKey.generate()
OLD = Ed25519PrivateKey.generate()
STAFF = {"north-gates": "n" * 40, "south-gates": "s" * 40}
GATES = 24


def seed(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return tk.b64url(raw)


RING = json.dumps(
    {
        "current": "2026-12",
        "private": {"2026-12": seed(CURRENT)},
        # A retired key: no longer signs, still published for the tickets it signed.
        "public": {"2026-06": tk.b64url(tk.public_key_bytes(OLD.public_key()))},
    }
)


@pytest.fixture
def writer_settings(database_url: str, redis_url: str, nats_url: str) -> Settings:
    return writer_support.settings(
        database_url,
        redis_url,
        nats_url,
        ticket_signing_keys=RING,
        door_staff_keys=json.dumps(STAFF),
    )


@pytest.fixture
def api(writer_api: writer_support.WriterApi) -> writer_support.WriterApi:
    return writer_api


async def buy(
    api: writer_support.WriterApi, event_id: str, user: str, quantity: int
) -> dict[str, Any]:
    hold = await api.hold(
        event_id, user, {"best_available": {"quantity": quantity}}, key=f"hold-{user}"
    )
    assert hold.status_code == 201, hold.text
    order = await api.order(user, hold.json()["hold_id"], "tok_approve", key=f"order-{user}")
    assert order.status_code == 201, order.text
    result: dict[str, Any] = order.json()
    return result


async def tickets_of(api: writer_support.WriterApi, user: str, order_id: str) -> httpx.Response:
    return await api.client.get(f"/v1/me/orders/{order_id}/tickets", headers=api.headers(user))


async def published_keys(api: writer_support.WriterApi) -> tk.KeySet:
    answer = await api.client.get("/v1/tickets/keys")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/jwk-set+json")
    assert "max-age=" in answer.headers["cache-control"]
    return tk.KeySet.from_jwks(answer.content)


def decode_qr(png: bytes) -> str:
    image = Image.open(io.BytesIO(png))
    (found,) = zxingcpp.read_barcodes(image)
    text: str = found.text
    return text


def tampered(token: str) -> str:
    """The token with one payload character changed (for certain: a different one)."""
    prefix, payload, signature = token.split(".")
    i = len(payload) // 2
    swapped = "B" if payload[i] != "B" else "C"
    return f"{prefix}.{payload[:i]}{swapped}{payload[i + 1 :]}.{signature}"


async def scan(
    api: writer_support.WriterApi,
    token: str,
    event_id: str,
    gate: str = "gate 1",
    *,
    staff: str | None = STAFF["north-gates"],
    **extra: Any,
) -> httpx.Response:
    headers = {} if staff is None else {"X-Staff-Key": staff}
    body = {"token": token, "event_id": event_id, "gate": gate, **extra}
    return await api.client.post("/v1/tickets/scan", headers=headers, json=body)


async def test_one_ticket_per_seat_verified_offline_and_downloaded_by_its_fan_only(
    api: writer_support.WriterApi, database_url: str
) -> None:
    event_id = await api.create_event()
    order = await buy(api, event_id, "alice", 3)
    answer = await tickets_of(api, "alice", order["order_id"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "private, no-store"
    body = answer.json()
    assert body["order_id"] == order["order_id"]
    assert body["event_id"] == event_id
    tickets = body["tickets"]
    assert sorted(t["seat"] for t in tickets) == sorted(order["seats"])
    assert len({t["ticket_id"] for t in tickets}) == 3
    assert all(t["status"] == "valid" and t["scanned_at"] is None for t in tickets)

    # Offline: nothing but the published key set checks each token.
    keys = await published_keys(api)
    assert set(keys.keys) == {"2026-12", "2026-06"}
    for ticket in tickets:
        claims = keys.verify(ticket["token"])
        assert str(claims.ticket_id) == ticket["ticket_id"]
        assert str(claims.order_id) == order["order_id"]
        assert str(claims.event_id) == event_id
        assert (claims.seat, claims.user_id, claims.kid) == (ticket["seat"], "alice", "2026-12")
        assert len(ticket["token"]) <= 300
        with pytest.raises(tk.TicketInvalid) as bad:
            keys.verify(tampered(ticket["token"]))
        assert bad.value.reason in ("bad_signature", "malformed")
    # A token with a valid shape signed by someone else's key under a published kid.
    claims = keys.verify(tickets[0]["token"])
    payload = tk.encode_payload(claims)
    forged = tk.assemble(payload, Ed25519PrivateKey.generate().sign(tk.SIGNING_CONTEXT + payload))
    with pytest.raises(tk.TicketInvalid) as bad:
        keys.verify(forged)
    assert bad.value.reason == "bad_signature"
    unknown = tk.KeySet({"other": OLD.public_key()})
    with pytest.raises(tk.TicketInvalid) as bad:
        unknown.verify(tickets[0]["token"])
    assert bad.value.reason == "unknown_key"

    # The rows: one per seat, in the database, with the token handed out.
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT seat, token, status FROM tickets WHERE order_id = %s", (order["order_id"],)
        ).fetchall()
    assert sorted((seat, token) for seat, token, _ in rows) == sorted(
        (t["seat"], t["token"]) for t in tickets
    )

    # Someone else's order, an unknown one, a malformed id, no token.
    assert (await tickets_of(api, "bob", order["order_id"])).status_code == 404
    assert (await tickets_of(api, "alice", str(uuid.uuid4()))).status_code == 404
    assert (await tickets_of(api, "alice", "not-an-id")).status_code == 404
    no_token = await api.client.get(f"/v1/me/orders/{order['order_id']}/tickets")
    assert no_token.status_code == 401

    # The QR codes decode back to the token.
    first = tickets[0]
    qr_path = f"/v1/me/orders/{order['order_id']}/tickets/{first['ticket_id']}/qr"
    png = await api.client.get(qr_path, params={"format": "png"}, headers=api.headers("alice"))
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert decode_qr(png.content) == first["token"]
    svg = await api.client.get(qr_path, headers=api.headers("alice"))
    assert svg.status_code == 200
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.content.startswith(b"<svg")
    other = await api.client.get(qr_path, headers=api.headers("bob"))
    assert other.status_code == 404
    bad_format = await api.client.get(
        qr_path, params={"format": "gif"}, headers=api.headers("alice")
    )
    assert bad_format.status_code == 422
    assert "error" in bad_format.json()


async def test_the_door_admits_a_ticket_exactly_once_from_many_gates_at_once(
    api: writer_support.WriterApi,
) -> None:
    event_id = await api.create_event()
    order = await buy(api, event_id, "carol", 2)
    tickets = (await tickets_of(api, "carol", order["order_id"])).json()["tickets"]
    token = tickets[0]["token"]

    answers = await asyncio.gather(*(scan(api, token, event_id, f"gate {n}") for n in range(GATES)))
    admitted = [a for a in answers if a.status_code == 200]
    assert len(admitted) == 1, [a.text for a in answers]
    winner = admitted[0].json()
    assert winner["admitted"] is True
    assert winner["ticket_id"] == tickets[0]["ticket_id"]
    assert winner["seat"] == tickets[0]["seat"]
    assert winner["scanned_by"] == "north-gates"
    refused = [a for a in answers if a.status_code != 200]
    assert {a.status_code for a in refused} == {409}
    for answer in refused:
        error = answer.json()["error"]
        assert error["code"] == "already_scanned"
        assert error["gate"] == winner["gate"]
        assert error["scanned_by"] == "north-gates"
        assert error["scanned_at"].endswith("Z")
        assert f"at gate {winner['gate']}" in error["message"]

    # Later, at another gate, by the other team: still refused, saying when and where.
    again = await scan(api, token, event_id, "gate 99", staff=STAFF["south-gates"])
    assert again.status_code == 409
    assert again.json()["error"]["gate"] == winner["gate"]

    # A scanner's retry of its own scan (same scan_id) is admitted again, marked replayed.
    scan_id = str(uuid.uuid4())
    second = tickets[1]["token"]
    first_try = await scan(api, second, event_id, "gate 7", scan_id=scan_id)
    assert first_try.status_code == 200
    retry = await scan(api, second, event_id, "gate 7", scan_id=scan_id)
    assert retry.status_code == 200, retry.text
    assert retry.json()["replayed"] is True
    assert retry.json()["scanned_at"] == first_try.json()["scanned_at"]
    other_scan = await scan(api, second, event_id, "gate 7", scan_id=str(uuid.uuid4()))
    assert other_scan.status_code == 409

    # The download shows the scan.
    after = (await tickets_of(api, "carol", order["order_id"])).json()["tickets"]
    assert all(t["scanned_at"] is not None for t in after)


async def test_the_door_says_why_it_refuses(
    api: writer_support.WriterApi, database_url: str
) -> None:
    event_id = await api.create_event()
    other_event = await api.create_event()
    order = await buy(api, event_id, "dave", 3)
    refunded_order = await buy(api, event_id, "erin", 1)
    tickets = (await tickets_of(api, "dave", order["order_id"])).json()["tickets"]
    token = tickets[0]["token"]

    # The staff credential: none, wrong, the admin key.
    for staff in (None, "x" * 40, writer_support.WRITER_ADMIN_KEY):
        answer = await scan(api, token, event_id, staff=staff)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["reason"] == "staff_key_invalid"
        assert answer.headers["www-authenticate"].startswith("StaffKey")
    # A fan's bearer token is no staff credential either.
    as_fan = await api.client.post(
        "/v1/tickets/scan",
        headers=api.headers("dave"),
        json={"token": token, "event_id": event_id, "gate": "g"},
    )
    assert as_fan.status_code == 401

    wrong = await scan(api, token, other_event)
    assert wrong.status_code == 409
    error = wrong.json()["error"]
    assert (error["code"], error["ticket_event_id"]) == ("wrong_event", event_id)

    forged = await scan(api, tampered(token), event_id)
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    garbage = await scan(api, "not a ticket", event_id)
    assert garbage.status_code == 403
    assert garbage.json()["error"]["reason"] == "malformed"

    # Validly signed with the writer's own key, but never issued.
    claims = tk.TicketClaims(
        v=1,
        kid="2026-12",
        ticket_id=uuid.uuid4(),
        event_id=uuid.UUID(event_id),
        order_id=uuid.UUID(order["order_id"]),
        seat=tickets[0]["seat"],
        user_id="dave",
        issued_at=1_700_000_000,
    )
    payload = tk.encode_payload(claims)
    never_issued = tk.assemble(payload, CURRENT.sign(tk.SIGNING_CONTEXT + payload))
    unknown = await scan(api, never_issued, event_id)
    assert unknown.status_code == 403
    assert unknown.json()["error"]["code"] == "unknown_ticket"

    # A refunded order's tickets (the order's status is what a refund sets), a voided ticket.
    erin_ticket = (await tickets_of(api, "erin", refunded_order["order_id"])).json()["tickets"][0]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orders SET status = 'refunded' WHERE order_id = %s",
            (refunded_order["order_id"],),
        )
        conn.execute(
            "UPDATE tickets SET status = 'void' WHERE ticket_id = %s", (tickets[1]["ticket_id"],)
        )
        conn.execute(
            "UPDATE tickets SET status = 'refunded' WHERE ticket_id = %s",
            (tickets[2]["ticket_id"],),
        )
    for refused_token, code in (
        (erin_ticket["token"], "refunded"),
        (tickets[1]["token"], "void"),
        (tickets[2]["token"], "refunded"),
    ):
        answer = await scan(api, refused_token, event_id)
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"]["code"] == code

    # Bad bodies: unknown fields, bounds, not JSON.
    for body in (
        {"token": token, "event_id": event_id, "gate": "g", "extra": 1},
        {"token": token, "event_id": event_id, "gate": ""},
        {"token": token, "event_id": event_id, "gate": "g" * 65},
        {"token": "T" * 600, "event_id": event_id, "gate": "g"},
        {"token": token, "event_id": "nope", "gate": "g"},
        {"token": token, "gate": "g"},
    ):
        answer = await api.client.post(
            "/v1/tickets/scan", headers={"X-Staff-Key": STAFF["north-gates"]}, json=body
        )
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"]["code"] == "invalid_request"
    not_json = await api.client.post(
        "/v1/tickets/scan",
        headers={"X-Staff-Key": STAFF["north-gates"], "Content-Type": "application/json"},
        content=b"{",
    )
    assert not_json.status_code == 400
    # None of that used the good ticket up.
    assert (await scan(api, token, event_id)).status_code == 200
