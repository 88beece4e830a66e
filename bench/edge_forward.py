"""The edge's CPU per forwarded write, at 64, 512 and 2,000 writes in flight, against a stub
writer; and the forwarding clients compared (issue 12).

    .venv/bin/python bench/edge_forward.py [--levels 64,512,2000] [--duration 8] [--warmup 2]
                                           [--delay-ms 2] [--clients httpx,aiohttp,lean|none]
                                           [--loop auto|asyncio] [--keep] [--json OUT]

Setup: Valkey (the edge needs a Redis), the **stub writer** (a bare ASGI app under Granian, one
worker, served as the tiers are: `--serve-stub`) answering `POST /v1/events/{e}/holds` with a
fixed 201 JSON body after `--delay-ms` (2 ms, to keep requests in flight at the writer as a real
one does) and `/readyz` with 200; and a real edge (`python -m edge`, one Granian worker) whose
writer and read node are the stub, every rate budget open and local (`OPEN_BUDGET`), no waiting
room. Fans are the house's keep-alive client (tessera/http1.py, `loadgen.pool`) in this process: N
connections, each sending the next hold as soon as the last is answered (closed loop), each
with its own fan's Bearer JWT (tessera.auth.mint_token) and an Idempotency-Key.

Per level (writes in flight = N), the targets take turns, each `--warmup` s then `--duration` s:

- **edge**: the fans talk to the edge, which forwards every hold to the stub;
- **direct**: the fans talk to the stub itself: its CPU per request is the ceiling (the least a
  Python ASGI server spends on such a request here);
- **forwarder-<client>** (`--clients`): a bare ASGI app (`--serve-forwarder`, under Granian,
  one worker) that forwards every request to the stub with that client and nothing else: the
  current httpx pool (`httpx.AsyncClient`, as the edge had it), aiohttp's `ClientSession` with a
  `TCPConnector(limit=...)`, and the edge's own pool (edge/upstream.py); each with the edge's
  writer connection limit. The forwarder's CPU per request minus the stub's direct CPU per
  request is about what the client costs.

CPU is read from /proc for each process tree (loadgen.cpu_seconds) around each run; "ms per
forward" = CPU seconds ÷ answers. Target: **≤ 0.15 ms of edge CPU per forward at every level**;
no failures. Prints each run and markdown tables, exits 1 when the target is missed; `--json OUT`
also writes the results.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import importlib.util
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from loadgen import (
    DISTURBED_CORES,
    cores,
    cpu_seconds,
    percentile_ms,
    pool,
    print_table,
    ratio,
    start_script_server,
    write_json,
)
from stack import ADMIN_KEY, JWT_SECRET, Stack, add_stack_args, print_machine, run_in_stack

from tessera import auth, limits
from tessera.http1 import HttpError, request_bytes
from tessera_ops.processes import ServiceProcess, start_edge
from tessera_ops.servers import start_valkey

LEVELS: Final = (64, 512, 2_000)
DURATION_S: Final = 8.0
WARMUP_S: Final = 2.0
DELAY_MS: Final = 2.0
# httpx last: at 2,000 in flight it does not finish, and its restart must not hit another run.
CLIENTS: Final = ("lean", "aiohttp", "httpx")
ADMISSION_SECRET: Final = "bench-edge-secret-" + "e" * 32  # a throwaway local secret
OPEN_BUDGET: Final = {"ip": {"per_s": 1_000_000, "burst": 1_000_000}, "store": "local"}
EVENT_ID: Final = "3f1c0f4e-8a52-4c1e-9a8e-6d1f0b7c2a11"
HOLD_BODY: Final = b'{"seats":["S:A:1","S:A:2"]}'
# What the stub answers a hold with: the size and shape of the writer's 201.
STUB_ANSWER: Final = json.dumps(
    {
        "hold_id": "0b6f6c4e-1d9a-4d55-8f0e-0e7a9c2b1f3d",
        "event_id": EVENT_ID,
        "user_id": "fan-000001",
        "seats": ["S:A:1", "S:A:2"],
        "expires_at": "2030-01-01T00:10:00Z",
        "extended": False,
    }
).encode()
REQUEST_TIMEOUT_S: Final = 30.0
# Target (issue 12).
EDGE_CPU_MS_MAX: Final = 0.15
ENV_DELAY_MS: Final = "BENCH_STUB_DELAY_MS"
ENV_TARGET: Final = "BENCH_FORWARD_TARGET"
ENV_CLIENT: Final = "BENCH_FORWARD_CLIENT"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON_HEADERS: Final = [(b"content-type", b"application/json")]


# --- the stub writer and the forwarders (their own processes, under Granian) ---


async def lifespan(receive: Receive, send: Send, on_stop: Callable[[], Awaitable[None]]) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await on_stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += bytes(message.get("body", b""))
        if not message.get("more_body"):
            return body


async def nothing() -> None:
    return None


def create_stub() -> Any:
    """The stub writer: `POST /v1/events/{e}/holds` answers STUB_ANSWER (201) after the delay;
    `/readyz` 200 (the edge checks its read node's); anything else 404."""
    delay_s = float(os.environ[ENV_DELAY_MS]) / 1000
    ready = b'{"status":"ready"}'

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, nothing)
            return
        await read_body(receive)
        path = scope["path"]
        if scope["method"] == "POST" and path.startswith("/v1/events/") and path.endswith("/holds"):
            if delay_s:
                await asyncio.sleep(delay_s)
            status, body = 201, STUB_ANSWER
        elif path == "/readyz":
            status, body = 200, ready
        else:
            status, body = 404, b'{"error":{"code":"not_found","message":"stub"}}'
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    return app


ForwardFn = Callable[[str, str, list[tuple[bytes, bytes]], bytes], Awaitable[tuple[int, bytes]]]
KEPT: Final = frozenset({b"authorization", b"idempotency-key", b"content-type"})


def httpx_client(target: str) -> tuple[ForwardFn, Callable[[], Awaitable[None]]]:
    import httpx  # noqa: PLC0415  (each forwarder imports only its own client)

    client = httpx.AsyncClient(
        base_url=target,
        timeout=httpx.Timeout(limits.edge_writer_timeout_s),
        limits=httpx.Limits(
            max_connections=limits.edge_writer_connections_max,
            max_keepalive_connections=limits.edge_writer_connections_max,
        ),
    )

    async def forward(
        method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        response = await client.request(method, path, headers=headers, content=body)
        return response.status_code, response.content

    return forward, client.aclose


def aiohttp_client(target: str) -> tuple[ForwardFn, Callable[[], Awaitable[None]]]:
    import aiohttp  # noqa: PLC0415

    session: aiohttp.ClientSession | None = None

    async def forward(
        method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        nonlocal session
        if session is None:  # a session belongs to the running loop
            session = aiohttp.ClientSession(
                target,
                connector=aiohttp.TCPConnector(limit=limits.edge_writer_connections_max),
                timeout=aiohttp.ClientTimeout(total=limits.edge_writer_timeout_s),
                auto_decompress=False,
            )
        text = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        async with session.request(method, path, headers=text, data=body) as response:
            return response.status, await response.read()

    async def close() -> None:
        if session is not None:
            await session.close()

    return forward, close


def lean_client(target: str) -> tuple[ForwardFn, Callable[[], Awaitable[None]]]:
    from edge.upstream import UpstreamPool  # noqa: PLC0415

    pool = UpstreamPool(
        target,
        connections_max=limits.edge_writer_connections_max,
        connect_timeout_s=limits.edge_writer_connect_timeout_s,
        timeout_s=limits.edge_writer_timeout_s,
        queue_wait_s_max=limits.edge_write_queue_wait_s_max,
        in_flight_max=limits.edge_writes_in_flight_max,
        body_bytes_max=limits.edge_writer_answer_bytes_max,
    )

    async def forward(
        method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> tuple[int, bytes]:
        answer = await pool.request(method.encode(), path.encode(), headers, body)
        return answer.status, answer.body

    return forward, pool.close


FORWARDERS: Final = {"httpx": httpx_client, "aiohttp": aiohttp_client, "lean": lean_client}


def create_forwarder() -> Any:
    """Every request forwarded to BENCH_FORWARD_TARGET with the client BENCH_FORWARD_CLIENT: the
    fan's Authorization, Idempotency-Key and Content-Type, the body; the answer's status and
    body back. `/readyz` is answered here."""
    forward, close = FORWARDERS[os.environ[ENV_CLIENT]](os.environ[ENV_TARGET])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send, close)
            return
        body = await read_body(receive)
        if scope["path"] == "/readyz":
            status, answer = 200, b'{"status":"ready"}'
        else:
            headers = [(k, v) for k, v in scope["headers"] if k in KEPT]
            try:
                status, answer = await forward(scope["method"], scope["path"], headers, body)
            except Exception as error:  # a bench: counted as a 502
                status, answer = 502, repr(error).encode()
        await send({"type": "http.response.start", "status": status, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": answer})

    return app


def serve(factory: str, port: int) -> None:
    """As tessera/serving.py serves the tiers: one worker, the tiers' backlog and backpressure
    (Granian's default would hold only 1,024 of 2,000 connections)."""
    from granian import Granian  # noqa: PLC0415
    from granian.constants import Interfaces  # noqa: PLC0415

    Granian(
        f"{Path(__file__).stem}:{factory}",
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        workers=1,
        factory=True,
        log_access=False,
        backlog=limits.serve_backlog_max,
        backpressure=limits.serve_concurrent_requests_max,
    ).serve()


# --- the load: N fans, each sending the next hold when the last is answered ---


@dataclass
class Run:
    """One target at one level."""

    target: str
    level: int
    elapsed_s: float
    answered: int
    statuses: dict[str, int]
    p50_ms: float
    p99_ms: float
    cpu_s: dict[str, float]  # CPU seconds per process group during the run
    cores: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed_s if self.elapsed_s else 0.0

    def ms_per(self, group: str) -> float:
        return 1000 * self.cpu_s.get(group, 0.0) / self.answered if self.answered else 0.0

    @property
    def failed(self) -> int:
        return sum(count for status, count in self.statuses.items() if status != "201")


def fan_requests(url: str, count: int) -> list[bytes]:
    """One hold request per fan: its own token and Idempotency-Key."""
    requests = []
    for index in range(count):
        user = f"fan-{index:06d}"
        headers = {
            "authorization": f"Bearer {auth.mint_token(user, JWT_SECRET)}",
            "idempotency-key": f"hold-{user}",
            "content-type": "application/json",
        }
        path = f"{url}/v1/events/{EVENT_ID}/holds"
        requests.append(request_bytes("POST", path, headers, HOLD_BODY))
    return requests


async def closed_writes(
    url: str, requests: list[bytes], seconds: float
) -> tuple[float, list[float], Counter[str]]:
    """Each fan (one keep-alive connection) sends its hold again as soon as it is answered:
    elapsed s, latencies, statuses (and transport failures)."""
    fans = pool(url)
    await fans.warm_up(len(requests))
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def fan(data: bytes) -> None:
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            try:
                status = (await fans.send(data)).status
            except HttpError as error:
                statuses[type(error).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            latencies.append(time.perf_counter() - begin)
            statuses[str(status)] += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S):
            await asyncio.gather(*(fan(data) for data in requests))
    except TimeoutError:
        statuses["timeout"] += 1
    elapsed = time.perf_counter() - started
    await fans.close()
    return elapsed, latencies, statuses


async def measure(
    target: str, url: str, level: int, args: argparse.Namespace, groups: Mapping[str, list[int]]
) -> Run:
    requests = fan_requests(url, level)
    if args.warmup > 0:
        await closed_writes(url, requests, args.warmup)
    before = cpu_seconds(groups)
    elapsed, latencies, statuses = await closed_writes(url, requests, args.duration)
    after = cpu_seconds(groups)
    used = {k: after[k] - before[k] for k in after}
    used["load generator"] = used.pop("bench process")
    await settle([pid for pids in groups.values() for pid in pids])
    run = Run(
        target=target,
        level=level,
        elapsed_s=elapsed,
        answered=len(latencies),
        statuses=dict(sorted(statuses.items())),
        p50_ms=percentile_ms(latencies, 50),
        p99_ms=percentile_ms(latencies, 99),
        cpu_s=used,
        cores=cores(used, elapsed),
    )
    print_run(run)
    return run


SETTLE_S_MAX: Final = 30.0
IDLE_CORES: Final = 0.05


async def settle(pids: list[int]) -> None:
    """Until the servers are idle: one still working off a backlog after its run (a slow
    client's queue) would otherwise take cores from the next target."""
    deadline = time.monotonic() + SETTLE_S_MAX
    before = cpu_seconds({"target": pids})["target"]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.25)
        after = cpu_seconds({"target": pids})["target"]
        if after - before < IDLE_CORES * 0.25:
            return
        before = after


def print_run(run: Run) -> None:
    used = ", ".join(f"{k} {v:.2f}" for k, v in run.cores.items() if v >= 0.005)
    per = ", ".join(
        f"{k} {run.ms_per(k):.3f}"
        for k in run.cpu_s
        if k not in ("machine", "kernel softirq") and run.cpu_s[k] > 0
    )
    print(
        f"  {run.target:18} {run.level:>5} in flight: {run.answered:,} answered in "
        f"{run.elapsed_s:.2f} s = {run.rate:,.0f}/s; p50/p99 {run.p50_ms:.1f}/{run.p99_ms:.1f} ms; "
        f"statuses {run.statuses}\n"
        f"      CPU ms per request: {per}\n      cores: {used}",
        flush=True,
    )
    if run.cores.get("other processes", 0.0) >= DISTURBED_CORES:
        print(
            f"      DISTURBED: processes outside the bench used "
            f"{run.cores['other processes']:.2f} cores",
            flush=True,
        )


# --- the run ---


@dataclass
class Setup:
    edge: ServiceProcess
    stub: ServiceProcess
    forwarders: dict[str, ServiceProcess]
    groups: dict[str, list[int]]


def edge_env(stub: str, redis: str) -> dict[str, str]:
    budgets = dict.fromkeys(("reads", "queue", "holds", "orders"), OPEN_BUDGET)
    return {
        "TESSERA_ORIGIN_URLS": stub,
        "TESSERA_WRITER_URL": stub,
        "TESSERA_REDIS_URL": redis,
        "TESSERA_JWT_SECRET": JWT_SECRET,
        "TESSERA_ADMIN_KEY": ADMIN_KEY,
        "TESSERA_ADMISSION_SECRET": ADMISSION_SECRET,
        "TESSERA_RATE_LIMITS": json.dumps({"budgets": budgets}),
    }


def event_loop(choice: str, workdir: Path) -> str:
    """The event loop every server here runs on: Granian picks uvloop when it is installed
    (`auto`); `asyncio` hides uvloop from the servers (a module of that name that fails to
    import, first on their PYTHONPATH), as on a machine without it."""
    if choice == "asyncio":
        shim = workdir / "no-uvloop" / "uvloop"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text('raise ImportError("hidden by bench/edge_forward.py")\n')
        paths = [str(shim.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        os.environ["PYTHONPATH"] = os.pathsep.join(paths)
        return "asyncio (uvloop hidden)"
    found = importlib.util.find_spec("uvloop")
    if found is None:
        return "asyncio (uvloop not installed)"
    return f"uvloop {importlib.metadata.version('uvloop')} (Granian's choice when installed)"


def available(clients: list[str]) -> list[str]:
    kept = []
    for client in clients:
        if importlib.util.find_spec(client if client != "lean" else "edge") is None:
            print(f"{client} is not installed: not compared (pip install {client})")
        else:
            kept.append(client)
    return kept


def setup(args: argparse.Namespace, stack: Stack) -> Setup:
    script = Path(__file__)
    loop = event_loop(args.loop, stack.workdir)
    args.clients = available(args.clients)
    valkey = start_valkey(stack.workdir / "valkey")
    stack.servers.append(valkey)
    stub = start_script_server(
        stack.workdir, "stub", script, ["--serve-stub"], {ENV_DELAY_MS: str(args.delay_ms)}
    )
    stack.services.append(stub)
    edge = start_edge(stack.workdir / "edge", edge_env(stub.url, valkey.url))
    stack.services.append(edge)
    forwarders = {}
    for client in args.clients:
        name = f"forwarder-{client}"
        env = {ENV_CLIENT: client, ENV_TARGET: stub.url}
        forwarder = start_script_server(stack.workdir, name, script, ["--serve-forwarder"], env)
        stack.services.append(forwarder)
        forwarders[client] = forwarder
    groups = {"edge": [pid_of(edge)], "stub": [pid_of(stub)]}
    groups |= {f"forwarder-{c}": [pid_of(f)] for c, f in forwarders.items()}
    print(
        f"event loop: {loop}; stub writer {stub.url} (answers holds after {args.delay_ms:g} ms), "
        f"edge {edge.url}, "
        f"forwarders {', '.join(f'{c} {f.url}' for c, f in forwarders.items()) or 'none'}",
        flush=True,
    )
    return Setup(edge, stub, forwarders, groups)


def pid_of(service: ServiceProcess) -> int:
    assert service.process is not None
    return service.process.pid


async def bench(args: argparse.Namespace, stack: Stack) -> list[Run]:
    s = setup(args, stack)
    runs = []
    for level in args.levels:
        print(f"\n{level:,} writes in flight: {args.warmup:g} s warm-up, {args.duration:g} s each")
        targets = [("edge", s.edge.url), ("direct", s.stub.url)]
        targets += [(f"forwarder-{c}", f.url) for c, f in s.forwarders.items()]
        for name, url in targets:
            run = await measure(name, url, level, args, s.groups)
            runs.append(run)
            if run.statuses.get("timeout") and name.startswith("forwarder-"):
                restart(stack, s, name.removeprefix("forwarder-"))
    return runs


def restart(stack: Stack, s: Setup, client: str) -> None:
    """A forwarder whose run timed out is still working off the fans' requests, and would take
    cores from every run after it: it is started afresh."""
    old = s.forwarders[client]
    old.kill()
    stack.services.remove(old)
    env = {ENV_CLIENT: client, ENV_TARGET: s.stub.url}
    new = start_script_server(
        stack.workdir, f"forwarder-{client}", Path(__file__), ["--serve-forwarder"], env
    )
    stack.services.append(new)
    s.forwarders[client] = new
    s.groups[f"forwarder-{client}"] = [pid_of(new)]
    print(f"      (forwarder-{client} restarted: its run timed out)", flush=True)


@dataclass
class EdgeRow:
    level: str
    rate: str
    edge_ms: str
    stub_ms: str
    ceiling_ms: str
    loadgen_ms: str
    ratio: str
    latency: str
    failures: str
    target: str
    met: bool | None


@dataclass
class ClientRow:
    client: str
    level: str
    rate: str
    forwarder_ms: str
    client_ms: str
    latency: str
    failures: str
    target: str = ""
    met: bool | None = None


def edge_rows(runs: list[Run]) -> list[EdgeRow]:
    by = {(r.target, r.level): r for r in runs}
    rows = []
    for (target, level), run in by.items():
        if target != "edge":
            continue
        direct = by[("direct", level)]
        edge_ms = run.ms_per("edge")
        rows.append(
            EdgeRow(
                f"{level:,}",
                f"{run.rate:,.0f}",
                f"**{edge_ms:.3f}**",
                f"{run.ms_per('stub'):.3f}",
                f"{direct.ms_per('stub'):.3f}",
                f"{run.ms_per('load generator'):.3f}",
                ratio(edge_ms, direct.ms_per("stub")),
                f"{run.p50_ms:.1f} / {run.p99_ms:.1f}",
                str(run.failed) if run.failed else "0",
                f"≤ {EDGE_CPU_MS_MAX} ms, 0 failed",
                edge_ms <= EDGE_CPU_MS_MAX and run.failed == 0 and run.answered > 0,
            )
        )
    return rows


def client_rows(runs: list[Run]) -> list[ClientRow]:
    by = {(r.target, r.level): r for r in runs}
    rows = []
    for (target, level), run in by.items():
        if not target.startswith("forwarder-"):
            continue
        spent = run.ms_per(target)
        ceiling = by[("direct", level)].ms_per("stub")
        rows.append(
            ClientRow(
                target.removeprefix("forwarder-"),
                f"{level:,}",
                f"{run.rate:,.0f}",
                f"{spent:.3f}",
                f"{spent - ceiling:.3f}",
                f"{run.p50_ms:.1f} / {run.p99_ms:.1f}",
                str(run.failed),
            )
        )
    return rows


def report(args: argparse.Namespace, runs: list[Run], problems: dict[str, int]) -> int:
    rows = edge_rows(runs)
    print("\nThe edge (`python -m edge`) forwarding holds to the stub writer:")
    print_table(
        [
            "writes in flight",
            "forwards/s",
            "edge CPU ms / forward",
            "stub CPU ms / request",
            "stub direct (ceiling) ms / request",
            "load generator ms / request",
            "edge ÷ ceiling",
            "p50 / p99 ms",
            "failed",
            "target",
            "met",
        ],
        rows,
    )
    clients = client_rows(runs)
    if clients:
        print("\nForwarding clients (a bare-ASGI forwarder under Granian, nothing but the client):")
        print_table(
            [
                "client",
                "writes in flight",
                "forwards/s",
                "forwarder CPU ms / forward",
                "minus the ceiling (≈ the client) ms",
                "p50 / p99 ms",
                "failed",
                "target",
                "met",
            ],
            clients,
        )
    noisy = [f"{r.target} {r.level}" for r in runs if r.cores.get("other processes", 0) >= 0.2]
    if noisy:
        print(f"\nDISTURBED runs (outside load ≥ {DISTURBED_CORES} cores): {', '.join(noisy)}")
    print(
        f"\nwarnings and errors in the service logs: {sum(problems.values())}"
        + "".join(f"\n    {count} × {line}" for line, count in problems.items())
    )
    print(
        f"python {sys.version.split()[0]}; event loop {args.loop}; stub delay {args.delay_ms:g} "
        f"ms; {args.warmup:g} s warm-up and {args.duration:g} s per target and level"
    )
    if args.json:
        document = {
            "runs": [asdict(r) | {"rate": r.rate} for r in runs],
            "edge": [asdict(r) for r in rows],
            "clients": [asdict(r) for r in clients],
            "log_problems": problems,
        }
        write_json(args.json, document)
    return 0 if rows and all(row.met for row in rows) else 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_stack_args(parser)
    parser.add_argument("--levels", default=",".join(map(str, LEVELS)), help="writes in flight")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=WARMUP_S)
    parser.add_argument("--delay-ms", type=float, default=DELAY_MS, help="the stub's delay")
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="forwarding clients compared, or none"
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "asyncio"],
        default="auto",
        help="auto: uvloop when installed (Granian's default); asyncio: hide uvloop",
    )
    parser.add_argument("--serve-stub", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-forwarder", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.levels = [int(x) for x in args.levels.split(",") if x]
    args.clients = [c for c in args.clients.split(",") if c and c != "none"]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        parser.error(f"unknown clients {sorted(unknown)}; choose from {', '.join(CLIENTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve_stub:
        serve("create_stub", args.port)
        return 0
    if args.serve_forwarder:
        serve("create_forwarder", args.port)
        return 0
    stack = Stack.create("tessera-edge-forward-", args.venue)
    print_machine(stack.venue, "Valkey, the stub writer, the edge, the forwarders and the fans")
    runs, problems = run_in_stack(stack, args.keep, lambda: bench(args, stack))
    return report(args, runs, problems)


if __name__ == "__main__":
    raise SystemExit(main())
