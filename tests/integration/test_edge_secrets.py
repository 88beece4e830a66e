"""Every secret by purpose, against real processes (docs/edge.md, "Secrets"): the writer refuses
fans' writes without the edges' credential (also when another writer forwards them), the edges
send it; the public port wants the CDN's origin secret (health checks excepted); /metrics and the
edges' admin API, under their own key, live on the internal port only; a region's admission
tokens are refused by every other region's edges."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import writer_support
from edge_support import (
    EDGE_ADMIN_KEY,
    EDGE_WRITER_CREDENTIAL,
    EdgeStack,
    fan_headers,
    open_edge_stack,
)
from writer_support import WRITER_ADMIN_KEY, writer_env

from tessera_ops.processes import ServiceProcess, start_writer
from tessera_ops.servers import create_database, drop_database, free_port

# The writer accepts both while a credential rotates ("new,old"); edges send the first.
OLD_CREDENTIAL = "old-edge-writer-credential-" + "o" * 32
WRITER_CREDENTIALS = f"{EDGE_WRITER_CREDENTIAL},{OLD_CREDENTIAL}"
ORIGIN = {"previous": "p" * 40, "current": "c" * 40, "next": "n" * 40}
ORIGIN_HEADER = "X-Origin-Secret"
VIA_CDN = {ORIGIN_HEADER: ORIGIN["current"]}
CREDENTIAL_HEADER = "X-Edge-Credential"


@dataclass
class Secured:
    stack: EdgeStack
    forwarder: ServiceProcess  # a second writer: it forwards the first one's events there
    edge: ServiceProcess  # region-a: origin secret, internal port, credential
    internal_url: str
    edge_b: ServiceProcess  # region-b: credential, no origin secret nor internal port
    bare_edge: ServiceProcess  # region-a, without the credential
    event: str


@pytest.fixture(scope="module")
def secured(
    postgres_admin_url: str, redis_url: str, nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    name = f"t_secrets_{secrets.token_hex(4)}"
    database_url = create_database(postgres_admin_url, name)
    workdir = tmp_path_factory.mktemp("secrets")
    port, forwarder_port = free_port(), free_port()
    try:
        for stack in open_edge_stack(
            database_url,
            redis_url,
            nats_url,
            workdir,
            regionals=1,
            writer_port=port,
            writer_id="w0",
            writer_advertise_url=f"http://127.0.0.1:{port}",
            edge_writer_credential=WRITER_CREDENTIALS,
        ):
            yield _start(stack, workdir, forwarder_port, database_url, redis_url, nats_url)
    finally:
        drop_database(postgres_admin_url, name)


def _start(  # noqa: PLR0917 (the fixture's parts, passed through once)
    stack: EdgeStack,
    workdir: Path,
    forwarder_port: int,
    database_url: str,
    redis_url: str,
    nats_url: str,
) -> Secured:
    forwarder_settings = writer_support.settings(
        database_url,
        redis_url,
        nats_url,
        writer_id="w1",
        writer_advertise_url=f"http://127.0.0.1:{forwarder_port}",
        edge_writer_credential=WRITER_CREDENTIALS,
    )
    forwarder = start_writer(workdir / "w1", writer_env(forwarder_settings), forwarder_port)
    stack.edges.append(forwarder)  # stopped with the stack
    internal_port = free_port()
    edge = stack.start_edge(
        "edge-a",
        TESSERA_REGION="region-a",
        TESSERA_EDGE_WRITER_CREDENTIAL=EDGE_WRITER_CREDENTIAL,
        TESSERA_EDGE_ORIGIN_SECRETS=_json(ORIGIN),
        TESSERA_EDGE_INTERNAL_PORT=str(internal_port),
        TESSERA_ADMIN_KEY=EDGE_ADMIN_KEY,
    )
    edge_b = stack.start_edge(
        "edge-b",
        TESSERA_REGION="region-b",
        TESSERA_EDGE_WRITER_CREDENTIAL=EDGE_WRITER_CREDENTIAL,
        TESSERA_ADMIN_KEY=EDGE_ADMIN_KEY,
    )
    bare_edge = stack.start_edge(
        "edge-bare", TESSERA_REGION="region-a", TESSERA_ADMIN_KEY=EDGE_ADMIN_KEY
    )
    event = stack.create_event()
    stack.wait_seen(event)
    return Secured(
        stack,
        forwarder,
        edge,
        f"http://127.0.0.1:{internal_port}",
        edge_b,
        bare_edge,
        event,
    )


def _json(value: dict[str, str]) -> str:
    return "{" + ",".join(f'"{k}":"{v}"' for k, v in value.items()) + "}"


def hold(
    url: str,
    event: str,
    user: str,
    headers: dict[str, str] | None = None,
    path_suffix: str = "",
) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/events/{event}/holds{path_suffix}",
        headers={**fan_headers(user, secrets.token_hex(8)), **(headers or {})},
        json={"best_available": {"quantity": 1}},
        timeout=30,
    )


def code_of(response: httpx.Response) -> str:
    code: str = response.json()["error"]["code"]
    return code


# --- the writer and the edges' credential ---


def test_the_writer_refuses_fans_writes_without_the_edges_credential(secured: Secured) -> None:
    writer, event = secured.stack.writer.url, secured.event
    for headers in ({}, {CREDENTIAL_HEADER: "x" * 40}, {CREDENTIAL_HEADER: ""}):
        refused = hold(writer, event, "direct", headers)
        assert refused.status_code == 403, refused.text
        assert code_of(refused) == "edge_credential_required"
    # Every spelling Litestar would route, and every fan write, is covered.
    hold_id = "00000000-0000-4000-8000-000000000001"
    for method, path in [
        ("POST", f"/v1/events/{event}/holds/"),
        ("POST", f"/v1//events/{event}/holds"),
        ("POST", f"/v1/events/{event}/orders"),
        ("POST", f"/v1/events/{event}/holds/{hold_id}/extend"),
        ("DELETE", f"/v1/events/{event}/holds/{hold_id}"),
    ]:
        response = httpx.request(
            method, f"{writer}{path}", headers=fan_headers("direct", "k"), json={}, timeout=30
        )
        assert response.status_code == 403, (method, path, response.text)
        assert code_of(response) == "edge_credential_required"
    # With either value of the rotating pair, the write is served.
    for credential in (EDGE_WRITER_CREDENTIAL, OLD_CREDENTIAL):
        held = hold(writer, event, "direct", {CREDENTIAL_HEADER: credential})
        assert held.status_code == 201, held.text
    # Reads, admin, health and metrics need no credential.
    assert httpx.get(f"{writer}/v1/events/{event}", timeout=30).status_code == 200
    assert httpx.get(f"{writer}/healthz", timeout=30).status_code == 200
    assert httpx.get(f"{writer}/metrics", timeout=30).status_code == 200
    admin = httpx.post(
        f"{writer}/v1/admin/events",
        headers={"X-Admin-Key": WRITER_ADMIN_KEY},
        json=writer_support.event_body(),
        timeout=30,
    )
    assert admin.status_code == 201, admin.text


def test_a_forwarded_write_carries_the_credential_to_the_events_writer(secured: Secured) -> None:
    """The second writer does not serve the event: it checks the credential, then forwards the
    write (credential included) to the first, which checks it again and serves it."""
    forwarder, event = secured.forwarder.url, secured.event
    refused = hold(forwarder, event, "relayed")
    assert refused.status_code == 403, refused.text
    assert code_of(refused) == "edge_credential_required"
    held = hold(forwarder, event, "relayed", {CREDENTIAL_HEADER: EDGE_WRITER_CREDENTIAL})
    assert held.status_code == 201, held.text
    mine = httpx.get(
        f"{secured.stack.writer.url}/v1/holds/{held.json()['hold_id']}",
        headers=fan_headers("relayed"),
        timeout=30,
    )
    assert mine.status_code == 200, mine.text


def test_the_edge_sends_its_credential_and_only_it_gets_through(secured: Secured) -> None:
    held = hold(secured.edge.url, secured.event, "via-edge", VIA_CDN)
    assert held.status_code == 201, held.text
    # A fan's own X-Edge-Credential is not passed on: the bare edge has none to send.
    bare = hold(
        secured.bare_edge.url,
        secured.event,
        "via-bare",
        {CREDENTIAL_HEADER: EDGE_WRITER_CREDENTIAL},
    )
    assert bare.status_code == 403, bare.text
    assert code_of(bare) == "edge_credential_required"
    released = httpx.delete(
        f"{secured.edge.url}/v1/events/{secured.event}/holds/{held.json()['hold_id']}",
        headers={**fan_headers("via-edge"), **VIA_CDN},
        timeout=30,
    )
    assert released.status_code == 204, released.text


# --- the origin secret ---


def test_the_public_port_wants_the_origin_secret_but_health_checks_do_not(
    secured: Secured,
) -> None:
    url = f"{secured.edge.url}/v1/events/{secured.event}/seatmap"
    for value in ORIGIN.values():
        answer = httpx.get(url, headers={ORIGIN_HEADER: value}, timeout=30)
        assert answer.status_code == 200, answer.text
    for headers in ({}, {ORIGIN_HEADER: "x" * 40}, {ORIGIN_HEADER: ORIGIN["current"][:-1]}):
        refused = httpx.get(url, headers=headers, timeout=30)
        assert refused.status_code == 403, refused.text
        assert code_of(refused) == "origin_secret_required"
    write = hold(secured.edge.url, secured.event, "no-cdn")
    assert (write.status_code, code_of(write)) == (403, "origin_secret_required")
    for path in ("/healthz", "/readyz"):
        assert httpx.get(f"{secured.edge.url}{path}", timeout=30).status_code == 200, path


# --- the internal port ---


def test_metrics_and_admin_are_on_the_internal_port_only(secured: Secured) -> None:
    edge, internal, event = secured.edge.url, secured.internal_url, secured.event
    room = f"/v1/admin/events/{event}/waiting-room"
    for path in ("/metrics", "/metrics/", room, "/v1//admin/events"):
        public = httpx.get(f"{edge}{path}", headers={**VIA_CDN, "X-Admin-Key": EDGE_ADMIN_KEY})
        assert public.status_code == 404, (path, public.text)
    metrics = httpx.get(f"{internal}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert "tessera_edge_" in metrics.text
    # The edges' admin key, not the writer's.
    writers_key = httpx.get(f"{internal}{room}", headers={"X-Admin-Key": WRITER_ADMIN_KEY})
    assert writers_key.status_code == 401
    configured = httpx.put(
        f"{internal}{room}",
        headers={"X-Admin-Key": EDGE_ADMIN_KEY},
        json={"enabled": False, "rate_per_s": 5},
        timeout=30,
    )
    assert configured.status_code == 200, configured.text
    assert configured.json()["rate_per_s"] == 5
    # Nothing a fan uses is served there; health is, for the internal load balancer.
    fan_route = httpx.get(f"{internal}/v1/events/{event}/seatmap", timeout=30)
    assert fan_route.status_code == 404
    assert code_of(fan_route) == "not_found"
    assert httpx.get(f"{internal}/healthz", timeout=30).status_code == 200


# --- admission tokens bound to their region and event ---


def admitted(url: str, event: str, user: str, headers: dict[str, str]) -> str:
    joined = httpx.post(
        f"{url}/v1/events/{event}/queue", headers={**fan_headers(user), **headers}, timeout=30
    )
    assert joined.status_code in (200, 201), joined.text
    ticket = joined.json()["ticket"]
    deadline = time.monotonic() + 10
    while True:
        status = httpx.get(f"{url}/v1/queue/{ticket}", headers=headers, timeout=30).json()
        if status["state"] == "admitted":
            token: str = status["admission_token"]
            return token
        assert time.monotonic() < deadline, status
        time.sleep(0.1)


def open_room(secured: Secured, event: str) -> None:
    room = f"{secured.internal_url}/v1/admin/events/{event}/waiting-room"
    admin = {"X-Admin-Key": EDGE_ADMIN_KEY}
    configured = httpx.put(room, headers=admin, json={"enabled": True, "rate_per_s": 1_000})
    assert configured.status_code == 200, configured.text
    assert httpx.post(f"{room}/open", headers=admin).status_code == 200


def test_an_admission_is_valid_in_its_region_and_for_its_event_only(secured: Secured) -> None:
    """Both regions' edges share one Redis here, so one room: only the token's region differs."""
    event, other = secured.event, secured.stack.create_event()
    secured.stack.wait_seen(other)
    for gated in (event, other):
        open_room(secured, gated)
    token = admitted(secured.edge.url, event, "roamer", VIA_CDN)
    with_token: dict[str, Any] = {**VIA_CDN, "X-Admission-Token": token}
    elsewhere = hold(secured.edge_b.url, event, "roamer", with_token)
    assert elsewhere.status_code == 403, elsewhere.text
    assert code_of(elsewhere) == "admission_wrong_region"
    other_event = hold(secured.edge.url, other, "roamer", with_token)
    assert (other_event.status_code, code_of(other_event)) == (403, "admission_wrong_event")
    held = hold(secured.edge.url, event, "roamer", with_token)
    assert held.status_code == 201, held.text
    # Region b's own admission is good there.
    token_b = admitted(secured.edge_b.url, event, "roamer", {})
    held_b = hold(secured.edge_b.url, event, "roamer", {"X-Admission-Token": token_b})
    assert held_b.status_code == 201, held_b.text
