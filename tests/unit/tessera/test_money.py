"""tessera/money.py: ISO 4217 exponents and an event's one currency."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera import money
from tessera.venue import load_venue_file


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("EUR", 2), ("JPY", 0), ("KRW", 0), ("BHD", 3), ("KWD", 3), ("IDR", 2)],
)
def test_exponents_follow_iso_4217(currency: str, exponent: int) -> None:
    assert money.exponent(currency) == exponent


def test_every_listed_currency_is_three_capitals_with_exponent_0_to_3() -> None:
    for currency, exponent in money.EXPONENTS.items():
        assert len(currency) == 3 and currency.isascii() and currency.isupper()
        assert exponent in (0, 2, 3)


def test_an_unknown_currency_is_refused_not_guessed() -> None:
    with pytest.raises(money.MoneyError, match="'XTS' is not accepted"):
        money.exponent("XTS")


def test_an_events_currency() -> None:
    assert money.event_currency(["JPY", "JPY"]) == "JPY"
    assert money.event_currency([]) == money.DEFAULT_CURRENCY
    with pytest.raises(money.MoneyError, match=r"mix currencies \(EUR, GBP\)"):
        money.event_currency(["GBP", "EUR"])
    with pytest.raises(money.MoneyError, match="not accepted"):
        money.event_currency(["ABC"])


def test_the_example_venues_are_in_an_accepted_currency() -> None:
    venues = Path(__file__).resolve().parents[3] / "tessera_ops" / "venues"
    for path in sorted(venues.glob("*.json")):
        venue = load_venue_file(path)
        assert money.event_currency(t.currency for t in venue.spec.price_tiers) == "USD"
