"""`tessera webhooks replay`: send integrators' dead-lettered webhooks back to the work queue
once the endpoint is fixed (docs/webhooks.md, "Dead letters and replay").

    tessera webhooks replay [--endpoint ID] [--limit N] [--dry-run] [--nats-url URL]
                            [--redis-url URL]

Oldest first, each dead letter's `dead` marker is cleared, its event is published on
`webhooks.replay.<endpoint_id>` (delivered to that endpoint only, with a fresh attempt count)
and the dead letter is deleted (tessera/webhooks.py, `replay`). `--dry-run` lists them and
changes nothing. The URLs carry credentials: they are never printed.

Exit codes: 0 done, 1 the servers could not be reached or refused, 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any, Final

import nats
from redis.asyncio import Redis

from tessera import webhooks

__all__ = ["register"]

NATS_URL_ENV: Final = "TESSERA_NATS_URL"
REDIS_URL_ENV: Final = "TESSERA_REDIS_URL"
_LIMIT_MAX: Final = 100_000


def register(commands: Any) -> None:
    """Add `webhooks replay` to the CLI's subcommands (`argparse` subparsers)."""
    hooks = commands.add_parser("webhooks", help="integrators' webhooks: dead letters")
    actions = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="COMMAND")
    replay = actions.add_parser(
        "replay",
        help="send dead-lettered webhooks again",
        description="Publish dead-lettered webhook events again, each to its endpoint only.",
    )
    replay.add_argument("--endpoint", help="only this endpoint's dead letters (its id)")
    replay.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    replay.add_argument("--dry-run", action="store_true", help="list them, change nothing")
    replay.add_argument(
        "--nats-url", default=os.environ.get(NATS_URL_ENV), help=f"default: ${NATS_URL_ENV}"
    )
    replay.add_argument(
        "--redis-url", default=os.environ.get(REDIS_URL_ENV), help=f"default: ${REDIS_URL_ENV}"
    )
    replay.set_defaults(handler=_replay)


def _usage_error(args: argparse.Namespace) -> str | None:
    if not args.nats_url or not args.redis_url:
        return f"--nats-url and --redis-url (or ${NATS_URL_ENV}, ${REDIS_URL_ENV}) are required"
    if not 1 <= args.limit <= _LIMIT_MAX:
        return f"--limit must be 1..{_LIMIT_MAX}"
    if args.endpoint is not None and not _is_endpoint_id(args.endpoint):
        return "--endpoint must be an endpoint id (letters, digits, _ and -, at most 32)"
    return None


def _is_endpoint_id(value: str) -> bool:
    return 0 < len(value) <= 32 and all(c.isascii() and (c.isalnum() or c in "_-") for c in value)


def _replay(args: argparse.Namespace) -> int:
    problem = _usage_error(args)
    if problem is not None:
        print(f"tessera webhooks replay: {problem}", file=sys.stderr)
        return 2
    try:
        count = asyncio.run(_run(args))
    except Exception as error:  # the message only: the URLs may carry credentials
        print(f"tessera webhooks replay: failed: {type(error).__name__}", file=sys.stderr)
        return 1
    verb = "would replay" if args.dry_run else "replayed"
    print(f"{verb} {count} dead letter(s)")
    return 0


async def _run(args: argparse.Namespace) -> int:
    nc = await nats.connect(args.nats_url, connect_timeout=5, allow_reconnect=False)
    redis = Redis.from_url(args.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        done = await webhooks.replay(
            nc.jetstream(),
            redis,
            endpoint_id=args.endpoint,
            limit=args.limit,
            dry_run=args.dry_run,
        )
    finally:
        await redis.aclose()
        await nc.close()
    return len(done)
