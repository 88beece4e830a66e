"""The retry schedule: exponential from the base, capped, with jitter only ever shortening it."""

from __future__ import annotations

import pytest

from notifier.backoff import retry_delay_s, schedule_s


def test_doubles_from_the_base_up_to_the_cap() -> None:
    assert schedule_s(8, base_s=5, cap_s=600) == [5, 10, 20, 40, 80, 160, 320]
    assert schedule_s(10, base_s=5, cap_s=600)[-2:] == [600, 600]
    assert schedule_s(1, base_s=5, cap_s=600) == []


def test_the_default_schedule_spans_about_half_an_hour() -> None:
    """Defaults (docs/notifications.md): 10 attempts, 5 s base, 10 min cap, before jitter."""
    assert sum(schedule_s(10, base_s=5, cap_s=600)) == 1_835


def test_jitter_takes_up_to_its_share_off() -> None:
    assert retry_delay_s(3, base_s=1, cap_s=60, jitter=0.2, rand=lambda: 0.0) == 4
    assert retry_delay_s(3, base_s=1, cap_s=60, jitter=0.2, rand=lambda: 1.0) == pytest.approx(3.2)
    assert retry_delay_s(3, base_s=1, cap_s=60, jitter=1.0, rand=lambda: 0.5) == 2
    for _ in range(100):
        assert 3.2 <= retry_delay_s(3, base_s=1, cap_s=60, jitter=0.2) <= 4


def test_huge_attempt_numbers_stay_at_the_cap() -> None:
    assert retry_delay_s(10_000, base_s=5, cap_s=600) == 600


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        retry_delay_s(0, base_s=1, cap_s=2)
