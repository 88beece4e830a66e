"""When a failed confirmation is tried again: exponential backoff, capped, with jitter.

The wait is asked of the server (`msg.nak(delay=...)`), so a retry costs the notifier nothing
while it waits and survives a restart of the notifier.
"""

from __future__ import annotations

import random
from collections.abc import Callable

# Jitter is not a secret: the module's generator is fine, and tests pass their own.
_random: Callable[[], float] = random.Random().random  # noqa: S311


def retry_delay_s(
    attempt: int,
    *,
    base_s: float,
    cap_s: float,
    jitter: float = 0.0,
    rand: Callable[[], float] = _random,
) -> float:
    """The wait after failed attempt `attempt` (1 for the first delivery): `base_s * 2**(n-1)`,
    at most `cap_s`, less a random share of up to `jitter` of it.

    Jitter matters when an SMTP server comes back from an outage: every message that failed
    against it would otherwise return in the same instant, in lockstep, at every step.
    """
    if attempt < 1:
        raise ValueError("attempts count from 1")
    # 2**62 seconds is past any cap: the exponent stops growing long before a float overflows.
    raw = min(cap_s, base_s * float(2 ** min(attempt - 1, 62)))
    return raw * (1 - jitter * rand())


def schedule_s(attempts: int, *, base_s: float, cap_s: float) -> list[float]:
    """The waits between `attempts` attempts, without jitter: `attempts - 1` of them."""
    return [retry_delay_s(n, base_s=base_s, cap_s=cap_s) for n in range(1, attempts)]
