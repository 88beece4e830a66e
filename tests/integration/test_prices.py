"""Prices before a purchase (issue 16 item 1), against a real writer on PostgreSQL, Valkey and
NATS: the event document gives every seat its tier (per row, with per-seat overrides) and the
currency's exponent; a hold's answer carries what it costs; events in a currency without an
exponent known to the kernel, or in mixed currencies, are refused."""

from __future__ import annotations

from typing import Any

import pytest
from writer_support import WRITER_ADMIN_KEY, event_body

pytestmark = pytest.mark.anyio


def priced_venue(currency: str, front: int, back: int, limited: int) -> dict[str, Any]:
    """Two rows: A at `front` with seat 3 re-priced `limited`; B at `back`; C unpriced."""
    return {
        "name": "Priced room",
        "price_tiers": [
            {"id": "F", "name": "Front", "price_minor": front, "currency": currency},
            {"id": "B", "name": "Back", "price_minor": back, "currency": currency},
            {"id": "L", "name": "Limited view", "price_minor": limited, "currency": currency},
        ],
        "sections": [
            {
                "id": "S",
                "name": "Stalls",
                "rows": [
                    {"id": "A", "seats": 6, "rank": 1, "price_tier": "F",
                     "seat_price_tiers": {"3": "L"}},
                    {"id": "B", "seats": 6, "rank": 2, "price_tier": "B"},
                    {"id": "C", "seats": 2, "rank": 3},
                ],
            }
        ],
    }  # fmt: skip


# What each seat of `priced_venue("EUR", 4_500, 2_500, 1_000)` costs.
PRICES = {
    **{f"S:A:{n}": 4_500 for n in range(1, 7)},
    "S:A:3": 1_000,
    **{f"S:B:{n}": 2_500 for n in range(1, 7)},
    **{f"S:C:{n}": 0 for n in range(1, 3)},
}


async def test_the_event_document_gives_every_seat_its_tier(writer_api: Any) -> None:
    event = await writer_api.create_event(venue=priced_venue("EUR", 4_500, 2_500, 1_000))
    document = (await writer_api.client.get(f"/v1/events/{event}")).json()
    assert document["currency"] == "EUR"
    assert document["currency_exponent"] == 2
    assert {t["id"]: t["price"] for t in document["price_tiers"]} == {
        "F": 4_500,
        "B": 2_500,
        "L": 1_000,
    }
    rows = document["sections"][0]["rows"]
    assert [row["price_tier"] for row in rows] == ["F", "B", None]
    assert rows[0]["seat_price_tiers"] == {"3": "L"}
    assert "seat_price_tiers" not in rows[1]  # left out where no seat differs


async def test_a_hold_answer_says_what_it_costs(writer_api: Any) -> None:
    event = await writer_api.create_event(venue=priced_venue("EUR", 4_500, 2_500, 1_000))
    seats = ["S:A:2", "S:A:3", "S:B:1", "S:C:1"]  # front, limited, back, unpriced
    held = await writer_api.hold(event, "pia", {"seats": seats}, "p1")
    assert held.status_code == 201, held.text
    answer = held.json()
    assert (answer["amount"], answer["currency"]) == (4_500 + 1_000 + 2_500, "EUR")
    hold_id = answer["hold_id"]

    again = await writer_api.client.get(f"/v1/holds/{hold_id}", headers=writer_api.headers("pia"))
    assert (again.json()["amount"], again.json()["currency"]) == (8_000, "EUR")
    extended = await writer_api.extend("pia", hold_id, "p2")
    assert extended.status_code == 200, extended.text
    assert (extended.json()["amount"], extended.json()["extended"]) == (8_000, True)

    # Best available is priced the same way, and the order charges what the hold said.
    best = await writer_api.hold(event, "ray", {"best_available": {"quantity": 2}}, "r1")
    assert best.status_code == 201, best.text
    assert best.json()["amount"] == sum(PRICES[seat] for seat in best.json()["seats"])
    order = await writer_api.order("ray", best.json()["hold_id"], "tok_approve", "r2")
    assert order.status_code == 201, order.text
    assert (order.json()["amount"], order.json()["currency"]) == (best.json()["amount"], "EUR")

    # A hold that has ended is read from the database and still priced.
    released = await writer_api.release("pia", hold_id)
    assert released.status_code == 204
    ended = await writer_api.client.get(f"/v1/holds/{hold_id}", headers=writer_api.headers("pia"))
    assert (ended.json()["status"], ended.json()["amount"]) == ("released", 8_000)


async def test_yen_has_no_minor_unit(writer_api: Any) -> None:
    event = await writer_api.create_event(venue=priced_venue("JPY", 12_000, 8_000, 5_000))
    document = (await writer_api.client.get(f"/v1/events/{event}")).json()
    assert (document["currency"], document["currency_exponent"]) == ("JPY", 0)
    held = await writer_api.hold(event, "yui", {"seats": ["S:A:1", "S:B:2"]}, "y1")
    assert held.status_code == 201, held.text
    assert (held.json()["amount"], held.json()["currency"]) == (20_000, "JPY")  # ¥20,000


async def test_three_decimal_currencies_keep_their_exponent(writer_api: Any) -> None:
    event = await writer_api.create_event(venue=priced_venue("KWD", 15_250, 9_000, 4_000))
    document = (await writer_api.client.get(f"/v1/events/{event}")).json()
    assert (document["currency"], document["currency_exponent"]) == ("KWD", 3)


@pytest.mark.parametrize(
    ("currencies", "message"),
    [
        (("XXY", "XXY", "XXY"), "currency 'XXY' is not accepted"),
        (("EUR", "USD", "EUR"), "price tiers mix currencies (EUR, USD)"),
    ],
)
async def test_events_in_unknown_or_mixed_currencies_are_refused(
    writer_api: Any, currencies: tuple[str, str, str], message: str
) -> None:
    venue = priced_venue("EUR", 1, 2, 3)
    for tier, currency in zip(venue["price_tiers"], currencies, strict=True):
        tier["currency"] = currency
    answer = await writer_api.client.post(
        "/v1/admin/events", headers={"X-Admin-Key": WRITER_ADMIN_KEY}, json=event_body(venue)
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_request"
    assert message in error["message"]
