"""`tessera jetstream apply`: create or update the JetStream streams, buckets and mirrors defined
in the package data `tessera/resources/nats/jetstream/` on a NATS server (idempotent; safe on
every start).

    tessera jetstream apply [--regional --hub-domain D] [--replicas N] [--definitions DIR]
                            [--nats-url URL] [--wait-s S]

The writer applies the hub's definitions itself when it starts; a region's mirrors are applied by
this command, run by the regional service's init container (terraform/modules/service,
`init_command`) with the NATS admin's credentials before the read node starts as a reader, which
may not create streams. With `--regional` it also waits for every mirror's first contact with
the hub (`wait_for_mirrors`). The URL carries credentials: it is never printed.

Exit codes: 0 applied, 1 the server could not be reached or refused, 2 usage or definition error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Final

import nats
from nats.aio.client import Client

from tessera import limits
from tessera.jetstream import (
    Definition,
    DefinitionError,
    JetStreamSetupError,
    ensure_jetstream,
    load_definitions,
    load_regional_definitions,
    wait_for_mirrors,
)

__all__ = ["register"]

NATS_URL_ENV: Final = "TESSERA_NATS_URL"
# A new mirror reaches its source in ≈0.2 s; a lost first request costs 30 s
# (tessera/resources/nats/README.md).
DEFAULT_WAIT_S: Final = 60.0


def register(commands: Any) -> None:
    """Add `jetstream apply` to the CLI's subcommands (`argparse` subparsers)."""
    jetstream = commands.add_parser("jetstream", help="apply the JetStream definitions")
    actions = jetstream.add_subparsers(dest="jetstream_command", required=True, metavar="COMMAND")
    apply = actions.add_parser("apply", help="create or update streams, buckets and mirrors")
    apply.add_argument(
        "--nats-url",
        default=os.environ.get(NATS_URL_ENV),
        help=f"nats:// URL with credentials (default: ${NATS_URL_ENV})",
    )
    apply.add_argument(
        "--regional", action="store_true", help="a region's mirrors (the definitions' regional/)"
    )
    apply.add_argument("--hub-domain", help="the hub's JetStream domain (with --regional)")
    apply.add_argument(
        "--replicas",
        type=int,
        help=f"replicas of every stream, 1..{limits.jetstream_replicas_max} (default: the files')",
    )
    apply.add_argument(
        "--definitions",
        type=Path,
        help="definitions folder (default: the package's, tessera/resources/nats/jetstream)",
    )
    apply.add_argument(
        "--wait-s",
        type=float,
        default=DEFAULT_WAIT_S,
        help="with --regional: how long to wait for the mirrors' first contact "
        f"(default {DEFAULT_WAIT_S:g})",
    )
    apply.set_defaults(handler=_apply)


def _definitions(args: argparse.Namespace) -> list[Definition]:
    if args.regional:
        return load_regional_definitions(
            args.definitions, hub_domain=args.hub_domain, replicas=args.replicas
        )
    if args.hub_domain is not None:
        raise DefinitionError("--hub-domain only applies to --regional")
    return load_definitions(args.definitions, replicas=args.replicas)


async def _ensure(url: str, definitions: list[Definition], wait_s: float | None) -> None:
    nc = Client()
    await nc.connect(url, connect_timeout=5, allow_reconnect=False, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await ensure_jetstream(js, definitions)
        if wait_s is not None:
            await wait_for_mirrors(js, definitions, timeout_s=wait_s)
    finally:
        await nc.close()


def _apply(args: argparse.Namespace) -> int:
    if not args.nats_url:
        print(f"tessera jetstream apply: give --nats-url or set {NATS_URL_ENV}", file=sys.stderr)
        return 2
    try:
        definitions = _definitions(args)
    except DefinitionError as exc:
        print(f"tessera jetstream apply: {exc}", file=sys.stderr)
        return 2
    wait_s = args.wait_s if args.regional else None
    try:
        asyncio.run(_ensure(args.nats_url, definitions, wait_s))
    except (JetStreamSetupError, nats.errors.Error, OSError, TimeoutError) as exc:
        print(f"tessera jetstream apply: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(d.stream_name for d in definitions)
    print(f"applied {len(definitions)} definitions: {names}")
    return 0
