"""The edge sheds writes it could not pass to the writer in time (edge/upstream.py): against a real
slow stub writer (a Granian process answering each hold after DELAY_S) and a real edge, a burst of
more writes than the edge's writer connections can carry within
`limits.edge_write_queue_wait_s_max` gets fast 503s for the excess, with Retry-After, while every
write accepted succeeds, and nobody waits much past the bound."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from edge_support import (
    ADMISSION_SECRET,
    OPEN_LIMITS,
    fan_headers,
    raw_post,
    start_slow_writer,
    timed_burst,
)
from writer_support import WRITER_ADMIN_KEY, WRITER_JWT_SECRET

from tessera import limits
from tessera_ops.processes import ServiceProcess, start_edge

pytestmark = pytest.mark.anyio

DELAY_S = 0.5
EVENT = "6a1d3c9e-2f47-4b8a-9c55-0e3f7b1d2a90"
# More than the connections (256) plus what the queue bound admits at DELAY_S (~512).
BURST = 1_200
WARM = 40
# A loaded two-core machine adds scheduling delay to every answer; the bound is what matters.
MARGIN_S = 1.5


@pytest.fixture(scope="module")
def slow_edge(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServiceProcess]:
    workdir: Path = tmp_path_factory.mktemp("shedding")
    writer = start_slow_writer(workdir / "writer", DELAY_S)
    try:
        edge = start_edge(
            workdir / "edge",
            {
                "TESSERA_ORIGIN_URLS": writer.url,
                "TESSERA_WRITER_URL": writer.url,
                "TESSERA_REDIS_URL": redis_url,
                "TESSERA_JWT_SECRET": WRITER_JWT_SECRET,
                "TESSERA_ADMIN_KEY": WRITER_ADMIN_KEY,
                "TESSERA_ADMISSION_SECRET": ADMISSION_SECRET,
                "TESSERA_RATE_LIMITS": json.dumps(OPEN_LIMITS),
            },
        )
        try:
            yield edge
        finally:
            edge.stop()
    finally:
        writer.stop()


def holds(edge: ServiceProcess, count: int, prefix: str) -> list[bytes]:
    path = f"/v1/events/{EVENT}/holds"
    return [
        raw_post(
            edge.url,
            path,
            {**fan_headers("crowd", f"{prefix}-{i}"), "Content-Type": "application/json"},
            b'{"seats": ["S:A:1"]}',
        )
        for i in range(count)
    ]


async def test_a_burst_past_the_queue_bound_gets_fast_503s_and_the_rest_succeeds(
    slow_edge: ServiceProcess,
) -> None:
    # The edge learns how long a write holds a connection.
    warm = await timed_burst(slow_edge.url, holds(slow_edge, WARM, "warm"))
    assert {answer.status for answer, _ in warm} == {201}

    answers = await timed_burst(slow_edge.url, holds(slow_edge, BURST, "burst"))

    statuses = [answer.status for answer, _ in answers]
    assert set(statuses) <= {201, 503}, sorted(set(statuses))
    accepted = [seconds for answer, seconds in answers if answer.status == 201]
    refused = [(answer, seconds) for answer, seconds in answers if answer.status == 503]
    assert len(accepted) >= limits.edge_writer_connections_max, len(accepted)
    assert refused, "nothing was shed"
    for answer, _ in refused:
        assert answer.headers["retry-after"] == "1"
        assert json.loads(answer.body)["error"]["code"] == "overloaded"
    # Refused at once, not after waiting: the writer's first answers take DELAY_S.
    assert min(seconds for _, seconds in refused) < DELAY_S, sorted(s for _, s in refused)[:5]
    bound = limits.edge_write_queue_wait_s_max + DELAY_S + MARGIN_S
    slowest = max(seconds for _, seconds in answers)
    assert slowest < bound, slowest
    metrics = httpx.get(f"{slow_edge.url}/metrics").text
    shed = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("tessera_edge_writes_shed_total{")
    )
    assert shed == len(refused)


async def test_after_the_burst_writes_pass_again(slow_edge: ServiceProcess) -> None:
    answers = await timed_burst(slow_edge.url, holds(slow_edge, 10, "after"))
    assert [answer.status for answer, _ in answers] == [201] * 10
