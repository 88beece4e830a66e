"""Running an event against a real writer: pause, resume and close its sales (docs/api.md);
the writer enforces the status on holds and checkouts; the sales report, JSON and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import uuid
from typing import Any

import pytest
from writer_support import WRITER_ADMIN_KEY, WriterApi

from tessera import limits
from tessera_ops import cli

pytestmark = pytest.mark.anyio

ADMIN = {"X-Admin-Key": WRITER_ADMIN_KEY}


async def act(api: WriterApi, event_id: str, action: str) -> Any:
    return await api.client.post(f"/v1/admin/events/{event_id}/{action}", headers=ADMIN)


async def test_pause_resume_close_govern_holds_and_checkouts(writer_api: WriterApi) -> None:
    api = writer_api
    event_id = await api.create_event()
    held = await api.hold(event_id, "ann", {"seats": ["ORCH:A:101"]}, key="h-ann")
    assert held.status_code == 201, held.text

    paused = await act(api, event_id, "pause")
    assert paused.status_code == 200, paused.text
    assert paused.json() == {"event_id": event_id, "status": "paused"}
    assert (await act(api, event_id, "pause")).json()["status"] == "paused"  # a retry
    refused = await api.hold(event_id, "bob", {"seats": ["ORCH:A:102"]}, key="h-bob")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "sales_paused"
    # A fan already holding seats may still buy them while sales are paused.
    bought = await api.order("ann", held.json()["hold_id"], "tok_approve", key="o-ann")
    assert bought.status_code == 201, bought.text

    resumed = await act(api, event_id, "resume")
    assert resumed.json()["status"] == "onsale"
    again = await api.hold(event_id, "bob", {"seats": ["ORCH:A:102"]}, key="h-bob-2")
    assert again.status_code == 201, again.text

    assert (await act(api, event_id, "close")).json()["status"] == "closed"
    late = await api.order("bob", again.json()["hold_id"], "tok_approve", key="o-bob")
    assert late.status_code == 403
    assert late.json()["error"]["code"] == "event_closed"
    closed = await api.hold(event_id, "cat", {"seats": ["ORCH:A:103"]}, key="h-cat")
    assert closed.json()["error"]["code"] == "event_closed"
    conflict = await act(api, event_id, "resume")
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "event_status_conflict"


async def test_event_actions_need_the_admin_key_and_a_known_event(writer_api: WriterApi) -> None:
    api = writer_api
    event_id = await api.create_event()
    assert (await api.client.post(f"/v1/admin/events/{event_id}/pause")).status_code == 401
    unknown = await act(api, str(uuid.uuid4()), "pause")
    assert unknown.status_code == 404
    assert (await act(api, "nope", "close")).status_code == 404
    assert (await act(api, event_id, "explode")).status_code in (404, 405)
    # Resuming an event that was never paused is a conflict, not a silent no-op.
    assert (await act(api, event_id, "resume")).status_code == 409


async def buy(api: WriterApi, event_id: str, user: str, seats: list[str]) -> Any:
    hold = await api.hold(event_id, user, {"seats": seats}, key=f"hold-{user}")
    assert hold.status_code == 201, hold.text
    order = await api.order(user, hold.json()["hold_id"], "tok_approve", key=f"order-{user}")
    assert order.status_code == 201, order.text
    return order.json()


async def settled_report(api: WriterApi, path: str, within_s: float = 30.0) -> dict[str, Any]:
    """The report once the settler has given the refund back: compared below with later copies,
    it must not change under them (it did, when a copy was taken mid-settlement)."""
    deadline = time.monotonic() + within_s
    while True:
        answer = await api.client.get(path, headers=ADMIN)
        assert answer.status_code == 200, answer.text
        report: dict[str, Any] = answer.json()
        if report["refunds_pending"] == 0:
            return report
        assert time.monotonic() < deadline, f"the refund is still pending: {report}"
        await asyncio.sleep(0.2)


async def test_the_sales_report_as_json_csv_and_from_the_cli(
    writer_api: WriterApi,
    writer_process: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = writer_api
    event_id = await api.create_event()
    ann = await buy(api, event_id, "ann", ["ORCH:A:101", "ORCH:A:102"])
    cat = await buy(api, event_id, "cat", ["MEZZ:A:101"])
    held = await api.hold(event_id, "bob", {"seats": ["ORCH:B:101"]}, key="hold-bob")
    assert held.status_code == 201
    refund = await api.client.post(f"/v1/admin/orders/{cat['order_id']}/refund", headers=ADMIN)
    assert refund.status_code == 200, refund.text
    path = f"/v1/admin/events/{event_id}/report"
    report = await settled_report(api, path)
    assert (report["sold"], report["held"], report["holds_outstanding"]) == (2, 1, 1)
    assert (report["orders"], report["revenue"]) == (1, ann["amount"])
    assert (report["refunded_orders"], report["refunded_amount"]) == (1, cat["amount"])
    assert report["seats"] == 500 and report["status"] == "scheduled"
    sections = {s["section_id"]: s for s in report["sections"]}
    assert (sections["ORCH"]["sold"], sections["ORCH"]["held"]) == (2, 1)
    assert sections["MEZZ"]["sold"] == 0  # refunded: back on sale
    assert sum(t["sold"] for t in report["tiers"]) == 2
    assert sum(t["revenue"] for t in report["tiers"]) == ann["amount"]

    as_csv = await api.client.get(path, headers={**ADMIN, "Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    total = next(row for row in rows if row["scope"] == "event")
    assert (int(total["sold"]), int(total["revenue"])) == (2, ann["amount"])
    assert int(total["refunded_amount"]) == cat["amount"]
    assert {row["id"] for row in rows if row["scope"] == "section"} == set(sections)
    assert (await api.client.get(path, headers=ADMIN, params={"format": "csv"})).text == (
        as_csv.text
    )

    bad = await api.client.get(path, headers=ADMIN, params={"format": "xml"})
    assert bad.status_code == 422
    assert (await api.client.get(path)).status_code == 401
    unknown = await api.client.get(f"/v1/admin/events/{uuid.uuid4()}/report", headers=ADMIN)
    assert unknown.status_code == 404

    monkeypatch.setenv("TESSERA_ADMIN_KEY", WRITER_ADMIN_KEY)
    base = ["report", "--event", event_id, "--writer-url", writer_process.url]
    assert await asyncio.to_thread(cli.main, [*base, "--csv"]) == 0
    assert capsys.readouterr().out == as_csv.text
    assert await asyncio.to_thread(cli.main, [*base, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report
    assert await asyncio.to_thread(cli.main, base) == 0
    assert f"revenue {ann['amount']} USD" in capsys.readouterr().out
    missing = ["report", "--event", str(uuid.uuid4()), "--writer-url", writer_process.url]
    assert await asyncio.to_thread(cli.main, missing) == 2


async def test_an_event_changes_before_its_onsale_only(writer_api: WriterApi) -> None:
    api = writer_api
    event_id = await api.create_event(onsale_at="2099-01-01T00:00:00Z")
    path = f"/v1/admin/events/{event_id}"
    before = (await api.client.get(f"/v1/events/{event_id}")).json()
    orch_a = next(r for s in before["sections"] for r in s["rows"] if s["section_id"] == "ORCH")
    tier = orch_a["price_tier"]

    for bad in (
        {},
        {"prices": {"NOPE": 100}},
        {"hold_ttl_s": 0},
        {"per_user_limit": limits.per_user_limit_max + 1},
        {"onsale_at": "0001-01-01T00:00:00Z"},
        {"colour": "red"},
        {"prices": {tier: -1}},
    ):
        refused = await api.client.patch(path, headers=ADMIN, json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "invalid_request"
    assert (await api.client.patch(path, json={"name": "x"})).status_code == 401
    unknown = await api.client.patch(
        f"/v1/admin/events/{uuid.uuid4()}", headers=ADMIN, json={"name": "x"}
    )
    assert unknown.status_code == 404

    changed = await api.client.patch(
        path,
        headers=ADMIN,
        json={
            "name": "Moved night",
            "hold_ttl_s": 300,
            "per_user_limit": 2,
            "fan_cancel_window_s": 60,
            "prices": {tier: 20_000},
        },
    )
    assert changed.status_code == 200, changed.text
    document = (await api.client.get(f"/v1/events/{event_id}")).json()
    assert changed.json() == document
    assert (document["name"], document["hold_ttl_s"], document["per_user_limit"]) == (
        "Moved night",
        300,
        2,
    )
    assert next(t for t in document["price_tiers"] if t["id"] == tier)["price"] == 20_000
    early = await api.hold(event_id, "ann", {"seats": ["ORCH:A:101"]}, key="early")
    assert early.json()["error"]["code"] == "not_on_sale"

    # Moving the onsale into the past opens it, at the new prices and limit; then it is fixed.
    opened = await api.client.patch(path, headers=ADMIN, json={"onsale_at": "2020-01-01T00:00:00Z"})
    assert opened.status_code == 200, opened.text
    held = await api.hold(event_id, "ann", {"seats": ["ORCH:A:101", "ORCH:A:102"]}, key="h")
    assert held.status_code == 201, held.text
    assert held.json()["amount"] == 2 * 20_000
    over = await api.hold(event_id, "ann", {"seats": ["ORCH:A:103"]}, key="h2")
    assert over.json()["error"]["code"] == "limit_exceeded"
    late = await api.client.patch(path, headers=ADMIN, json={"name": "Too late"})
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "event_already_on_sale"
