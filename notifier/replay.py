"""Replaying dead letters: `python -m notifier.replay [--event ID] [--limit N] [--dry-run]`.

For each dead letter in ORDERS_DEADLETTER (oldest first, optionally only one event's), once the
cause is fixed (the SMTP server or webhook is back, the address corrected):

1. clear the channel's `dead` marker, so the notifier may send it again (a `sent` marker is never
   touched: what went out stays sent);
2. publish the confirmation again on `orders.confirmed.<event_id>` with
   `Tessera-Notify-Channels: <channel>`, so only the dead channel is retried, and
   `Nats-Msg-Id: replay.<order>.<channel>.<dead letter seq>`, so running the replay twice (a
   crash before step 3) publishes it once;
3. delete the dead letter.

Malformed entries (payloads that were no confirmation) are listed and left in place.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Final, TextIO

import msgspec
import nats
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from redis.asyncio import Redis

from notifier.markers import Markers
from tessera import contracts

_encoder: Final = msgspec.json.Encoder()


async def replay(
    js: JetStreamContext,
    markers: Markers,
    *,
    event_id: str | None = None,
    limit: int = 100,
    dry_run: bool = False,
    out: TextIO = sys.stdout,
) -> list[contracts.DeadLetter]:
    """Replay up to `limit` dead letters (of `event_id` only, if given); the ones replayed."""
    subject = f"{contracts.ORDER_DEADLETTER_PREFIX}.{event_id or '*'}"
    replayed: list[contracts.DeadLetter] = []
    seq = 1
    while len(replayed) < limit:
        try:
            stored = await js.get_msg(
                contracts.ORDERS_DEADLETTER_STREAM, seq, subject=subject, next=True
            )
        except NotFoundError:
            break  # nothing at or after seq
        assert stored.seq is not None
        seq = stored.seq + 1
        try:
            letter = contracts.dead_letter_decoder.decode(stored.data or b"")
        except msgspec.DecodeError as error:
            print(f"seq {stored.seq}: not a dead letter, left in place: {error}", file=out)
            continue
        confirmation = letter.confirmation
        print(
            f"seq {stored.seq}: order {confirmation.order_id} {letter.channel}"
            f" ({'permanent' if letter.permanent else f'{letter.attempts} attempts'}):"
            f" {letter.error}",
            file=out,
        )
        if not dry_run:
            await _replay_one(js, markers, letter, stored.seq)
        replayed.append(letter)
    return replayed


async def _replay_one(
    js: JetStreamContext, markers: Markers, letter: contracts.DeadLetter, seq: int
) -> None:
    confirmation = letter.confirmation
    await markers.forget_dead(str(confirmation.order_id), letter.channel)
    headers = {
        "Nats-Msg-Id": f"replay.{confirmation.order_id}.{letter.channel}.{seq}",
        contracts.HEADER_NOTIFY_CHANNELS: letter.channel,
        contracts.HEADER_EVENT: str(confirmation.event_id),
        contracts.HEADER_ORDER: str(confirmation.order_id),
    }
    await js.publish(
        contracts.order_confirmed_subject(confirmation.event_id),
        _encoder.encode(confirmation),
        headers=headers,
        stream=contracts.ORDERS_STREAM,
    )
    await js.delete_msg(contracts.ORDERS_DEADLETTER_STREAM, seq)


async def _main(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url, connect_timeout=5, allow_reconnect=False)
    redis = Redis.from_url(args.redis_url)
    try:
        # The claim TTL plays no part in a replay (it only clears `dead` markers).
        markers = Markers(redis, claim_ttl_s=1.0)
        done = await replay(
            nc.jetstream(), markers, event_id=args.event, limit=args.limit, dry_run=args.dry_run
        )
    finally:
        await redis.aclose()
        await nc.close()
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {len(done)} dead letter(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m notifier.replay", description=__doc__)
    parser.add_argument("--nats-url", default=os.environ.get("TESSERA_NATS_URL"))
    parser.add_argument("--redis-url", default=os.environ.get("TESSERA_REDIS_URL"))
    parser.add_argument("--event", help="only this event's dead letters (its id)")
    parser.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    parser.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    args = parser.parse_args(argv)
    if not args.nats_url or not args.redis_url:
        parser.error("--nats-url and --redis-url (or TESSERA_NATS_URL, TESSERA_REDIS_URL)")
    if args.event is not None and not _is_token(args.event):
        parser.error("--event must be one subject token (an event id)")
    return asyncio.run(_main(args))


def _is_token(value: str) -> bool:
    return bool(value) and not any(c in value for c in ".*> \t\r\n")


if __name__ == "__main__":
    sys.exit(main())
