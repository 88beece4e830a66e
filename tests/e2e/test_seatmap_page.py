"""The seat-map page (edge/static/, docs/web-page.md) in headless Chromium, against real processes:
a writer, two read nodes and an edge with dev tokens, selling the 70,000-seat demo stadium.

The page must draw seats sold before it opened as taken, show every price tier and the price of a
selection before a hold, take a fan through the waiting room to a hold with a countdown, an
extension and a checkout (a declined card first), select seats with the keyboard alone, draw the
fan's seats as theirs, show another client's purchase within a second and a friend's seats as a
friend's, and pass axe-core's accessibility rules. A second event, in yen and "under attack",
makes the page solve the edge's proof of work in its Web Worker. What the page drew is read back
from the canvas pixels (`window.tessera.seatState`). A screenshot is kept in
tests/artifacts/seatmap-page.png.

Debian's `chromium` is required (`apt-get install -y chromium`); Playwright drives it, its own
browser downloads are never used. Without /usr/bin/chromium the test is skipped. axe-core comes
from npm (tests/e2e/package.json; `make setup-dev` runs `npm ci --prefix tests/e2e`).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from edge_support import EdgeStack, fan_headers
from playwright.async_api import ConsoleMessage, Page, async_playwright, expect
from writer_support import WRITER_ADMIN_KEY

from edge import pow as proof_of_work
from tessera_ops.processes import ServiceProcess

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
STADIUM = ROOT / "tessera_ops" / "venues" / "stadium-70k.json"
SCREENSHOT = ROOT / "tests" / "artifacts" / "seatmap-page.png"
AXE = ROOT / "tests" / "e2e" / "node_modules" / "axe-core" / "axe.min.js"
# axe-core's impacts that fail the test.
AXE_FAILING = ("serious", "critical")
# The lobby is polled every 30 s (edge/static/queue.mjs): admission after the draw takes that.
LOBBY_POLL_S = 30
# A purchase by someone else must show on the page within this (from the writer's 201).
LIVE_WITHIN_S = 1.0

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium: apt-get install -y chromium"
    ),
]


@pytest.fixture(scope="module")
def edge(edge_stack: EdgeStack) -> ServiceProcess:
    return edge_stack.start_edge("edge-page", TESSERA_DEV_TOKENS="true")


@pytest.fixture
async def client(edge: ServiceProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=edge.url, timeout=30) as http:
        yield http


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            # Money is formatted in the browser's locale: pin it.
            yield await browser.new_page(viewport={"width": 1400, "height": 1000}, locale="en-US")
        finally:
            await browser.close()


async def room(client: httpx.AsyncClient, event: str, action: str = "", **body: Any) -> None:
    path = f"/v1/admin/events/{event}/waiting-room{action}"
    admin = {"X-Admin-Key": WRITER_ADMIN_KEY}
    if action:
        answer = await client.post(path, headers=admin)
    else:
        answer = await client.put(path, headers=admin, json=body)
    assert answer.status_code == 200, answer.text


async def admission(client: httpx.AsyncClient, event: str, user: str) -> str:
    """Join the event's waiting room and wait for the admission token."""
    joined = (await client.post(f"/v1/events/{event}/queue", headers=fan_headers(user))).json()
    deadline = time.monotonic() + 10
    while joined["state"] != "admitted":
        assert time.monotonic() < deadline, joined
        joined = (await client.get(f"/v1/queue/{joined['ticket']}")).json()
    token: str = joined["admission_token"]
    return token


async def hold(
    client: httpx.AsyncClient, event: str, user: str, seats: list[str], token: str | None
) -> str:
    headers = fan_headers(user, secrets.token_hex(8))
    if token is not None:
        headers["X-Admission-Token"] = token
    held = await client.post(f"/v1/events/{event}/holds", json={"seats": seats}, headers=headers)
    assert held.status_code == 201, held.text
    hold_id: str = held.json()["hold_id"]
    return hold_id


async def buy(
    client: httpx.AsyncClient, event: str, user: str, hold_id: str, token: str | None
) -> None:
    headers = fan_headers(user, secrets.token_hex(8))
    if token is not None:
        headers["X-Admission-Token"] = token
    body = {"hold_id": hold_id, "payment_token": "tok_approve"}
    bought = await client.post(f"/v1/events/{event}/orders", json=body, headers=headers)
    assert bought.status_code == 201, bought.text


async def befriend(client: httpx.AsyncClient, one: str, other: str) -> None:
    for me, friend in ((one, other), (other, one)):
        answer = await client.put(f"/v1/me/friends/{friend}", headers=fan_headers(me))
        assert answer.status_code == 200, answer.text


def console_errors(message: ConsoleMessage) -> list[str]:
    """Console errors (a Content-Security-Policy violation is one), but not the browser's notes
    on HTTP errors: the declined card is a 402 on purpose."""
    if message.type == "error" and "Failed to load resource" not in message.text:
        return [message.text]
    return []


async def drawn(page: Page, seat: str) -> str | None:
    state: str | None = await page.evaluate("(id) => window.tessera.seatState(id)", seat)
    return state


async def middle(page: Page, seats: list[str], count: int) -> list[str]:
    """`count` seats drawn as available, from the middle of `seats`."""
    free = [seat for seat in seats if await drawn(page, seat) == "available"]
    start = max(0, len(free) // 2 - count // 2)
    assert len(free) >= start + count, free
    return free[start : start + count]


async def click(page: Page, seat: str, where: str) -> None:
    """Click the seat where the page drew it (`overview` or `detail`)."""
    await page.locator(f"#{where}").scroll_into_view_if_needed()
    point = await page.evaluate(
        "([id, where]) => window.tessera.seatPoint(id, where)", [seat, where]
    )
    assert point is not None, (seat, where)
    await page.mouse.click(point["x"], point["y"])


def seat_prices(details: dict[str, Any]) -> dict[str, int]:
    """Every seat's price in minor units, from the event document's tiers."""
    tiers = {tier["id"]: tier["price"] for tier in details["price_tiers"]}
    prices = {}
    for section in details["sections"]:
        for row in section["rows"]:
            overrides = row.get("seat_price_tiers", {})
            for seat in row["seats"]:
                tier = overrides.get(seat.split(":")[2], row["price_tier"])
                prices[seat] = 0 if tier is None else tiers[tier]
    return prices


def dollars(minor: int) -> str:
    return f"${minor // 100:,}.{minor % 100:02d}"


async def focused_label(page: Page) -> str:
    label: str = await page.evaluate("() => document.activeElement.getAttribute('aria-label')")
    return label


async def accessibility_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: run `make setup-dev` (npm ci --prefix tests/e2e)")
    # Evaluated through the DevTools protocol: the page's Content-Security-Policy (scripts from
    # 'self' only) stays on and is not loosened for the test.
    await page.evaluate(AXE.read_text("utf-8"))
    results = await page.evaluate("() => axe.run(document)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results["violations"]
        if v["impact"] in AXE_FAILING
    ]


async def until_drawn(page: Page, seats: list[str], states: list[str], timeout_s: float) -> None:
    await page.wait_for_function(
        "([ids, states]) => ids.every((id) => states.includes(window.tessera.seatState(id)))",
        arg=[seats, states],
        polling="raf",
        timeout=timeout_s * 1000,
    )


async def test_the_seat_map_page_sells_and_updates_live(
    edge_stack: EdgeStack, edge: ServiceProcess, client: httpx.AsyncClient, page: Page
) -> None:
    event = edge_stack.create_event(json.loads(STADIUM.read_bytes()))
    edge_stack.wait_seen(event)
    details = (await client.get(f"/v1/events/{event}")).json()
    rows = {
        (section["section_id"], r): row["seats"]
        for section in details["sections"]
        for r, row in enumerate(section["rows"])
    }
    # Sold before the page opens (the room is still off): five seats in section 101, row 5.
    sold = rows["101", 4][10:15]
    await buy(client, event, "early", await hold(client, event, "early", sold, None), None)
    await befriend(client, "alice", "bob")
    share = await client.put("/v1/me/sharing", headers=fan_headers("bob"), json={"share": True})
    assert share.status_code == 200, share.text
    await room(client, event, enabled=True, rate_per_s=1_000)  # pending: nobody is admitted

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.extend(console_errors(message)))
    await page.goto(f"{edge.url}/events/{event}")
    await page.wait_for_function("() => window.tessera && window.tessera.ready")
    await page.wait_for_function("() => window.tessera.live")
    assert [await drawn(page, seat) for seat in sold] == ["taken"] * 5
    assert await drawn(page, rows["101", 4][1]) == "available"
    # Every price tier in the legend, before anyone signs in.
    prices = seat_prices(details)
    await expect(page.locator("#prices li")).to_have_count(len(details["price_tiers"]))
    for tier in details["price_tiers"]:
        await expect(page.locator("#prices")).to_contain_text(
            f"{tier['name']}: {dollars(tier['price'])}"
        )

    # Sign in, queue, get admitted when the room opens.
    await page.fill("#user", "alice")
    await page.click("#signin-button")
    await expect(page.locator("#who")).to_have_text("Signed in as alice.")
    await page.click("#join")
    await expect(page.locator("#queue-status")).to_contain_text("Waiting")
    await expect(page.locator("#queue-status")).to_contain_text("next check in 30 s")
    await room(client, event, "/open")
    await expect(page.locator("#queue-status")).to_have_text(
        "Admitted: you can hold seats.", timeout=(LOBBY_POLL_S + 10) * 1000
    )

    # Pick seats by hand: a section on the overview, then seats in its detail view; release.
    await click(page, rows["102", 0][0], "overview")
    await expect(page.locator("#section-name")).to_have_text("Section Lower 102")
    await click(page, rows["101", 0][0], "overview")
    await expect(page.locator("#section-name")).to_have_text("Section Lower 101")
    picked = await middle(page, rows["101", 6], 2)
    for seat in picked:
        await click(page, seat, "detail")
    await until_drawn(page, picked, ["selected"], 2)
    # The price of the selection before holding, and what the hold answer says it costs.
    picked_total = sum(prices[seat] for seat in picked)
    await expect(page.locator("#selection")).to_contain_text(f"total {dollars(picked_total)}")
    await page.click("#hold-selected")
    await until_drawn(page, picked, ["held"], 2)
    held = await page.evaluate("() => window.tessera.hold")
    assert (held["amount"], held["currency"]) == (picked_total, "USD")
    await expect(page.locator("#hold")).to_contain_text(f"total {dollars(picked_total)}")
    await page.click("#release")
    await expect(page.locator("#result")).to_have_text("Released.")
    await until_drawn(page, picked, ["available"], 2)

    # The keyboard alone: Tab reaches the section's seats (one tab stop), the arrows move, Enter
    # selects and Space unselects; each seat is named with its row, price and state.
    await page.focus("#section-picker")
    await page.keyboard.press("Tab")
    seat_name = re.compile(
        r"Section Lower 101, row (\w+), seat (\w+), \$[\d,]+\.\d\d \(.+\), (available|taken)"
    )
    first = seat_name.fullmatch(await focused_label(page))
    assert first is not None, await focused_label(page)
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowRight")
    moved = seat_name.fullmatch(await focused_label(page))
    assert moved is not None and moved[1] != first[1], (first, moved)
    chosen = f"101:{moved[1]}:{moved[2]}"
    if moved[3] == "taken":  # sold or held by someone: along the row to an available seat
        for _ in range(40):
            await page.keyboard.press("ArrowRight")
            moved = seat_name.fullmatch(await focused_label(page))
            assert moved is not None
            chosen = f"101:{moved[1]}:{moved[2]}"
            if moved[3] == "available":
                break
    await page.keyboard.press("Enter")
    # Names follow the drawing (the next animation frame).
    focused = page.locator(":focus")
    await expect(focused).to_have_attribute("aria-label", re.compile(", selected$"))
    await until_drawn(page, [chosen], ["selected"], 2)
    await expect(page.locator("#selection")).to_contain_text(
        f"Selected: {chosen} ({dollars(prices[chosen])}) · total {dollars(prices[chosen])}"
    )
    await page.keyboard.press("Space")
    await until_drawn(page, [chosen], ["available"], 2)
    await expect(focused).to_have_attribute("aria-label", re.compile(", available$"))

    # Best available, a countdown, a declined card (the hold stays), then a good one.
    await page.select_option("#quantity", "2")
    await page.click("#best")
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d left to buy$"))
    mine: list[str] = await page.evaluate("() => window.tessera.hold.seats")
    assert len(mine) == 2
    await until_drawn(page, mine, ["held"], 2)
    mine_total = sum(prices[seat] for seat in mine)
    await expect(page.locator("#hold")).to_contain_text(f"total {dollars(mine_total)}.")
    # Extend once: the hold says so and the button is done.
    await page.click("#extend")
    await expect(page.locator("#hold")).to_contain_text(f"total {dollars(mine_total)} (extended)")
    await expect(page.locator("#extend")).to_be_disabled()
    assert (await page.evaluate("() => window.tessera.hold"))["extended"] is True
    await page.select_option("#payment", "tok_decline")
    await page.click("#buy")
    await expect(page.locator("#result")).to_contain_text("payment_declined")
    await page.select_option("#payment", "tok_approve")
    await page.click("#buy")
    await expect(page.locator("#result")).to_contain_text("Bought")
    receipt = await page.locator("#result").inner_text()
    assert all(seat in receipt for seat in mine), receipt
    await until_drawn(page, mine, ["bought"], 2)

    # Another client buys two rows behind: on the page within a second of the writer's answer
    # to the hold (the moment the seats stop being available; the order changes nothing a fan
    # sees).
    where = {seat: key for key, seats in rows.items() for seat in seats}
    section, front = where[mine[0]]
    others = await middle(page, rows[section, front + 2], 3)
    carol = await admission(client, event, "carol")
    carol_hold = await hold(client, event, "carol", others, carol)
    answered = time.monotonic()
    await until_drawn(page, others, ["taken"], 5)
    latency = time.monotonic() - answered
    await buy(client, event, "carol", carol_hold, carol)
    assert latency < LIVE_WITHIN_S, f"shown {latency:.3f} s after the writer's 201"

    # A friend who shares: their seats are drawn as a friend's.
    friends = await middle(page, rows[section, front + 3], 2)
    bob = await admission(client, event, "bob")
    await buy(client, event, "bob", await hold(client, event, "bob", friends, bob), bob)
    await until_drawn(page, friends, ["friend"], 10)
    await expect(page.locator("#friends-list")).to_contain_text("bob")
    assert [await drawn(page, seat) for seat in sold + others] == ["taken"] * 8
    assert errors == []
    assert await accessibility_violations(page) == []

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOT, full_page=True)


def yen_room() -> dict[str, Any]:
    """A small hall priced in yen (no minor unit): front rows 12,000, the rest 8,000."""
    tiers = [
        {"id": "S", "name": "S seat", "price_minor": 12_000, "currency": "JPY"},
        {"id": "A", "name": "A seat", "price_minor": 8_000, "currency": "JPY"},
    ]
    rows = [
        {"id": row, "seats": 12, "rank": rank, "price_tier": "S" if rank < 2 else "A"}
        for rank, row in enumerate("ABCD")
    ]
    sections = [
        {"id": "1F", "name": "Floor 1F", "rows": rows},
        {"id": "2F", "name": "Balcony 2F", "rows": rows},
    ]
    return {"name": "Yen hall", "price_tiers": tiers, "sections": sections}


async def test_the_page_solves_proof_of_work_and_prices_in_yen(
    edge_stack: EdgeStack, edge: ServiceProcess, client: httpx.AsyncClient, page: Page
) -> None:
    event = edge_stack.create_event(yen_room())
    edge_stack.wait_seen(event)
    # Under attack: a join without a solved challenge is refused (the page must solve one).
    await room(client, event, enabled=True, rate_per_s=1_000, under_attack=True, pow_difficulty=16)
    await room(client, event, "/open")
    refused = await client.post(f"/v1/events/{event}/queue", headers=fan_headers("dora"))
    assert refused.json()["error"]["code"] == "proof_of_work_required", refused.text

    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.extend(console_errors(message)))
    await page.goto(f"{edge.url}/events/{event}")
    await page.wait_for_function("() => window.tessera && window.tessera.ready")
    await expect(page.locator("#prices")).to_contain_text("S seat: ¥12,000")
    await expect(page.locator("#prices")).to_contain_text("A seat: ¥8,000")

    # The page's own modules, checked in the page: the polling rule and the SHA-256 it solves
    # with (against Python's, across block boundaries), and money in each exponent.
    texts = ["", "abc", "é" * 40, "x" * 55, "x" * 56, "y" * 64, "z" * 130]
    probes = await page.evaluate(
        """async (texts) => {
            const { queuePollMs } = await import('/static/queue.mjs');
            const { sha256Hex, solve } = await import('/static/pow.mjs');
            const progress = [];
            const onProgress = (tried) => { progress.push(tried); };
            const solved = solve('probe', 14, { every: 1024, progress: onProgress });
            const { formatMoney } = await import('/static/money.mjs');
            return {
                polls: [null, 10001, 10000, 3].map((p) => queuePollMs({position: p, eta_s: null})),
                soon: queuePollMs({position: 20, eta_s: 0.2}),
                hashes: texts.map(sha256Hex),
                solved,
                progress,
                money: [formatMoney(4500, 'EUR', 2), formatMoney(4500, 'JPY', 0),
                        formatMoney(4500, 'KWD', 3)],
            };
        }""",
        texts,
    )
    assert probes["polls"] == [30_000, 30_000, 5_000, 5_000]
    assert probes["soon"] == 1_000
    assert probes["hashes"] == [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    # The solver finds what the edge accepts, and reports its progress as it goes.
    assert proof_of_work.meets("probe", probes["solved"], 14)
    assert probes["solved"] == proof_of_work.solve("probe", 14)
    done = int(probes["solved"]) // 1024
    assert probes["progress"] == [1024 * n for n in range(1, done + 1)]
    assert probes["money"] == [
        "€45.00",
        "¥4,500",
        "KWD\xa04.500",
    ]  # a no-break space, as Intl writes it

    await page.fill("#user", "dora")
    await page.click("#signin-button")
    await expect(page.locator("#who")).to_have_text("Signed in as dora.")
    await page.click("#join")
    await expect(page.locator("#queue-status")).to_have_text(
        "Admitted: you can hold seats.", timeout=60_000
    )
    await expect(page.locator("#pow-progress")).to_be_hidden()

    await page.select_option("#quantity", "2")
    await page.click("#best")
    await expect(page.locator("#countdown")).to_have_text(re.compile(r"^\d+:\d\d left to buy$"))
    held = await page.evaluate("() => window.tessera.hold")
    assert (held["amount"], held["currency"]) == (24_000, "JPY")  # two front seats: no ÷100
    await expect(page.locator("#hold")).to_contain_text("total ¥24,000")
    await page.click("#buy")
    await expect(page.locator("#result")).to_contain_text("for ¥24,000")
    assert errors == []
    assert await accessibility_violations(page) == []
