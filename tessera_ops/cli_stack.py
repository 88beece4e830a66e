"""The local-stack commands of the `tessera` CLI:

    tessera up [--regions N] [--venue FILE] [--data-dir DIR]
    tessera status [--json] [--data-dir DIR]
    tessera down [--data-dir DIR]
    tessera friends add USER FRIEND [--data-dir DIR]
    tessera notifier [--host H] [--port P]

`--data-dir` defaults to `$TESSERA_DATA_DIR` or `.tessera`; the stack is described there in
`stack.json` (tessera_ops/stackfile.py).

`tessera status` exits 0 when every service is ready, 1 when one is not (or is down, or `up`
itself is gone), 2 when no stack runs from the data directory."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec

from tessera import limits
from tessera.auth import is_user_id
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
    status = commands.add_parser(
        "status", help="every service of the running stack: pid, uptime, restarts, readiness"
    )
    status.add_argument(
        "--json", action="store_true", help="a JSON list instead of a table (docs/operations.md)"
    )
    _data_dir(status)
    status.set_defaults(handler=_status)
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


EXIT_READY: Final = 0
EXIT_NOT_READY: Final = 1
EXIT_NO_STACK: Final = 2
_STATUS_COLUMNS: Final = ("SERVICE", "REGION", "PID", "UPTIME", "RESTARTS", "READY", "URL")


def _status(args: argparse.Namespace) -> int:
    try:
        running, services = stack.status(args.data_dir)
    except FileNotFoundError:
        print(f"tessera status: no stack running from {args.data_dir}", file=sys.stderr)
        return EXIT_NO_STACK
    except (OSError, ValueError) as error:  # unreadable, or not a stack file of this version
        print(f"tessera status: {args.data_dir / stackfile.STACK_FILE}: {error}", file=sys.stderr)
        return EXIT_NO_STACK
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(services)) + b"\n")
        sys.stdout.flush()
    else:
        print(status_table(services))
    supervised = stack.pid_alive(running.supervisor_pid)
    if not supervised:
        print(
            f"tessera status: tessera up (pid {running.supervisor_pid}) is not running: nothing "
            "restarts what dies; `tessera down` removes what is left",
            file=sys.stderr,
        )
    all_ready = bool(services) and all(service.ready for service in services)
    return EXIT_READY if supervised and all_ready else EXIT_NOT_READY


def status_table(services: list[stackfile.ServiceStatus]) -> str:
    """`tessera status` for people: a row per service, then how many are ready."""
    rows = [_STATUS_COLUMNS]
    for service in services:
        readiness = {"running": "ready" if service.ready else "NOT READY"}.get(
            service.state, f"down ({service.state})"
        )
        rows.append(
            (
                service.name,
                service.region or "-",
                "-" if service.pid is None else str(service.pid),
                "-" if service.uptime_s is None else duration(service.uptime_s),
                str(service.restarts),
                readiness,
                service.url,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(_STATUS_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    ready = sum(service.ready for service in services)
    lines.append(f"{ready} of {len(services)} ready")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """42s, 3m07s, 2h05m, 1d03h: an uptime at a glance."""
    whole = int(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _friends_add(args: argparse.Namespace) -> int:
    try:
        running = stackfile.read_stack(args.data_dir)
    except FileNotFoundError:
        print(f"tessera friends: no stack running from {args.data_dir}", file=sys.stderr)
        return 1
    mint = stackfile.fan_minter(running)
    for user, friend in ((args.user, args.friend), (args.friend, args.user)):
        token = mint(user)
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
