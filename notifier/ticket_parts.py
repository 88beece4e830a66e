"""The tickets in the confirmation email: an HTML alternative with one inline QR code per ticket
(PNG, referenced by `cid:`, which mail clients show where they block `data:` URLs and SVG), and
the calendar file (notifier/ics.py) as an attachment.

The message becomes:

    multipart/mixed
      multipart/alternative
        text/plain                     the order, and every ticket's code as text
        multipart/related
          text/html                    the order, one QR code per ticket
          image/png, one per ticket    Content-ID <ticket-<ticket_id>@<domain>>
      text/calendar; method=PUBLISH    tickets.ics

Its size is bounded by the order's: at most `limits.seats_per_hold_max` tickets of about a
kilobyte of PNG each.
"""

from __future__ import annotations

import html
from email.message import EmailMessage

from notifier import ics
from tessera import tickets as tk
from tessera.contracts import OrderConfirmation


def content_id(ticket_id: object, domain: str) -> str:
    return f"ticket-{ticket_id}@{domain}"


def body_html(confirmation: OrderConfirmation, domain: str) -> str:
    c = confirmation
    e = html.escape
    rows = "\n".join(
        f"<li><p><strong>Seat {e(t.seat)}</strong></p>"
        f'<img src="cid:{content_id(t.ticket_id, domain)}" alt="Ticket QR code, seat {e(t.seat)}"'
        f' width="240" height="240" style="image-rendering:pixelated">'
        f'<p style="font-size:small;color:#555">Ticket {e(str(t.ticket_id))}</p></li>'
        for t in c.tickets
    )
    venue = f" at {e(c.venue_name)}" if c.venue_name else ""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Your tickets for {e(c.event_name)}</title></head>\n"
        '<body style="font-family:sans-serif">\n'
        f"<h1>Your tickets for {e(c.event_name)}{venue}</h1>\n"
        f"<p>Order {e(str(c.order_id))} is confirmed: {len(c.tickets)} ticket(s). Show each code"
        " at the door; each admits once.</p>\n"
        f'<ul style="list-style:none;padding:0">\n{rows}\n</ul>\n'
        "<p>The calendar entry is attached (tickets.ics).</p>\n"
        "</body></html>\n"
    )


def add_tickets(message: EmailMessage, confirmation: OrderConfirmation, *, domain: str) -> None:
    """Turn a plain-text confirmation into the structure above."""
    message.add_alternative(body_html(confirmation, domain), subtype="html")
    html_part = message.get_payload()[1]  # type: ignore[index]
    assert isinstance(html_part, EmailMessage)
    for ticket in confirmation.tickets:
        html_part.add_related(
            tk.qr_png(ticket.token),
            maintype="image",
            subtype="png",
            cid=f"<{content_id(ticket.ticket_id, domain)}>",
            filename=f"ticket-{ticket.seat.replace(':', '-')}.png",
            disposition="inline",
        )
    message.add_attachment(
        ics.calendar(confirmation, domain),
        maintype="text",
        subtype="calendar",
        filename="tickets.ics",
        params={"method": "PUBLISH"},
    )
