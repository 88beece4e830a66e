"""The local-stack commands of the `tessera` CLI:

    tessera up [--regions N] [--venue FILE] [--data-dir DIR]
    tessera down [--data-dir DIR]
    tessera friends add USER FRIEND [--data-dir DIR]
    tessera notifier [--host H] [--port P]

`--data-dir` defaults to `$TESSERA_DATA_DIR` or `.tessera`; the stack is described there in
`stack.json` (tessera_ops/stackfile.py)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from tessera import limits
from tessera.auth import is_user_id, mint_token
from tessera_ops import stack, stackfile


def _regions(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= limits.stack_regions_max:
        raise argparse.ArgumentTypeError(f"between 1 and {limits.stack_regions_max}")
    return count


def _user(text: str) -> str:
    if not is_user_id(text):
        raise argparse.ArgumentTypeError(f"not a user id: {text!r}")
    return text


def _data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=stackfile.default_data_dir(),
        help="where the stack keeps its state, logs and stack.json "
        "(default $TESSERA_DATA_DIR or .tessera)",
    )


def register(commands: Any) -> None:
    up = commands.add_parser("up", help="start the whole system on this machine")
    up.add_argument("--regions", type=_regions, default=2, help="regions (default 2)")
    up.add_argument("--venue", type=Path, default=stack.DEMO_VENUE, help="venue of the demo event")
    _data_dir(up)
    up.set_defaults(handler=_up)
    down = commands.add_parser("down", help="stop the stack `tessera up` started")
    _data_dir(down)
    down.set_defaults(handler=_down)
    notifier = commands.add_parser(
        "notifier",
        help="run the notifier (order confirmations by email and SMS; docs/notifications.md)",
    )
    notifier.add_argument("args", nargs=argparse.REMAINDER, help="passed on: --host, --port")
    notifier.set_defaults(handler=_notifier)
    friends = commands.add_parser("friends", help="manage dev users' friends on the local stack")
    friend_commands = friends.add_subparsers(dest="friends_command", required=True)
    add = friend_commands.add_parser("add", help="make two users friends (both ways)")
    add.add_argument("user", type=_user)
    add.add_argument("friend", type=_user)
    _data_dir(add)
    add.set_defaults(handler=_friends_add)


def _up(args: argparse.Namespace) -> int:
    if not args.venue.is_file():
        print(f"tessera up: no venue file {args.venue}", file=sys.stderr)
        return 2
    return stack.up(stack.UpOptions(regions=args.regions, venue=args.venue, data_dir=args.data_dir))


def _notifier(args: argparse.Namespace) -> int:
    """`python -m notifier` in place of this process: the tooling starts tiers, never imports
    them. Configured by `TESSERA_NATS_URL`, `TESSERA_REDIS_URL`, `TESSERA_NOTIFY_*`."""
    os.execv(sys.executable, [sys.executable, "-m", "notifier", *args.args])  # noqa: S606
    return 0  # not reached


def _down(args: argparse.Namespace) -> int:
    return stack.down(args.data_dir)


def _friends_add(args: argparse.Namespace) -> int:
    try:
        running = stackfile.read_stack(args.data_dir)
    except FileNotFoundError:
        print(f"tessera friends: no stack running from {args.data_dir}", file=sys.stderr)
        return 1
    for user, friend in ((args.user, args.friend), (args.friend, args.user)):
        token = mint_token(user, running.jwt_secret)
        response = httpx.put(
            f"{running.writer_url}/v1/me/friends/{friend}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        if response.status_code >= 300:
            print(f"tessera friends: {user} → {friend}: {response.text}", file=sys.stderr)
            return 1
    print(f"{args.user} and {args.friend} are friends")
    return 0
