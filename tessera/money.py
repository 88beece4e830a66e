"""Money: amounts are integers in a currency's minor unit, and a currency's *exponent* (ISO 4217
"minor unit") says how many of them make one major unit: 2 for USD (cents), 0 for JPY (there is
no smaller yen), 3 for BHD (fils). A client shows `amount / 10**exponent`; dividing by 100
blindly shows ¥4,500 as ¥45.

`EXPONENTS` is the currencies an event may be priced in. An event's tiers all use one currency
(a hold's or order's `amount` is one sum), and it must be one of these (docs/venue-format.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["EXPONENTS", "MoneyError", "event_currency", "exponent"]

# ISO 4217 minor units of the currencies Tessera accepts (the list's values as published by the
# ISO 4217 maintenance agency). A currency missing here is refused rather than guessed at 2.
EXPONENTS: Final[dict[str, int]] = {
    # no minor unit
    "CLP": 0,
    "ISK": 0,
    "JPY": 0,
    "KRW": 0,
    "VND": 0,
    # three decimals
    "BHD": 3,
    "JOD": 3,
    "KWD": 3,
    "OMR": 3,
    "TND": 3,
    # two decimals
    "AED": 2,
    "AUD": 2,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "MXN": 2,
    "MYR": 2,
    "NOK": 2,
    "NZD": 2,
    "PHP": 2,
    "PLN": 2,
    "RON": 2,
    "SAR": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TRY": 2,
    "TWD": 2,
    "USD": 2,
    "ZAR": 2,
}

# The currency of an event without price tiers (every seat costs 0): the writer's historical
# default, kept so such events keep answering as before.
DEFAULT_CURRENCY: Final = "USD"


class MoneyError(ValueError):
    """A currency Tessera does not accept, or tiers that mix currencies."""


def exponent(currency: str) -> int:
    """The ISO 4217 minor unit of `currency`; `MoneyError` for one not in `EXPONENTS`."""
    found = EXPONENTS.get(currency)
    if found is None:
        raise MoneyError(
            f"currency {currency[:8]!r} is not accepted; accepted: {', '.join(sorted(EXPONENTS))}"
        )
    return found


def event_currency(currencies: Iterable[str]) -> str:
    """The one currency of an event's price tiers (`DEFAULT_CURRENCY` when it has none);
    `MoneyError` when they mix currencies or use one not accepted."""
    distinct = sorted(set(currencies))
    if len(distinct) > 1:
        raise MoneyError(f"price tiers mix currencies ({', '.join(distinct)}); use one per event")
    currency = distinct[0] if distinct else DEFAULT_CURRENCY
    exponent(currency)
    return currency
