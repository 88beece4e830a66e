"""Helpers for tests of the global writer (importable by name: `tests/` is on pytest's
pythonpath, see pyproject.toml)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from global_writer.settings import ENV_FIELDS, Settings
from tessera.auth import mint_token

WRITER_ADMIN_KEY = "test-admin-key-" + "k" * 24
WRITER_JWT_SECRET = "test-jwt-secret-" + "s" * 32
# The door staff credential every test writer accepts (X-Staff-Key, POST /v1/tickets/scan).
WRITER_STAFF_KEY = "test-staff-key-" + "d" * 24
# A small venue: 50 seats in two sections.
ROOM = {
    "name": "Room",
    "sections": [
        {
            "id": "S",
            "name": "Stalls",
            "rows": [{"id": "A", "seats": 20, "rank": 1}, {"id": "B", "seats": 20, "rank": 2}],
        },
        {"id": "C", "name": "Circle", "rows": [{"id": "A", "seats": 10, "rank": 3}]},
    ],
}
THEATRE = Path(__file__).resolve().parent.parent / "tessera_ops" / "venues" / "theatre-500.json"


def settings(database_url: str, redis_url: str, nats_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": redis_url,
        "nats_url": nats_url,
        "admin_key": WRITER_ADMIN_KEY,
        "jwt_secret": WRITER_JWT_SECRET,
        "payment_slow_s": 0.5,
        "door_staff_keys": json.dumps({"door": WRITER_STAFF_KEY}),
        **overrides,
    }
    return Settings(**values)


def writer_env(settings: Settings) -> dict[str, str]:
    """The `TESSERA_*` environment of a writer process with these settings."""
    env = {}
    for field, variable in ENV_FIELDS.items():
        value = getattr(settings, field)
        if value == "":
            continue
        env[variable] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def event_body(
    venue: dict[str, Any] | None = None,
    *,
    hold_ttl_s: int = 600,
    per_user_limit: int = 8,
    onsale_at: str = "2020-01-01T00:00:00Z",
) -> dict[str, Any]:
    return {
        "name": "Test night",
        "venue": venue if venue is not None else json.loads(THEATRE.read_bytes()),
        "onsale_at": onsale_at,
        "hold_ttl_s": hold_ttl_s,
        "per_user_limit": per_user_limit,
        "home_region": "local",
    }


class WriterApi:
    """The writer's HTTP API as tests use it: tokens, idempotency keys, events."""

    def __init__(self, client: httpx.AsyncClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        # Hold id → its event, for the writes that name both.
        self.hold_events: dict[str, str] = {}

    @staticmethod
    def token(user_id: str) -> str:
        return mint_token(user_id, WRITER_JWT_SECRET)

    def headers(self, user_id: str, key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token(user_id)}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    async def create_event(
        self,
        *,
        venue: dict[str, Any] | None = None,
        hold_ttl_s: int = 600,
        per_user_limit: int = 8,
        onsale_at: str = "2020-01-01T00:00:00Z",
    ) -> str:
        response = await self.client.post(
            "/v1/admin/events",
            headers={"X-Admin-Key": WRITER_ADMIN_KEY},
            json=event_body(
                venue, hold_ttl_s=hold_ttl_s, per_user_limit=per_user_limit, onsale_at=onsale_at
            ),
        )
        assert response.status_code == 201, response.text
        event_id: str = response.json()["event_id"]
        return event_id

    async def hold(
        self, event_id: str, user_id: str, body: dict[str, Any], key: str
    ) -> httpx.Response:
        response = await self.client.post(
            f"/v1/events/{event_id}/holds", headers=self.headers(user_id, key), json=body
        )
        if response.status_code == 201:
            self.hold_events[response.json()["hold_id"]] = event_id
        return response

    def hold_path(self, hold_id: str) -> str:
        """A hold's path under its event (every write names its event); the event is the one
        this helper's `hold` made it in."""
        return f"/v1/events/{self.hold_events[hold_id]}/holds/{hold_id}"

    async def order(self, user_id: str, hold_id: str, token: str, key: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/events/{self.hold_events[hold_id]}/orders",
            headers=self.headers(user_id, key),
            json={"hold_id": hold_id, "payment_token": token},
        )

    async def release(self, user_id: str, hold_id: str) -> httpx.Response:
        return await self.client.delete(self.hold_path(hold_id), headers=self.headers(user_id))

    async def extend(self, user_id: str, hold_id: str, key: str) -> httpx.Response:
        return await self.client.post(
            f"{self.hold_path(hold_id)}/extend", headers=self.headers(user_id, key)
        )
