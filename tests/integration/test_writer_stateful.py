"""A hypothesis state machine drives the writer (in process, real servers) with holds, releases,
expiries, extensions and checkouts, against a model built on the plain-Python seat model; after
every step the database is audited and compared with the model, and the writer's seat map too."""

from __future__ import annotations

import time
import uuid
from typing import Any

import hypothesis.strategies as st
import psycopg
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from litestar.testing import TestClient
from writer_support import WRITER_ADMIN_KEY, WriterApi, event_body

import tessera_core as tc
from global_writer.app import create_app
from global_writer.runtime import now_ms
from tessera_ops.audit import audit
from tessera_ops.seat_model import SectionModel

SEATS = 24
LIMIT = 5
USERS = ["u0", "u1", "u2"]
ROOM = {
    "name": "Room",
    "sections": [
        {
            "id": "S",
            "name": "Stalls",
            "rows": [
                {"id": "A", "seats": 8, "rank": 2},
                {"id": "B", "seats": 8, "rank": 1},
                {"id": "C", "seats": 8, "rank": 3},
            ],
        }
    ],
}


def seat_id(index: int) -> str:
    row = "ABC"[index // 8]
    return f"S:{row}:{index % 8 + 1}"


class WriterMachine(RuleBasedStateMachine):
    client: TestClient[Any]
    database_url: str
    writer: Any
    holds = Bundle("holds")

    @initialize()
    def open_event(self) -> None:
        response = self.client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(ROOM, per_user_limit=LIMIT),
        )
        assert response.status_code == 201, response.text
        self.event = response.json()["event_id"]
        self.model = SectionModel([8, 8, 8], [2, 1, 3])
        self.owner: dict[
            str, tuple[str, list[int], str, bool]
        ] = {}  # hold → user, seats, status, extended

    def key(self) -> str:
        # Unique across examples: the database (and its keys) outlives each example.
        return uuid.uuid4().hex

    def headers(self, user: str, key: bool = True) -> dict[str, str]:
        api = WriterApi(None, None)  # type: ignore[arg-type]
        return api.headers(user, self.key() if key else None)

    def user_seats(self, user: str) -> int:
        return sum(
            len(seats)
            for owner, seats, status, _ in self.owner.values()
            if owner == user and status in ("active", "purchased")
        )

    def record(self, response: Any, user: str) -> str:
        hold = response.json()
        seats = [
            ["ABC".index(s.split(":")[1]) * 8 + int(s.split(":")[2]) - 1 for s in hold["seats"]]
        ][0]
        self.model.apply("hold", seats)
        self.owner[hold["hold_id"]] = (user, seats, "active", False)
        hold_id: str = hold["hold_id"]
        return hold_id

    @rule(
        target=holds,
        user=st.sampled_from(USERS),
        seats=st.sets(st.integers(0, SEATS - 1), min_size=1, max_size=3),
    )
    def hold_seats(self, user: str, seats: set[int]) -> str:
        wanted = sorted(seats)
        response = self.client.post(
            f"/v1/events/{self.event}/holds",
            headers=self.headers(user),
            json={"seats": [seat_id(i) for i in wanted]},
        )
        if self.user_seats(user) + len(wanted) > LIMIT:
            assert response.status_code == 403, response.text
            return "none"
        taken = [seat_id(i) for i in wanted if self.model.states[i] != 0]
        if taken:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["seats"] == taken
            return "none"
        assert response.status_code == 201, response.text
        assert response.json()["seats"] == [seat_id(i) for i in wanted]
        return self.record(response, user)

    @rule(
        target=holds,
        user=st.sampled_from(USERS),
        quantity=st.integers(1, 3),
        adjacent=st.booleans(),
    )
    def hold_best(self, user: str, quantity: int, adjacent: bool) -> str:
        response = self.client.post(
            f"/v1/events/{self.event}/holds",
            headers=self.headers(user),
            json={"best_available": {"quantity": quantity, "adjacent": adjacent}},
        )
        if self.user_seats(user) + quantity > LIMIT:
            assert response.status_code == 403, response.text
            return "none"
        expected = self.model.best_available(quantity, adjacent=adjacent)
        if expected is None:
            assert response.status_code == 409, response.text
            return "none"
        assert response.status_code == 201, response.text
        assert response.json()["seats"] == [seat_id(i) for i in expected]
        return self.record(response, user)

    @rule(hold=holds)
    def release(self, hold: str) -> None:
        if hold == "none":
            return
        user, seats, status, extended = self.owner[hold]
        response = self.client.delete(
            f"/v1/events/{self.event}/holds/{hold}", headers=self.headers(user, key=False)
        )
        if status == "purchased":
            assert response.status_code == 409
            return
        assert response.status_code == 204, response.text
        if status == "active":
            self.model.apply("release", seats)
            self.owner[hold] = (user, seats, "released", extended)

    @rule(hold=holds, token=st.sampled_from(["tok_approve", "tok_decline"]))
    def checkout(self, hold: str, token: str) -> None:
        if hold == "none":
            return
        user, seats, status, extended = self.owner[hold]
        response = self.client.post(
            f"/v1/events/{self.event}/orders",
            headers=self.headers(user),
            json={"hold_id": hold, "payment_token": token},
        )
        if status != "active":
            assert response.status_code == 409, response.text
        elif token == "tok_decline":
            assert response.status_code == 402, response.text
        else:
            assert response.status_code == 201, response.text
            assert response.json()["seats"] == [seat_id(i) for i in seats]
            self.model.apply("sell", seats)
            self.owner[hold] = (user, seats, "purchased", extended)

    @rule(hold=holds)
    def extend(self, hold: str) -> None:
        if hold == "none":
            return
        user, seats, status, extended = self.owner[hold]
        response = self.client.post(
            f"/v1/events/{self.event}/holds/{hold}/extend", headers=self.headers(user)
        )
        if status == "active" and not extended:
            assert response.status_code == 200, response.text
            self.owner[hold] = (user, seats, status, True)
        else:
            assert response.status_code == 409, response.text

    @rule(hold=holds)
    def expire(self, hold: str) -> None:
        """Time travel: the hold's deadline moves into the past, in the database (which decides)
        and in the writer's wheel (which wakes the reaper); the reaper must release it."""
        if hold == "none" or self.owner[hold][2] != "active":
            return
        user, seats, _, extended = self.owner[hold]
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE holds SET expires_at = now() - interval '1 second' WHERE hold_id = %s",
                (hold,),
            )
        wheel = self.writer.events[uuid.UUID(self.event)].runtime.wheel
        self.client.blocking_portal.call(wheel.schedule, hold, now_ms())
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            view = self.client.get(
                f"/v1/holds/{hold}", headers=self.headers(user, key=False)
            ).json()
            with psycopg.connect(self.database_url) as conn:
                claims = conn.execute(
                    "SELECT count(*) FROM seat_claims WHERE hold_id = %s", (hold,)
                ).fetchone()
            if view["status"] == "expired" and claims == (0,):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the reaper did not release an expired hold within 5 s")
        self.model.apply("release", seats)
        self.owner[hold] = (user, seats, "expired", extended)

    @invariant()
    def database_matches_the_model(self) -> None:
        if not hasattr(self, "event"):
            return
        report = audit(self.database_url)
        assert report.ok, report.summary()
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT seat_index, state FROM seat_claims WHERE event_id = %s ORDER BY 1",
                (self.event,),
            ).fetchall()
        expected = [
            (i, "held" if s == 1 else "sold")
            for i, s in enumerate(self.model.states)
            if s in (1, 2)
        ]
        assert rows == expected
        snapshot = self.client.get(f"/v1/events/{self.event}/sections/S/snapshot")
        seat_map = tc.SeatMap.decode(snapshot.content)
        assert [seat_map.is_available(i) for i in range(SEATS)] == self.model.availability()


def test_writer_state_machine(writer_settings: Any, database_url: str) -> None:
    app = create_app(writer_settings)
    with TestClient(app) as client:
        WriterMachine.client = client
        WriterMachine.writer = app.state.writer
        WriterMachine.database_url = database_url
        run_state_machine_as_test(
            WriterMachine,
            settings=settings(
                max_examples=12,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
