"""What a fan receives: the confirmation as an email and as an SMS, and where each goes."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Final

from notifier import ticket_parts
from tessera.contracts import OrderConfirmation

# ISO 4217 minor-unit digits where they are not 2 (amounts travel in minor units).
_MINOR_DIGITS: Final = {
    "BHD": 3, "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "IQD": 3, "ISK": 0, "JOD": 3, "JPY": 0,
    "KMF": 0, "KRW": 0, "KWD": 3, "LYD": 3, "OMR": 3, "PYG": 0, "RWF": 0, "TND": 3, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
}  # fmt: skip
# SMS bodies stay within a few segments; seat lists longer than this are summarised.
_SMS_SEATS_SHOWN: Final = 4


def format_amount(amount_minor: int, currency: str) -> str:
    """`12345, "EUR"` → `"123.45 EUR"`; `500, "JPY"` → `"500 JPY"`."""
    digits = _MINOR_DIGITS.get(currency, 2)
    if digits == 0:
        return f"{amount_minor} {currency}"
    whole, fraction = divmod(amount_minor, 10**digits)
    return f"{whole}.{fraction:0{digits}d} {currency}"


def email_recipient(confirmation: OrderConfirmation, fallback_domain: str) -> str | None:
    """The fan's address, else `<user_id>@<fallback_domain>` when a fallback is configured (the
    local demo's fans have none), else None: no email."""
    if confirmation.email is not None:
        return confirmation.email
    if fallback_domain:
        return f"{confirmation.user_id}@{fallback_domain}"
    return None


def message_id(confirmation: OrderConfirmation, sender: str) -> str:
    """One Message-ID per order, whatever the attempt: a second copy (the window described in
    docs/notifications.md) carries the same id, so mail stores and catchers can fold it."""
    domain = sender.rsplit("@", 1)[-1]
    return f"<order-{confirmation.order_id}@{domain}>"


def body_text(confirmation: OrderConfirmation) -> str:
    seats = "\n".join(f"  - {seat}" for seat in confirmation.seats)
    text = (
        f"Your order for {confirmation.event_name} is confirmed.\n\n"
        f"Order: {confirmation.order_id}\n"
        f"Seats:\n{seats}\n"
        f"Total: {format_amount(confirmation.amount, confirmation.currency)}\n"
        f"Confirmed at: {confirmation.confirmed_at.isoformat()}\n"
    )
    if confirmation.tickets:
        # A plain-text reader still has every ticket: the code a door scanner reads, as text.
        listed = "\n".join(f"  - {ticket.seat}: {ticket.token}" for ticket in confirmation.tickets)
        text += (
            f"\nYour tickets (one per seat; the HTML version of this email shows them as QR "
            f"codes, and the calendar entry is attached):\n{listed}\n"
        )
    return text


def build_email(
    confirmation: OrderConfirmation, recipient: str, *, sender: str, sender_name: str
) -> EmailMessage:
    """The confirmation email. EmailMessage refuses CR/LF in any header value, a second guard
    (after the contract's patterns) against header injection."""
    message = EmailMessage()
    message["From"] = formataddr((sender_name, sender)) if sender_name else sender
    message["To"] = recipient
    # Names are free text: folded onto one line, not refused (the order is still confirmed).
    message["Subject"] = f"Your tickets for {' '.join(confirmation.event_name.split())}"
    message["Date"] = format_datetime(confirmation.confirmed_at)
    message["Message-ID"] = message_id(confirmation, sender)
    message["X-Tessera-Order"] = str(confirmation.order_id)
    message.set_content(body_text(confirmation))
    if confirmation.tickets:
        ticket_parts.add_tickets(message, confirmation, domain=sender.rsplit("@", 1)[-1])
    return message


def sms_text(confirmation: OrderConfirmation) -> str:
    seats = confirmation.seats[:_SMS_SEATS_SHOWN]
    more = len(confirmation.seats) - len(seats)
    listed = ", ".join(seats) + (f" +{more} more" if more else "")
    total = format_amount(confirmation.amount, confirmation.currency)
    event, order = confirmation.event_name, confirmation.order_id
    return f"Tessera: order {order} confirmed for {event}: {listed}, {total}."


def sms_payload(confirmation: OrderConfirmation, phone: str) -> dict[str, str]:
    """The webhook's JSON body (docs/notifications.md)."""
    return {
        "to": phone,
        "text": sms_text(confirmation),
        "order_id": str(confirmation.order_id),
        "event_id": str(confirmation.event_id),
    }


def idempotency_key(confirmation: OrderConfirmation) -> str:
    """The webhook's `Idempotency-Key`: the same for every attempt of one order's SMS."""
    return f"order-{confirmation.order_id}-sms"
