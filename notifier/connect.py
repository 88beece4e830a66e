"""The notifier's NATS connection at start-up, shared by its two consumers (the confirmations'
worker and the integrators' webhooks): NATS may come up after the notifier, so it is tried
until it answers; once connected, nats-py reconnects by itself (`max_reconnect_attempts=-1`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import nats
from nats.aio.client import Client as NatsClient

log = logging.getLogger("notifier.connect")

CONNECT_TIMEOUT_S: Final = 2


async def connect_until_up(nats_url: str, retry_s: float) -> NatsClient:
    while True:
        try:
            return await nats.connect(
                nats_url, max_reconnect_attempts=-1, connect_timeout=CONNECT_TIMEOUT_S
            )
        except Exception as error:  # any failure to reach it: wait and try again
            log.warning("NATS not reachable yet (%s); retrying", error)
            await asyncio.sleep(retry_s)
