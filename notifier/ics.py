"""The confirmation's calendar file (RFC 5545): one VEVENT for the order, attached to the email
as `tickets.ics` so the fan's calendar gets the event in one tap.

The UID is the order's (`order-<order_id>@<sender's domain>`), the same on every attempt, so a
second copy of the email updates the entry instead of adding one. Tessera's events carry no start
time yet: DTSTART is the event's onsale time (the confirmation's time for a confirmation written
before the onsale time travelled with it), and the description says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from tessera.contracts import OrderConfirmation

PRODID: Final = "-//Tessera//Tickets 1.0//EN"
# Without an end time a calendar shows a zero-length entry; three hours reads as "an evening".
_DURATION: Final = "PT3H"
_LINE_OCTETS_MAX: Final = 75
NO_START_TIME: Final = (
    "The event's start time is not known to Tessera: this entry is placed at its onsale time. "
    "Check the organiser's announcement for the doors and the start."
)


def escape(text: str) -> str:
    """A TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma and newlines escaped; other
    control characters dropped (they are not allowed in a content line)."""
    out = text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    out = out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\\n")
    return "".join(ch for ch in out if ch >= " " or ch == "\t")


def fold(line: str) -> str:
    """A content line folded at 75 octets (§3.1), never inside a UTF-8 sequence."""
    parts: list[str] = []
    current, size = "", 0
    limit = _LINE_OCTETS_MAX
    for ch in line:
        width = len(ch.encode())
        if size + width > limit:
            parts.append(current)
            current, size = " ", 1
            limit = _LINE_OCTETS_MAX
        current += ch
        size += width
    parts.append(current)
    return "\r\n".join(parts)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(confirmation: OrderConfirmation, domain: str) -> bytes:
    c = confirmation
    start = c.onsale_at or c.confirmed_at
    seats = ", ".join(c.seats)
    description = f"Order {c.order_id}\nSeats: {seats}\n\n{NO_START_TIME}"
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:order-{c.order_id}@{domain}",
        f"DTSTAMP:{stamp(c.confirmed_at)}",
        f"DTSTART:{stamp(start)}",
        f"DURATION:{_DURATION}",
        f"SUMMARY:{escape(' '.join(c.event_name.split()))}",
        f"DESCRIPTION:{escape(description)}",
    ]
    if c.venue_name:
        lines.append(f"LOCATION:{escape(' '.join(c.venue_name.split()))}")
    lines += ["STATUS:CONFIRMED", "TRANSP:OPAQUE", "END:VEVENT", "END:VCALENDAR"]
    return ("\r\n".join(fold(line) for line in lines) + "\r\n").encode()
