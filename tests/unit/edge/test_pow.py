"""Proof of work (edge/pow.py): the solver's answers verify, and nothing else does."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from edge import pow as proof_of_work
from edge.signing import Signer
from tessera import limits

SECRET = "p" * 40
NOW = 1_700_000_000.0
EVENT = uuid.UUID("3f1c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b")


def test_leading_zero_bits() -> None:
    assert proof_of_work.leading_zero_bits(b"\x00" * 32) == 256
    assert proof_of_work.leading_zero_bits(b"\x80" + b"\x00" * 31) == 0
    assert proof_of_work.leading_zero_bits(b"\x00\x01" + b"\xff" * 30) == 15
    assert proof_of_work.leading_zero_bits(b"\x0f" + b"\xff" * 31) == 4


@pytest.mark.parametrize("difficulty", [0, 1, 8, 12])
def test_solve_finds_a_solution_that_meets_the_difficulty(difficulty: int) -> None:
    solution = proof_of_work.solve("a-challenge", difficulty)
    digest = hashlib.sha256(f"a-challenge:{solution}".encode()).digest()
    assert proof_of_work.leading_zero_bits(digest) >= difficulty
    assert proof_of_work.meets("a-challenge", solution, difficulty)
    assert len(solution) <= limits.edge_pow_solution_chars_max


def test_meets_rejects_wrong_and_misshapen_solutions() -> None:
    solution = proof_of_work.solve("c", 12)
    assert not proof_of_work.meets("other", solution, 12)
    assert not proof_of_work.meets("c", "", 0)
    assert not proof_of_work.meets("c", "x" * (limits.edge_pow_solution_chars_max + 1), 0)
    assert not proof_of_work.meets("c", "a b", 0)
    assert proof_of_work.meets("c", "x" * limits.edge_pow_solution_chars_max, 0)


def test_solve_rejects_impossible_difficulties() -> None:
    with pytest.raises(ValueError, match="difficulty"):
        proof_of_work.solve("c", limits.edge_pow_difficulty_max + 1)


def test_issue_then_verify() -> None:
    signer = Signer(SECRET)
    token, challenge = proof_of_work.issue(signer, EVENT, 10, NOW)
    assert challenge.difficulty == 10
    assert challenge.expires_at == int(NOW) + limits.edge_pow_challenge_ttl_s
    solution = proof_of_work.solve(token, 10)
    verified = proof_of_work.verify(
        signer, EVENT, challenge=token, solution=solution, difficulty_min=10, now=NOW
    )
    assert verified == challenge
    # Each challenge is new: different nonces.
    assert proof_of_work.issue(signer, EVENT, 10, NOW)[1].nonce != challenge.nonce


def _verify_code(
    signer: Signer,
    token: str | None,
    solution: str | None,
    *,
    event: uuid.UUID = EVENT,
    difficulty_min: int = 10,
    now: float = NOW,
) -> str:
    with pytest.raises(proof_of_work.PowError) as raised:
        proof_of_work.verify(
            signer,
            event,
            challenge=token,
            solution=solution,
            difficulty_min=difficulty_min,
            now=now,
        )
    return raised.value.code


def test_verify_refusals() -> None:
    signer = Signer(SECRET)
    token, _ = proof_of_work.issue(signer, EVENT, 10, NOW)
    solution = proof_of_work.solve(token, 10)
    assert _verify_code(signer, None, None) == "proof_of_work_required"
    assert _verify_code(signer, token, None) == "proof_of_work_required"
    assert _verify_code(signer, None, solution) == "proof_of_work_required"
    invalid = "proof_of_work_invalid"
    # wrong solution (almost surely: a 1-in-1024 chance that "0" solves it too)
    wrong = "0" if solution != "0" else "1"
    if not proof_of_work.meets(token, wrong, 10):
        assert _verify_code(signer, token, wrong) == invalid
    assert _verify_code(signer, token, solution, event=uuid.uuid4()) == invalid
    assert _verify_code(signer, token, solution, difficulty_min=11) == invalid
    assert (
        _verify_code(signer, token, solution, now=NOW + limits.edge_pow_challenge_ttl_s) == invalid
    )
    assert _verify_code(Signer("q" * 40), token, solution) == invalid
    # Another character inside the signature (not the last, whose low bits are base64 padding;
    # and never the same one: the nonce is random).
    tampered = token[:-3] + ("B" if token[-3] == "A" else "A") + token[-2:]
    assert _verify_code(signer, tampered, solution) == invalid
    # another kind of token signed by the same secret is no challenge
    assert _verify_code(signer, "qt" + token[2:], solution) == invalid
