"""The virtual waiting room: one queue per event, shared by every edge process through Redis.

Fans join an event's queue and get a signed queue ticket (edge/signing.py); polling the ticket
tells them their position, an ETA and, once the gate has reached them, a signed admission token
bound to them, the event and this region, which the write path requires (`check_admission`).
Each region's room counts its own queue, so a token of one region's room is refused by every
other region's edges: valid everywhere, it would let a fan join every region's queue and write
with the first admission (docs/edge-waiting-room.md, "Regions").

**Order (the Queue-it rule).** Everyone who joins before the gate opens goes into a *lobby*: a
Redis ZSET scored with 53 random bits from `secrets` (ties, vanishingly rare, fall to the random
member ids). Arriving early therefore buys nothing, and the order is fixed the moment a fan joins
(it does not depend on who joins later, nor on when anyone polls). Opening the gate (the admin
`open`, or the first call after `opens_at`) is one atomic step that records `opened_at` and
`lobby_size = ZCARD(lobby)`; a lobby member's position is then `ZRANK + 1`, and later arrivals are
first-in first-out behind the lobby: `position = lobby_size + INCR(seq)`. Before opening, the
position is not shown (it is not final until the lobby closes). Nothing is ever moved in bulk:
every call is O(log n), for millions of fans.

**Admission, computed lazily.** No background task: the gate is a line moving at `rate` positions
per second, `admitted(t) = base_admitted + (t - base_time) * rate` while open, capped at the number
of fans who joined; positions <= floor(admitted(t)) are admitted. Closing, and changing the rate,
re-base atomically (`base_admitted = admitted(now)`, `base_time = now`), so the old rate counts
until the change; closed, the line stands still (whoever was admitted stays admitted). A join that
finds the line caught up with the queue re-bases it to the queue's end first, so an idle open gate
does not bank credit that would let a later burst straight in. `eta_s = (position - admitted(t))
/ rate`, null while pending, closed or at rate 0. The rate counts positions, not fans who come
back: an abandoned ticket still consumes its slot (tune the rate with that in mind).

**Epochs.** The room's `epoch` goes up each time it is switched on; admission tokens carry it.
Tokens minted while the room was off (joining an ungated event answers "admitted" at once) are
therefore refused once it is switched on, instead of letting early visitors skip the queue.

**State** (Redis, keys share the `{event_id}` hash tag): `cfg` hash (settings, gate, bases, seq,
epoch), `lobby` ZSET, `fifo` hash (ticket -> position), `users` hash (user -> ticket id and issue
time: one ticket per fan per event; joining again returns the same ticket), `pow:<nonce>` (spent
challenges). Every state change is one Lua script, so concurrent edges never see a half-done
opening or re-base. Time is the caller's wall clock (`clock`, injectable for tests); the edges'
clocks should agree (NTP) since the gate's line is computed from them.

**The write path** (`check_admission`) reads the room's settings from a per-process cache
(`limits.edge_room_config_cache_s`) and verifies the token with one HMAC: no Redis round trip per
write. If Redis cannot be reached, the last known settings are used; with none, 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from edge import pow as proof_of_work
from edge.errors import EdgeError
from edge.metrics import EdgeMetrics
from edge.settings import Settings
from edge.signing import Admission, QueueTicket, Signer, TokenError
from tessera import limits

log = logging.getLogger("edge.waiting_room")

# The request header that carries an admission token on holds and orders.
ADMISSION_HEADER: Final = "X-Admission-Token"
DEFAULT_RATE_PER_S: Final = 50.0
DEFAULT_POW_DIFFICULTY: Final = 18

Gate: TypeAlias = Literal["pending", "open", "closed"]
QueueState: TypeAlias = Literal["waiting", "admitted"]
# Labels of EdgeMetrics.admission_refused.
RefusalReason: TypeAlias = Literal[
    "missing",
    "malformed",
    "forged",
    "expired",
    "other_region",
    "other_event",
    "other_user",
    "stale",
]
# The error code of each refusal: a token from elsewhere says so, every other is
# `admission_required` (join, or poll the ticket again).
_REFUSAL_CODES: Final[dict[RefusalReason, str]] = {
    "other_region": "admission_wrong_region",
    "other_event": "admission_wrong_event",
}

RatePerS: TypeAlias = Annotated[float, msgspec.Meta(ge=0, le=limits.edge_admission_rate_per_s_max)]
PowDifficulty: TypeAlias = Annotated[int, msgspec.Meta(ge=1, le=limits.edge_pow_difficulty_max)]
AwareDatetime: TypeAlias = Annotated[datetime, msgspec.Meta(tz=True)]


class RoomUpdate(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """`PUT .../waiting-room`: fields left out keep their value (or the default, on creation)."""

    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    rate_per_s: RatePerS | msgspec.UnsetType = msgspec.UNSET
    opens_at: AwareDatetime | msgspec.UnsetType | None = msgspec.UNSET
    under_attack: bool | msgspec.UnsetType = msgspec.UNSET
    pow_difficulty: PowDifficulty | msgspec.UnsetType = msgspec.UNSET


class RoomStats(msgspec.Struct, frozen=True, kw_only=True):
    lobby_size: int  # pre-open joiners (live count while pending, frozen at opening)
    joined: int
    admitted: int
    waiting: int


class RoomView(msgspec.Struct, frozen=True, kw_only=True):
    event_id: uuid.UUID
    enabled: bool
    rate_per_s: float
    opens_at: datetime | None
    under_attack: bool
    pow_difficulty: int
    gate: Gate
    opened_at: datetime | None
    epoch: int
    stats: RoomStats


class QueueStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A fan's place: the answer to joining (with `ticket`) and to polling a ticket."""

    ticket: str | None = None
    event_id: uuid.UUID
    state: QueueState
    position: int | None
    eta_s: float | None
    admission_token: str | None = None
    admission_expires_at: datetime | None = None


class ChallengeView(msgspec.Struct, frozen=True, kw_only=True):
    required: bool
    challenge: str
    difficulty: int
    algorithm: str
    expires_at: datetime


# Float round-off must not keep a fan out at the very instant the line reaches them.
_ROUNDING: Final = 1e-6
_GATES: Final[dict[str, Gate]] = {"pending": "pending", "open": "open", "closed": "closed"}


def _timestamp(value: str) -> float | None:
    return float(value) if value else None


def _datetime(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class RoomState:
    """One event's `cfg` hash, parsed; the admission arithmetic mirrors the Lua below."""

    enabled: bool
    rate_per_s: float
    opens_at: float | None
    under_attack: bool
    pow_difficulty: int
    gate: Gate
    opened_at: float | None
    lobby_size: int
    seq: int
    base_admitted: float
    base_time: float
    epoch: int
    lobby_now: int  # ZCARD(lobby) when read (0 when read without a script)

    @classmethod
    def parse(cls, fields: Mapping[str, str]) -> RoomState:
        gate = _GATES.get(fields["gate"])
        if gate is None:
            raise ValueError(f"unknown gate state {fields['gate']!r}")
        return cls(
            enabled=fields["enabled"] == "1",
            rate_per_s=float(fields["rate_per_s"]),
            opens_at=_timestamp(fields["opens_at"]),
            under_attack=fields["under_attack"] == "1",
            pow_difficulty=int(fields["pow_difficulty"]),
            gate=gate,
            opened_at=_timestamp(fields["opened_at"]),
            lobby_size=int(fields["lobby_size"]),
            seq=int(fields["seq"]),
            base_admitted=float(fields["base_admitted"]),
            base_time=float(fields["base_time"]),
            epoch=int(fields["epoch"]),
            lobby_now=int(fields.get("lobby_now", "0")),
        )

    @property
    def joined(self) -> int:
        return self.lobby_now if self.gate == "pending" else self.lobby_size + self.seq

    def line(self, now: float) -> float:
        """The gate's line, uncapped: positions up to its floor are admitted."""
        if self.gate != "open":
            return self.base_admitted
        return self.base_admitted + max(0.0, now - self.base_time) * self.rate_per_s

    def admitted(self, now: float) -> int:
        if self.gate == "pending":
            return 0
        return min(self.joined, math.floor(self.line(now) + _ROUNDING))

    def eta_s(self, position: int, now: float) -> float | None:
        if self.gate != "open" or self.rate_per_s <= 0:
            return None
        return math.ceil(max(0.0, position - self.line(now)) / self.rate_per_s * 1000) / 1000

    def view(self, event_id: uuid.UUID, now: float) -> RoomView:
        admitted = self.admitted(now)
        lobby = self.lobby_now if self.gate == "pending" else self.lobby_size
        return RoomView(
            event_id=event_id,
            enabled=self.enabled,
            rate_per_s=self.rate_per_s,
            opens_at=_datetime(self.opens_at),
            under_attack=self.under_attack,
            pow_difficulty=self.pow_difficulty,
            gate=self.gate,
            opened_at=_datetime(self.opened_at),
            epoch=self.epoch,
            stats=RoomStats(
                lobby_size=lobby,
                joined=self.joined,
                admitted=admitted,
                waiting=self.joined - admitted,
            ),
        )


# --- Lua: every state change is one script; numbers travel as strings with 17 digits, so
# Lua and Python compute the same doubles. Replies: {tag, extra, position, k1, v1, k2, v2, ...}.
_PRELUDE: Final = """
local function load(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local c = {}
  for i = 1, #flat, 2 do c[flat[i]] = flat[i + 1] end
  return c
end
local function save(key, c)
  local flat = {}
  for k, v in pairs(c) do
    if k ~= 'lobby_now' then flat[#flat + 1] = k; flat[#flat + 1] = v end
  end
  redis.call('HSET', key, unpack(flat))
end
local function fmt(x) return string.format('%.17g', x) end
local function joined(c) return tonumber(c.lobby_size) + tonumber(c.seq) end
local function line(c, now)
  local base = tonumber(c.base_admitted)
  if c.gate ~= 'open' then return base end
  local dt = now - tonumber(c.base_time)
  if dt < 0 then dt = 0 end
  return base + dt * tonumber(c.rate_per_s)
end
local function rebase(c, now)
  local a = line(c, now)
  local j = joined(c)
  if a > j then a = j end
  c.base_admitted = fmt(a)
  c.base_time = fmt(now)
end
local function open_gate(c, lobby, at)
  c.gate = 'open'
  c.opened_at = fmt(at)
  c.lobby_size = tostring(redis.call('ZCARD', lobby))
  c.base_admitted = '0'
  c.base_time = fmt(at)
end
local function maybe_open(c, lobby, now)
  if c.gate == 'pending' and c.opens_at ~= '' and tonumber(c.opens_at) <= now then
    open_gate(c, lobby, tonumber(c.opens_at))
    return true
  end
  return false
end
local function position_of(lobby, fifo, ticket)
  local rank = redis.call('ZRANK', lobby, ticket)
  if rank then return tostring(rank + 1) end
  local position = redis.call('HGET', fifo, ticket)
  if position then return position end
  return ''
end
local function reply(tag, extra, position, c, lobby)
  local out = {tag, extra, position}
  if c then
    c.lobby_now = tostring(redis.call('ZCARD', lobby))
    for k, v in pairs(c) do out[#out + 1] = k; out[#out + 1] = v end
  end
  return out
end
"""

# KEYS cfg lobby fifo users; ARGV now user ticket_id score issued_at ttl_s
_JOIN: Final = """
local now = tonumber(ARGV[1])
local c = load(KEYS[1])
if not c or c.enabled ~= '1' then return reply('off', '', '', c, KEYS[2]) end
local dirty = maybe_open(c, KEYS[2], now)
local value = redis.call('HGET', KEYS[4], ARGV[2])
local tag = 'existing'
local position = ''
if value then
  local ticket, issued = string.match(value, '^([^:]+):(.+)$')
  position = position_of(KEYS[2], KEYS[3], ticket)
  if position ~= '' and tonumber(issued) + tonumber(ARGV[6]) / 2 <= now then
    value = ticket .. ':' .. ARGV[5]  -- same place, a ticket that outlives the room's TTL
    redis.call('HSET', KEYS[4], ARGV[2], value)
  end
end
if position == '' then  -- a new fan (or one whose place was lost with an expired queue)
  tag = 'new'
  value = ARGV[3] .. ':' .. ARGV[5]
  if c.gate == 'pending' then
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
  else
    if c.gate == 'open' and line(c, now) + 1e-6 >= joined(c) then rebase(c, now) end
    c.seq = tostring(tonumber(c.seq) + 1)
    redis.call('HSET', KEYS[3], ARGV[3], tostring(joined(c)))
    dirty = true
  end
  redis.call('HSET', KEYS[4], ARGV[2], value)
  for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
  position = position_of(KEYS[2], KEYS[3], ARGV[3])
end
if dirty then save(KEYS[1], c) end
return reply(tag, value, position, c, KEYS[2])
"""

# KEYS cfg lobby fifo; ARGV now ticket_id
_STATUS: Final = """
local c = load(KEYS[1])
if not c or c.enabled ~= '1' then return reply('off', '', '', c, KEYS[2]) end
if maybe_open(c, KEYS[2], tonumber(ARGV[1])) then save(KEYS[1], c) end
return reply('ok', '', position_of(KEYS[2], KEYS[3], ARGV[2]), c, KEYS[2])
"""

# KEYS cfg lobby; ARGV now, 5 default pairs (used on creation), then the update's pairs
_CONFIGURE: Final = """
local now = tonumber(ARGV[1])
local c = load(KEYS[1])
local was_enabled = false
if c then
  maybe_open(c, KEYS[2], now)  -- the old schedule first
  was_enabled = c.enabled == '1'
else
  c = {gate = 'pending', opened_at = '', lobby_size = '0', seq = '0', base_admitted = '0',
       base_time = '0', epoch = '0'}
  for i = 2, 11, 2 do c[ARGV[i]] = ARGV[i + 1] end
end
local updates = {}
for i = 12, #ARGV, 2 do updates[ARGV[i]] = ARGV[i + 1] end
if updates.rate_per_s and c.gate == 'open' then rebase(c, now) end  -- the old rate until now
for k, v in pairs(updates) do c[k] = v end
if c.enabled == '1' and not was_enabled then c.epoch = tostring(tonumber(c.epoch) + 1) end
maybe_open(c, KEYS[2], now)  -- a new opens_at may have passed already
save(KEYS[1], c)
return reply('ok', '', '', c, KEYS[2])
"""

# KEYS cfg lobby; ARGV now action ('view' | 'open' | 'close')
_GATE: Final = """
local now = tonumber(ARGV[1])
local c = load(KEYS[1])
if not c then return {'none', '', ''} end
local dirty = maybe_open(c, KEYS[2], now)
if ARGV[2] == 'open' then
  if c.gate == 'pending' then open_gate(c, KEYS[2], now)
  elseif c.gate == 'closed' then c.gate = 'open'; c.base_time = fmt(now) end
  dirty = true
elseif ARGV[2] == 'close' then
  if c.gate == 'open' then rebase(c, now); c.gate = 'closed'
  elseif c.gate == 'pending' then c.opens_at = '' end  -- no automatic opening until `open`
  dirty = true
end
if dirty then save(KEYS[1], c) end
return reply('ok', '', '', c, KEYS[2])
"""


@dataclass(frozen=True, slots=True)
class _Reply:
    tag: str
    extra: str
    position: int | None
    room: RoomState | None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _parse_reply(raw: Any) -> _Reply:
    items = [_text(item) for item in raw]
    fields = dict(zip(items[3::2], items[4::2], strict=True))
    return _Reply(
        tag=items[0],
        extra=items[1],
        position=int(items[2]) if items[2] else None,
        room=RoomState.parse(fields) if fields else None,
    )


class _Keys:
    def __init__(self, event_id: uuid.UUID) -> None:
        prefix = f"tessera:room:{{{event_id}}}"
        self.cfg, self.lobby = f"{prefix}:cfg", f"{prefix}:lobby"
        self.fifo, self.users = f"{prefix}:fifo", f"{prefix}:users"
        self.pow_prefix = f"{prefix}:pow:"


def _unavailable() -> EdgeError:
    return EdgeError(
        503, "unavailable", "the waiting room is unavailable; retry shortly", {"Retry-After": "1"}
    )


def _not_configured(event_id: uuid.UUID) -> EdgeError:
    return EdgeError(
        404, "not_found", f"event {event_id} has no waiting room (PUT one to configure it)"
    )


class WaitingRoom:
    """Every event's waiting room, backed by one Redis (shared by the region's edge fleet)."""

    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        metrics: EdgeMetrics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`settings` gives the signing secret (`admission_secret`) and `admission_ttl_s`; `clock`
        is the wall clock the gate runs on, `monotonic` times the settings cache."""
        self.redis = redis
        self.signer = Signer(settings.admission_secret)
        self.region = settings.region
        self.metrics = metrics
        self.admission_ttl_s = settings.admission_ttl_s
        self.clock = clock
        self.monotonic = monotonic
        self._join = redis.register_script(_PRELUDE + _JOIN)
        self._status = redis.register_script(_PRELUDE + _STATUS)
        self._configure = redis.register_script(_PRELUDE + _CONFIGURE)
        self._gate = redis.register_script(_PRELUDE + _GATE)
        # event -> (monotonic time read, settings or None when the event has no room)
        self._configs: OrderedDict[uuid.UUID, tuple[float, RoomState | None]] = OrderedDict()
        self._loading: dict[uuid.UUID, asyncio.Task[RoomState | None]] = {}

    # --- Redis plumbing ---

    @contextlib.asynccontextmanager
    async def _redis(self, what: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(limits.edge_room_redis_timeout_s):
                yield
        except (RedisError, OSError, TimeoutError):
            log.warning("waiting room: %s failed", what, exc_info=True)
            raise _unavailable() from None

    async def _run(self, script: Any, what: str, keys: list[str], args: list[Any]) -> _Reply:
        async with self._redis(what):
            raw = await script(keys=keys, args=args)
        return _parse_reply(raw)

    def _remember(self, event_id: uuid.UUID, room: RoomState | None) -> None:
        self._configs[event_id] = (self.monotonic(), room)
        self._configs.move_to_end(event_id)
        while len(self._configs) > limits.edge_room_configs_cached_max:
            self._configs.popitem(last=False)

    async def _load_config(self, event_id: uuid.UUID) -> RoomState | None:
        try:
            async with asyncio.timeout(limits.edge_room_redis_timeout_s):
                raw = await self.redis.hgetall(_Keys(event_id).cfg)
        except (RedisError, OSError, TimeoutError):
            known = self._configs.get(event_id)
            if known is None:
                log.warning("waiting room: settings of %s unreadable", event_id, exc_info=True)
                raise _unavailable() from None
            # The last known settings beat refusing every write; retried after the cache period,
            # so an outage costs one timeout per event per period, not one per request.
            self._remember(event_id, known[1])
            return known[1]
        fields = {_text(key): _text(value) for key, value in raw.items()}
        room = RoomState.parse(fields) if fields else None
        self._remember(event_id, room)
        return room

    async def room_config(self, event_id: uuid.UUID) -> RoomState | None:
        """The event's room settings (None: no room), at most `edge_room_config_cache_s` old."""
        known = self._configs.get(event_id)
        if known is not None and self.monotonic() - known[0] < limits.edge_room_config_cache_s:
            return known[1]
        task = self._loading.get(event_id)
        if task is None:  # one read per event however many requests wait for it
            task = asyncio.ensure_future(self._load_config(event_id))
            self._loading[event_id] = task
            task.add_done_callback(lambda done: self._loaded(event_id, done))
        return await asyncio.shield(task)

    def _loaded(self, event_id: uuid.UUID, task: asyncio.Task[RoomState | None]) -> None:
        self._loading.pop(event_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    # --- admin ---

    async def configure(self, event_id: uuid.UUID, update: RoomUpdate) -> RoomView:
        """Create or change the event's room; absent fields keep their value."""
        now = self.clock()
        defaults = {
            "enabled": "1",
            "rate_per_s": repr(DEFAULT_RATE_PER_S),
            "opens_at": "",
            "under_attack": "0",
            "pow_difficulty": str(DEFAULT_POW_DIFFICULTY),
        }
        changes: dict[str, str] = {}
        if not isinstance(update.enabled, msgspec.UnsetType):
            changes["enabled"] = "1" if update.enabled else "0"
        if not isinstance(update.rate_per_s, msgspec.UnsetType):
            changes["rate_per_s"] = repr(float(update.rate_per_s))
        if not isinstance(update.opens_at, msgspec.UnsetType):
            changes["opens_at"] = (
                "" if update.opens_at is None else repr(update.opens_at.timestamp())
            )
        if not isinstance(update.under_attack, msgspec.UnsetType):
            changes["under_attack"] = "1" if update.under_attack else "0"
        if not isinstance(update.pow_difficulty, msgspec.UnsetType):
            changes["pow_difficulty"] = str(update.pow_difficulty)
        keys = _Keys(event_id)
        args = [repr(now), *_flat(defaults), *_flat(changes)]
        reply = await self._run(self._configure, "configure", [keys.cfg, keys.lobby], args)
        return self._admin_view(event_id, reply, now)

    async def view(self, event_id: uuid.UUID) -> RoomView:
        return await self._gate_action(event_id, "view")

    async def open(self, event_id: uuid.UUID) -> RoomView:
        """Open the gate now: the lobby's random order is fixed; or resume after `close`."""
        return await self._gate_action(event_id, "open")

    async def close(self, event_id: uuid.UUID) -> RoomView:
        """Freeze admission (admitted fans stay admitted); before opening: cancel `opens_at`."""
        return await self._gate_action(event_id, "close")

    async def _gate_action(self, event_id: uuid.UUID, action: str) -> RoomView:
        now = self.clock()
        keys = _Keys(event_id)
        reply = await self._run(self._gate, action, [keys.cfg, keys.lobby], [repr(now), action])
        return self._admin_view(event_id, reply, now)

    def _admin_view(self, event_id: uuid.UUID, reply: _Reply, now: float) -> RoomView:
        if reply.room is None:
            raise _not_configured(event_id)
        self._remember(event_id, reply.room)
        return reply.room.view(event_id, now)

    # --- fans ---

    async def challenge(self, event_id: uuid.UUID) -> ChallengeView:
        """A proof-of-work challenge; `required` says whether joining needs it right now."""
        room = await self.room_config(event_id)
        required = room is not None and room.under_attack
        difficulty = DEFAULT_POW_DIFFICULTY if room is None else room.pow_difficulty
        token, challenge = proof_of_work.issue(self.signer, event_id, difficulty, self.clock())
        return ChallengeView(
            required=required,
            challenge=token,
            difficulty=difficulty,
            algorithm=proof_of_work.ALGORITHM,
            expires_at=datetime.fromtimestamp(challenge.expires_at, UTC),
        )

    async def _check_proof(
        self, event_id: uuid.UUID, room: RoomState, challenge: str | None, solution: str | None
    ) -> None:
        now = self.clock()
        try:
            payload = proof_of_work.verify(
                self.signer,
                event_id,
                challenge=challenge,
                solution=solution,
                difficulty_min=room.pow_difficulty,
                now=now,
            )
        except proof_of_work.PowError as error:
            raise EdgeError(403, error.code, str(error)) from None
        key = _Keys(event_id).pow_prefix + payload.nonce
        async with self._redis("spend challenge"):
            fresh = await self.redis.set(key, b"1", nx=True, exat=payload.expires_at + 1)
        if not fresh:
            raise EdgeError(
                403, "proof_of_work_invalid", "this challenge was already used: fetch a new one"
            )

    async def join(
        self,
        event_id: uuid.UUID,
        user_id: str,
        *,
        challenge: str | None = None,
        solution: str | None = None,
    ) -> tuple[QueueStatus, bool]:
        """The fan's place in the event's queue, and whether the ticket is new (False: the fan
        had joined already and gets the same ticket back). Under attack, a solved challenge
        is required first (`proof_of_work_required` / `proof_of_work_invalid`, 403)."""
        room = await self.room_config(event_id)
        if room is not None and room.under_attack:
            await self._check_proof(event_id, room, challenge, solution)
        now = self.clock()
        keys = _Keys(event_id)
        ticket_id = secrets.token_urlsafe(16)
        args = [
            repr(now),
            user_id,
            ticket_id,
            secrets.randbits(53),
            int(now),
            limits.edge_ticket_ttl_s,
        ]
        reply = await self._run(
            self._join, "join", [keys.cfg, keys.lobby, keys.fifo, keys.users], args
        )
        if reply.tag == "off":
            ticket = QueueTicket(ticket_id, event_id, self.region, user_id, int(now))
            self.metrics.queue_joins.inc()
            return self._admitted_off(ticket, reply.room, now, with_ticket=True), True
        ticket_id, issued_at = reply.extra.split(":")
        ticket = QueueTicket(ticket_id, event_id, self.region, user_id, int(issued_at))
        created = reply.tag == "new"
        if created:
            self.metrics.queue_joins.inc()
        assert reply.room is not None
        assert reply.position is not None
        signed = self.signer.sign(ticket)
        return self._place(ticket, reply.room, reply.position, now, signed), created

    async def status(self, ticket: str) -> QueueStatus:
        """Where a ticket stands; once admitted, with a fresh admission token.

        A ticket that does not verify (forged, garbled, expired) or is not in its event's queue
        (issued while the room was off, or its queue expired) is a 404 `ticket_not_found`."""
        now = self.clock()
        try:
            parsed = self.signer.verify_ticket(ticket, now)
        except TokenError as error:
            raise EdgeError(404, "ticket_not_found", f"no such ticket ({error})") from None
        if parsed.region != self.region:
            # Each region's queue is its own: this region's has no place for the ticket.
            raise EdgeError(
                404,
                "ticket_not_found",
                f"this ticket is for the waiting room of region {parsed.region!r}, not this "
                "region's: join the queue here",
            )
        keys = _Keys(parsed.event_id)
        args = [repr(now), parsed.ticket_id]
        reply = await self._run(self._status, "status", [keys.cfg, keys.lobby, keys.fifo], args)
        if reply.tag == "off":
            return self._admitted_off(parsed, reply.room, now, with_ticket=False)
        assert reply.room is not None
        if reply.position is None:
            raise EdgeError(
                404,
                "ticket_not_found",
                "this ticket is not in the event's queue (issued while the waiting room was off, "
                "or expired): join the queue again",
            )
        return self._place(parsed, reply.room, reply.position, now, None)

    def _admission(self, ticket: QueueTicket, epoch: int, now: float) -> tuple[str, datetime]:
        expires_at = int(now) + self.admission_ttl_s
        token = self.signer.sign(
            Admission(
                ticket.event_id, self.region, ticket.user_id, ticket.ticket_id, epoch, expires_at
            )
        )
        return token, datetime.fromtimestamp(expires_at, UTC)

    def _admitted_off(
        self, ticket: QueueTicket, room: RoomState | None, now: float, *, with_ticket: bool
    ) -> QueueStatus:
        """No gate for this event: admitted at once (the token is not required meanwhile)."""
        token, expires_at = self._admission(ticket, 0 if room is None else room.epoch, now)
        return QueueStatus(
            ticket=self.signer.sign(ticket) if with_ticket else None,
            event_id=ticket.event_id,
            state="admitted",
            position=None,
            eta_s=0.0,
            admission_token=token,
            admission_expires_at=expires_at,
        )

    def _place(
        self, ticket: QueueTicket, room: RoomState, position: int, now: float, signed: str | None
    ) -> QueueStatus:
        if room.gate == "pending":  # the lobby's order is not final until the gate opens
            return QueueStatus(
                ticket=signed, event_id=ticket.event_id, state="waiting", position=None, eta_s=None
            )
        if position > room.admitted(now):
            return QueueStatus(
                ticket=signed,
                event_id=ticket.event_id,
                state="waiting",
                position=position,
                eta_s=room.eta_s(position, now),
            )
        token, expires_at = self._admission(ticket, room.epoch, now)
        return QueueStatus(
            ticket=signed,
            event_id=ticket.event_id,
            state="admitted",
            position=position,
            eta_s=0.0,
            admission_token=token,
            admission_expires_at=expires_at,
        )

    # --- the write path ---

    async def check_admission(self, event_id: uuid.UUID, user_id: str, token: str | None) -> None:
        """Nothing when the event has no enabled room; otherwise the token must be a valid
        admission token of this region's room for this fan, this event and the room's current
        epoch, or 403: `admission_wrong_region`, `admission_wrong_event`, else
        `admission_required` (counted in `admission_refused{reason}`). One HMAC, no Redis
        (the settings come from the per-process cache)."""
        room = await self.room_config(event_id)
        if room is None or not room.enabled:
            return
        refusal = self._refusal(room, event_id, user_id, token)
        if refusal is None:
            return
        reason, message = refusal
        self.metrics.admission_refused.labels(reason=reason).inc()
        raise EdgeError(403, _REFUSAL_CODES.get(reason, "admission_required"), message)

    def _refusal(
        self, room: RoomState, event_id: uuid.UUID, user_id: str, token: str | None
    ) -> tuple[RefusalReason, str] | None:
        if not token:
            return "missing", (
                f"this event has a waiting room: join it (POST /v1/events/{event_id}/queue), "
                f"poll the ticket, and send the admission token in {ADMISSION_HEADER}"
            )
        try:
            admission = self.signer.verify_admission(token, self.clock())
        except TokenError as error:
            return error.reason, f"{error}: poll your queue ticket for a fresh admission token"
        return self._mismatch(room, admission, event_id, user_id)

    def _mismatch(
        self, room: RoomState, admission: Admission, event_id: uuid.UUID, user_id: str
    ) -> tuple[RefusalReason, str] | None:
        if admission.region != self.region:
            return "other_region", (
                f"the admission token is from the waiting room of region {admission.region!r}: "
                f"each region's room admits for its own edges; join the queue here "
                f"(POST /v1/events/{event_id}/queue)"
            )
        if admission.event_id != event_id:
            return "other_event", "the admission token is for another event"
        if admission.user_id != user_id:
            return "other_user", "the admission token is for another user"
        if admission.epoch != room.epoch:
            return "stale", (
                "the admission token predates the waiting room being switched on: "
                "poll your queue ticket, or join the queue"
            )
        return None


def _flat(pairs: Mapping[str, str]) -> list[str]:
    return [item for pair in pairs.items() for item in pair]
