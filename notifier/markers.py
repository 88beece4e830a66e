"""Per (order, channel) markers in Redis that keep a redelivered confirmation from being sent
twice (docs/notifications.md, "Duplicate sends").

A key `tessera:notify:<order_id>:<channel>` goes through:

- `sending:<token>`: claimed by one attempt (SET NX, expires after `claim_ttl_s`), before it
  sends. Any other delivery of the same message meanwhile finds it and backs off: two attempts
  never send at once. An attempt that fails transiently deletes its own claim (compare and
  delete), so the retry may claim it again; a crash leaves the claim to expire.
- `sent` / `dead`: written after the send succeeded / after the dead letter was published, and
  before the message is acknowledged; kept `notify_marker_ttl_s`, longer than ORDERS keeps a
  message, so every redelivery finds it and skips the channel.
"""

from __future__ import annotations

import enum
from typing import Final

from redis.asyncio import Redis

from tessera import limits
from tessera.contracts import Channel

_PREFIX: Final = "tessera:notify"
_SENDING: Final = b"sending:"
# Delete the claim only if it is still ours: it may have expired and been taken by another.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Claim(enum.Enum):
    CLAIMED = "claimed"  # this attempt may send
    SENT = "sent"  # already delivered: skip
    DEAD = "dead"  # already dead-lettered: skip
    BUSY = "busy"  # another attempt is sending it right now: try later


def key(order_id: str, channel: Channel) -> str:
    return f"{_PREFIX}:{order_id}:{channel}"


class Markers:
    def __init__(self, redis: Redis, *, claim_ttl_s: float) -> None:
        self.redis = redis
        self.claim_ttl_ms = round(claim_ttl_s * 1000)
        self.done_ttl_ms = limits.notify_marker_ttl_s * 1000

    async def claim(self, order_id: str, channel: Channel, token: str) -> Claim:
        name = key(order_id, channel)
        if await self.redis.set(name, _SENDING + token.encode(), nx=True, px=self.claim_ttl_ms):
            return Claim.CLAIMED
        value = await self.redis.get(name)
        if value == b"sent":
            return Claim.SENT
        if value == b"dead":
            return Claim.DEAD
        # Someone's claim, or a key that expired between the two calls: either way, later.
        return Claim.BUSY

    async def finish(self, order_id: str, channel: Channel, outcome: Claim) -> None:
        if outcome not in (Claim.SENT, Claim.DEAD):
            raise ValueError(f"a channel finishes as sent or dead, not {outcome.value}")
        await self.redis.set(key(order_id, channel), outcome.value, px=self.done_ttl_ms)

    async def release(self, order_id: str, channel: Channel, token: str) -> None:
        await self.redis.eval(_RELEASE, 1, key(order_id, channel), _SENDING + token.encode())

    async def forget_dead(self, order_id: str, channel: Channel) -> bool:
        """Clear a `dead` marker so a replayed dead letter is delivered; True if there was one.
        A `sent` marker is never cleared: what went out stays sent."""
        deleted = await self.redis.eval(
            "if redis.call('GET', KEYS[1]) == 'dead' then return redis.call('DEL', KEYS[1]) end"
            " return 0",
            1,
            key(order_id, channel),
        )
        return bool(deleted)
