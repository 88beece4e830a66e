"""Hashcash-style proof of work for joining a waiting room while an event is "under attack".

`GET /v1/events/{event_id}/queue/challenge` hands out a signed challenge (edge/signing.py: the
event, a random nonce, the difficulty in bits, an expiry `limits.edge_pow_challenge_ttl_s` away).
The client finds a `solution` (1..`limits.edge_pow_solution_chars_max` visible ASCII characters)
such that `SHA-256(challenge + ":" + solution)` starts with at least `difficulty` zero bits, and
sends both with its join. Finding one takes 2**difficulty hashes on average; checking it takes
one hash and one HMAC, so the edge spends microseconds where a bot farm spends CPU-seconds per
account. A challenge is bound to its event, cannot be easier than the room's current difficulty,
and is usable once: the room records its nonce in Redis (SET NX, until it expires), so a solved
challenge cannot be shared between accounts.

`solve` is the reference solver (tests, the onsale simulator); browsers do the same with
WebCrypto. docs/edge-waiting-room.md has its measured cost per difficulty.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import uuid
from typing import Final, Literal, TypeAlias

from edge.signing import Challenge, Signer, TokenError
from tessera import limits

ALGORITHM: Final = "sha256-leading-zero-bits"
SOLUTION_PATTERN: Final = rf"^[!-~]{{1,{limits.edge_pow_solution_chars_max}}}$"
_SOLUTION: Final = re.compile(SOLUTION_PATTERN)

PowCode: TypeAlias = Literal["proof_of_work_required", "proof_of_work_invalid"]


class PowError(Exception):
    """A join without a valid proof of work; `code` is the API error code (HTTP 403)."""

    def __init__(self, code: PowCode, message: str) -> None:
        super().__init__(message)
        self.code: PowCode = code


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


def _digest(challenge: str, solution: str) -> bytes:
    return hashlib.sha256(f"{challenge}:{solution}".encode()).digest()


def meets(challenge: str, solution: str, difficulty: int) -> bool:
    """Whether `solution` solves `challenge` at `difficulty` bits (shape checked too)."""
    if _SOLUTION.fullmatch(solution) is None:
        return False
    return leading_zero_bits(_digest(challenge, solution)) >= difficulty


def solve(challenge: str, difficulty: int) -> str:
    """The first decimal counter that solves `challenge` (2**difficulty hashes on average)."""
    if not 0 <= difficulty <= limits.edge_pow_difficulty_max:
        raise ValueError(f"difficulty must be in 0..{limits.edge_pow_difficulty_max}")
    prefix = hashlib.sha256(f"{challenge}:".encode())
    shift = 256 - difficulty
    for counter in itertools.count():
        attempt = prefix.copy()
        solution = str(counter)
        attempt.update(solution.encode())
        if int.from_bytes(attempt.digest(), "big") >> shift == 0:
            return solution
    raise AssertionError("unreachable")  # pragma: no cover


def issue(
    signer: Signer, event_id: uuid.UUID, difficulty: int, now: float
) -> tuple[str, Challenge]:
    """A fresh signed challenge for `event_id`, and its payload."""
    challenge = Challenge(
        event_id=event_id,
        nonce=secrets.token_urlsafe(16),
        difficulty=difficulty,
        expires_at=int(now) + limits.edge_pow_challenge_ttl_s,
    )
    return signer.sign(challenge), challenge


def verify(
    signer: Signer,
    event_id: uuid.UUID,
    *,
    challenge: str | None,
    solution: str | None,
    difficulty_min: int,
    now: float,
) -> Challenge:
    """The verified challenge, or `PowError`. Replay is the caller's check (it needs Redis)."""
    if not challenge or not solution:
        raise PowError(
            "proof_of_work_required",
            f"this queue requires proof of work: GET /v1/events/{event_id}/queue/challenge, "
            'solve it, and send {"challenge", "solution"}',
        )
    try:
        payload = signer.verify_challenge(challenge, now)
    except TokenError as error:
        raise PowError("proof_of_work_invalid", f"{error}: fetch a new challenge") from None
    if payload.event_id != event_id:
        raise PowError("proof_of_work_invalid", "the challenge is for another event")
    if payload.difficulty < difficulty_min:
        raise PowError(
            "proof_of_work_invalid", "the difficulty was raised since: fetch a new challenge"
        )
    if not meets(challenge, solution, payload.difficulty):
        raise PowError("proof_of_work_invalid", "the solution does not solve the challenge")
    return payload
