"""The `tessera` operator CLI.

    tessera venue generate --kind stadium|theatre [--seats N] [--seed S] [--out PATH]
    tessera venue validate PATH
    tessera token --user ID [--ttl-s N] [--data-dir D]   (the running stack's identity keys,
                                                          or HS256 with $TESSERA_JWT_SECRET)
    tessera up | status [--json] | down | friends add USER FRIEND | notifier   (cli_stack.py)
    tessera audit [--event ID] [--database-url URL] …      (tessera_ops/audit.py)
    tessera payments reconcile [--apply] [--older-than-s S] (cli_payments.py)
    tessera report --event ID [--csv | --json]              (cli_report.py)
    tessera onsale [--fans N] [--json] …                   (tessera_ops/onsale.py)
    tessera jetstream apply [--regional --hub-domain D] [--replicas N]   (cli_jetstream.py)
    tessera webhooks replay [--endpoint ID] [--limit N] [--dry-run]      (cli_webhooks.py)

Exit codes: 0 success, 1 I/O error, 2 usage error, invalid venue, or a missing or short secret.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tessera import limits
from tessera.auth import JWT_SECRET_ENV, check_secret, mint_token
from tessera.venue import Venue, VenueError, dump_venue, load_venue_file
from tessera_ops import (
    audit,
    cli_jetstream,
    cli_payments,
    cli_report,
    cli_stack,
    cli_webhooks,
    onsale,
    stackfile,
    venue_gen,
)

EXIT_OK: Final = 0
EXIT_IO: Final = 1
EXIT_INVALID: Final = 2


def _summary(venue: Venue) -> str:
    return (
        f"{venue.name}: {len(venue.layouts)} sections, {venue.row_count} rows, "
        f"{venue.seat_count} seats, {venue.blocked_count} blocked"
    )


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory so readers never see half a venue."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "xb") as file:  # plain open(): the file gets the usual umask permissions
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _generate(args: argparse.Namespace) -> int:
    try:
        venue = venue_gen.generate(args.kind, args.seats, args.seed)
    except ValueError as exc:  # seats out of range; VenueError would be a generator bug
        print(f"tessera venue generate: {exc}", file=sys.stderr)
        return EXIT_INVALID
    data = dump_venue(venue)
    if args.out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        _write_atomically(args.out, data)
    except OSError as exc:
        print(f"tessera venue generate: cannot write {args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_IO
    print(f"wrote {args.out}: {_summary(venue)}")
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    try:
        venue = load_venue_file(args.path)
    except OSError as exc:
        print(f"tessera venue validate: {exc}", file=sys.stderr)
        return EXIT_IO
    except VenueError as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"ok {_summary(venue)}")
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    """Print a fan token the way the running local stack's tiers accept it: signed with its
    identity provider's key ring (stack.json names the file). `TESSERA_JWT_SECRET`, when set,
    signs HS256 instead, for tiers started with that development secret. The secret comes only
    from the environment: a command-line argument would show up in `ps` and shell history."""
    secret = os.environ.get(JWT_SECRET_ENV)
    minter: stackfile.FanMinter | None
    if secret:
        try:
            check_secret(secret)
        except ValueError as exc:  # the message gives the length rule, never the secret
            print(f"tessera token: {JWT_SECRET_ENV}: {exc}", file=sys.stderr)
            return EXIT_INVALID
        minter = functools.partial(mint_token, secret=secret, ttl_s=args.ttl_s)
    else:
        minter = _stack_minter(args.data_dir, args.ttl_s)
    if minter is None:
        print(
            f"tessera token: {JWT_SECRET_ENV} is not set and no stack is running "
            f"(`tessera up`) in {args.data_dir}",
            file=sys.stderr,
        )
        return EXIT_INVALID
    try:
        token = minter(args.user)
    except ValueError as exc:  # bad user id or ttl
        print(f"tessera token: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(token)
    return EXIT_OK


def _stack_minter(data_dir: Path, ttl_s: int) -> stackfile.FanMinter | None:
    """The running local stack's way to mint tokens (stackfile.fan_minter); None when no stack
    runs there or it names no keys (a stack file or key file that cannot be read)."""
    try:
        return stackfile.fan_minter(stackfile.read_stack(data_dir), ttl_s=ttl_s)
    except (OSError, ValueError):  # msgspec.DecodeError is a ValueError
        return None


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _version() -> str:
    """The installed distribution's version: pyproject.toml is its only source."""
    try:
        return importlib.metadata.version("tessera")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera operator tooling.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    venue = commands.add_parser("venue", help="generate and validate venue files")
    venue_commands = venue.add_subparsers(dest="venue_command", required=True, metavar="COMMAND")

    generate = venue_commands.add_parser("generate", help="write a realistic venue file")
    generate.add_argument("--kind", choices=venue_gen.KINDS, required=True)
    bounds = ", ".join(
        f"{kind} {low}..{high}"
        for kind in venue_gen.KINDS
        for low, high in [venue_gen.seat_bounds(kind)]
    )
    generate.add_argument(
        "--seats", type=_whole_number, help=f"exact seat count (default 70000 / 500; {bounds})"
    )
    generate.add_argument("--seed", type=int, default=1, help="same seed, same venue (default 1)")
    generate.add_argument("--out", type=Path, help="output file (default: standard output)")
    generate.set_defaults(handler=_generate)

    validate = venue_commands.add_parser("validate", help="check a venue file and summarise it")
    validate.add_argument("path", type=Path)
    validate.set_defaults(handler=_validate)

    token = commands.add_parser(
        "token",
        help="print a fan JWT for development: signed with the running stack's identity "
        f"provider keys, or HS256 with ${JWT_SECRET_ENV} when that is set",
    )
    token.add_argument(
        "--user",
        required=True,
        help=f"user id: 1-{limits.user_id_chars_max} characters of [A-Za-z0-9._-]",
    )
    token.add_argument(
        "--ttl-s",
        type=_whole_number,
        default=limits.jwt_default_ttl_s,
        help=f"lifetime in seconds, 1..{limits.jwt_ttl_s_max} (default {limits.jwt_default_ttl_s})",
    )
    token.add_argument(
        "--data-dir",
        type=Path,
        default=stackfile.default_data_dir(),
        help="the running stack's data directory (default $TESSERA_DATA_DIR or .tessera)",
    )
    token.set_defaults(handler=_token)

    audit.register(commands)
    cli_payments.register(commands)
    cli_report.register(commands)
    onsale.register(commands)
    cli_stack.register(commands)
    cli_jetstream.register(commands)
    cli_webhooks.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    args = _parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
