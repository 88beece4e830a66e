"""The `tessera` operator CLI.

    tessera venue generate --kind stadium|theatre [--seats N] [--seed S] [--out PATH]
    tessera venue validate PATH

Exit codes: 0 success, 1 I/O error, 2 usage error or invalid venue.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tessera.tooling import venue_gen
from tessera.venue import Venue, VenueError, dump_venue, load_venue_file

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


def _seat_count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera operator tooling.")
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
        "--seats", type=_seat_count, help=f"exact seat count (default 70000 / 500; {bounds})"
    )
    generate.add_argument("--seed", type=int, default=1, help="same seed, same venue (default 1)")
    generate.add_argument("--out", type=Path, help="output file (default: standard output)")
    generate.set_defaults(handler=_generate)

    validate = venue_commands.add_parser("validate", help="check a venue file and summarise it")
    validate.add_argument("path", type=Path)
    validate.set_defaults(handler=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    args = _parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
