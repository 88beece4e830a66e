"""The benchmarks' load generator and its statistics, shared by bench/read_path.py,
bench/write_path.py and bench/edge_bench.py (each runs as a script, so `bench/` is on sys.path and
`import loadgen` finds this file).

- **Clients**: the house's keep-alive HTTP/1.1 client (tessera/http1.py): `pool` for a server
  as the closed loops load it, its bare connections for the open loop, and `raw_get` for one
  request whose headers are wanted as they came on the wire.
- **Drivers**: closed loop (`closed_loop`: N clients each sending the next request when the last
  is answered; `closed_rounds`: several targets taking turns in rounds, with CPU accounting),
  through wrk or oha when they are on PATH (`Generator`), and open loop at a fixed rate with each
  latency counted from its scheduled send time (`OpenLoop`).
- **Statistics**: nearest-rank percentiles, and who used the cores during a run, read from
  /proc (`cpu_seconds`, `cores`): each process tree of interest, this process, its reaped
  children (wrk, oha), the kernel's softirq work and everything else on the machine (other
  sessions), so a run disturbed by outside load is flagged.
- **The ceiling**: `create_constant_app`, a raw ASGI app answering every request with saved
  bytes and headers, served by Granian with one worker (`start_ceiling`, which runs this file as
  `loadgen.py --serve-constant --port P`): the most a Python ASGI app serves on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from tessera import limits
from tessera.http1 import Connection, HttpError, Pool, fetch, header_pairs, request_bytes
from tessera_ops.processes import ServiceProcess
from tessera_ops.servers import free_port

# A request unanswered this long is a failure (wrk's --timeout; the asyncio clients' deadline).
REQUEST_TIMEOUT_S: Final = 30.0
# Closed loop, as every bench runs it by default: each target gets CLOSED_ROUNDS runs of
# CLOSED_ROUND_S after a CLOSED_WARMUP_S warm-up, the targets taking turns, so that the machine's
# other load (shared cores) changes every target's numbers alike.
CLOSED_ROUNDS: Final = 3
CLOSED_ROUND_S: Final = 4.0
CLOSED_WARMUP_S: Final = 2.0
CLOSED_CONNECTIONS: Final = 64
WRK_THREADS: Final = 2
# A run during which processes outside the bench used this many cores is flagged as disturbed.
DISTURBED_CORES: Final = 0.2
ENV_CONSTANT_DIR: Final = "BENCH_CONSTANT_DIR"

Scope = dict[str, Any]


# --- the ceiling: a raw ASGI app returning constant bytes (its own process, under Granian) ---


def create_constant_app() -> Any:
    """Answers every HTTP request with the body and headers saved in BENCH_CONSTANT_DIR."""
    directory = Path(os.environ[ENV_CONSTANT_DIR])
    body = (directory / "body").read_bytes()
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in json.loads((directory / "headers.json").read_text())
    ]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    return app


def serve(target: str, port: int, workers: int = 1) -> None:
    """Serve the app factory `target` ("module:function") as the tiers are served: Granian, ASGI,
    one worker unless told otherwise. The bench scripts run as scripts, so `bench/` is on sys.path
    and their modules import by their stems."""
    from granian import Granian  # noqa: PLC0415  (only the server processes need it)
    from granian.constants import Interfaces, Loops  # noqa: PLC0415

    # The tiers' settings (tessera/serving.py): uvloop, and room for thousands of connections
    # (Granian's default admits 1,024 at once; the rest wait in the accept queue and time out).
    Granian(
        target,
        address="127.0.0.1",
        port=port,
        interface=Interfaces.ASGI,
        loop=Loops.uvloop,
        workers=workers,
        factory=True,
        log_access=False,
        backlog=limits.serve_backlog_max,
        backpressure=limits.serve_concurrent_requests_max,
    ).serve()


def start_script_server(
    workdir: Path, name: str, script: Path, flags: list[str], env: Mapping[str, str]
) -> ServiceProcess:
    """`python SCRIPT FLAGS --port P` (a bench script serving one of its apps), started and
    waited for until `/readyz` answers (the constant app answers every path)."""
    port = free_port()
    service = ServiceProcess(
        name=name,
        url=f"http://127.0.0.1:{port}",
        port=port,
        log_path=workdir / f"{name}.log",
        command=[sys.executable, str(script.resolve()), *flags, "--port", str(port)],
        env={**os.environ, **env},
    )
    service.start()
    return service


async def start_ceiling(
    workdir: Path,
    name: str,
    body: bytes,
    headers: Sequence[tuple[str, str]],
    *,
    path: str,
    request_headers: Mapping[str, str],
) -> ServiceProcess:
    """The constant app answering `body` with `headers` (status 200), in its own process; checked
    by asking it for `path` with `request_headers`."""
    directory = workdir / name
    directory.mkdir()
    (directory / "body").write_bytes(body)
    (directory / "headers.json").write_text(json.dumps(list(headers)))
    ceiling = start_script_server(
        workdir, name, Path(__file__), ["--serve-constant"], {ENV_CONSTANT_DIR: str(directory)}
    )
    status, got_headers, got_body = await raw_get(f"{ceiling.url}{path}", request_headers)
    names = {k for k, _ in headers}
    if (status, got_body) != (200, body) or [(k, v) for k, v in got_headers if k in names] != list(
        headers
    ):
        ceiling.stop()
        raise RuntimeError(f"the ceiling does not answer as it should: {got_headers}")
    return ceiling


# --- the client: tessera/http1.py (a pool for closed loops, bare connections for open loops) ---

# Every connection the benches open counts against no pool limit of the client's own: the
# servers under test are what is being limited.
CONNECTIONS_UNLIMITED: Final = 1_000_000


def pool(url: str) -> Pool:
    """A keep-alive pool to `url`'s server as the load generators use it: no connection limit,
    REQUEST_TIMEOUT_S per request."""
    return Pool(url, connections_max=CONNECTIONS_UNLIMITED, timeout_s=REQUEST_TIMEOUT_S)


async def raw_get(url: str, headers: Mapping[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
    """One GET on a connection of its own: status, the headers as they came on the wire (names
    lower case, as text), body."""
    answer = await fetch(url, header_pairs(headers), timeout_s=REQUEST_TIMEOUT_S)
    text = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in answer.headers]
    return answer.status, text, answer.body


# --- results ---


def percentile_ms(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of seconds, in milliseconds (NaN for no values)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1] * 1000


@dataclass
class Load:
    """One load run against one server."""

    server: str  # what answered: node, ceiling, naive, edge, ...
    variant: str  # what was asked: binary, json, 304, ...
    mode: str  # closed, open (the asyncio client), open-oha (the cross-check)
    generator: str
    connections: int
    elapsed_s: float
    requests: int
    rate: float  # answered requests per second
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    failures: dict[str, int]  # non-2xx/3xx answers, socket errors, timeouts
    bytes_per_reply: float  # as the generator counts it (wrk: headers included; else body only)
    offered_rate: float = 0.0  # open loop: requests per second sent
    dispatch_lag_p99_ms: float = 0.0  # open loop: how late the client sent (its own delay)
    connections_opened: int = 0
    cpu_cores: dict[str, float] = field(default_factory=dict)
    round_rates: list[float] = field(default_factory=list)  # closed loop: req/s of each round
    # Open loop (asyncio): p99 of each round, and the cores processes outside the bench used in it.
    round_p99_ms: list[float] = field(default_factory=list)
    round_other_cores: list[float] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())


def cores(used: Mapping[str, float], elapsed: float) -> dict[str, float]:
    """CPU seconds per group as cores over `elapsed`; "other processes" is the machine's busy time
    that nothing else here accounts for: processes outside the bench (other sessions' tests),
    the kernel's own threads, hard interrupts."""
    if not elapsed:
        return {}
    shares = {name: seconds / elapsed for name, seconds in used.items() if name != "machine"}
    shares["other processes"] = max(0.0, used.get("machine", 0.0) / elapsed - sum(shares.values()))
    return shares


def print_load(load: Load) -> None:
    used = ", ".join(f"{k} {v:.2f}" for k, v in load.cpu_cores.items() if v >= 0.005)
    total = sum(load.cpu_cores.values())
    saturated = " (saturated)" if total >= 0.9 * (os.cpu_count() or 1) else ""
    offered = f" offered {load.offered_rate:,.0f}/s," if load.mode == "open" else ""
    lag = f", client send lag p99 {load.dispatch_lag_p99_ms:.2f} ms" if load.mode == "open" else ""
    size = f", {load.bytes_per_reply:,.0f} B/reply" if load.bytes_per_reply else ""
    rounds = ""
    if len(load.round_rates) > 1:
        rounds = f" (rounds {', '.join(f'{r:,.0f}' for r in load.round_rates)})"
    if load.round_p99_ms:
        pairs = zip(load.round_p99_ms, load.round_other_cores, strict=True)
        each = ", ".join(f"{p99:.1f} ms ({other:.2f})" for p99, other in pairs)
        rounds = f" (p99 of each round, with the cores used outside the bench: {each})"
    print(
        f"  {load.server:7} {load.variant:6} {load.mode:6}:{offered} {load.requests:,} answered in "
        f"{load.elapsed_s:.2f} s = {load.rate:,.0f} req/s{rounds}; p50/p90/p99/max "
        f"{load.p50_ms:.2f}/"
        f"{load.p90_ms:.2f}/{load.p99_ms:.2f}/{load.max_ms:.1f} ms; failures "
        f"{load.failures or 0}{size}{lag}\n"
        f"          cores used: {used}; total {total:.2f} of {os.cpu_count()}{saturated}; "
        "connections opened "
        f"{load.connections_opened or load.connections}",
        flush=True,
    )
    if disturbed(load):
        print(
            f"          DISTURBED: processes outside the bench used "
            f"{load.cpu_cores['other processes']:.2f} cores during this run",
            flush=True,
        )


def disturbed(load: Load) -> bool:
    return load.cpu_cores.get("other processes", 0.0) >= DISTURBED_CORES


# --- load generators ---

WRK_SCRIPT: Final = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
"""


@dataclass
class Round:
    """One closed-loop run of the load generator against one target."""

    requests: int  # answered
    elapsed_s: float
    latency: dict[str, float]  # p50, p90, p99, max in ms
    failures: dict[str, int]
    bytes_per_reply: float
    connections_opened: int


@dataclass
class Spec:
    """A closed-loop target: what to ask whom, and its rounds so far."""

    server: str
    variant: str
    url: str
    headers: dict[str, str]
    rounds: list[Round] = field(default_factory=list)
    cpu: Counter[str] = field(default_factory=Counter)


@dataclass
class Generator:
    """The closed-loop load generator: wrk, oha or the asyncio client of this module."""

    kind: str
    binary: str
    version: str
    workdir: Path
    threads: int

    @staticmethod
    def find(choice: str, workdir: Path, threads: int) -> Generator:
        for kind in ("wrk", "oha") if choice == "auto" else (choice,):
            if kind == "builtin":
                break
            binary = shutil.which(kind)
            if binary is None:
                if choice != "auto":
                    raise SystemExit(f"{kind} is not on PATH")
                continue
            probe = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, check=False
            )
            version = (probe.stdout + probe.stderr).strip().split(" Copyright")[0].splitlines()[:1]
            (workdir / "wrk.lua").write_text(WRK_SCRIPT)
            return Generator(kind, binary, version[0] if version else "?", workdir, threads)
        return Generator("builtin", sys.executable, "asyncio client, one process", workdir, 1)

    def describe(self, connections: int, seconds: float) -> str:
        if self.kind == "wrk":
            return f"wrk -t{self.threads} -c{connections} -d{seconds:g}s"
        if self.kind == "oha":
            return f"oha -c {connections} -z {seconds:g}s"
        return f"asyncio client, {connections} connections, {seconds:g} s"

    async def closed(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        if self.kind == "wrk":
            return await self._wrk(url, headers, connections, seconds)
        if self.kind == "oha":
            return await self._oha(url, headers, connections, seconds)
        return await closed_loop(url, headers, connections, seconds)

    async def _wrk(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        command = [
            self.binary,
            f"-t{self.threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={REQUEST_TIMEOUT_S:g}s",
            "-s",
            str(self.workdir / "wrk.lua"),
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        output = await run_command([*command, url], seconds + REQUEST_TIMEOUT_S + 30)
        line = next((x for x in output.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary:\n{output}")
        s = json.loads(line[len("WRKJSON ") :])
        failures = {
            "non-2xx/3xx": s["status"],
            "connect": s["connect"],
            "read": s["read"],
            "write": s["write"],
            "timeout": s["timeout"],
        }
        latency = {
            "p50": s["p50_us"] / 1000,
            "p90": s["p90_us"] / 1000,
            "p99": s["p99_us"] / 1000,
            "max": s["max_us"] / 1000,
        }
        requests = int(s["requests"])
        per_reply = s["bytes"] / requests if requests else 0.0
        return Round(requests, s["duration_us"] / 1e6, latency, failures, per_reply, connections)

    async def _oha(
        self, url: str, headers: Mapping[str, str], connections: int, seconds: float
    ) -> Round:
        command = [
            self.binary,
            "--no-tui",
            "--output-format",
            "json",
            "-c",
            str(connections),
            "-z",
            f"{seconds:g}s",
            "-t",
            f"{REQUEST_TIMEOUT_S:g}s",
            "-w",  # wait for the requests in flight at the deadline (else counted as errors)
        ]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        output = await run_command([*command, url], seconds + REQUEST_TIMEOUT_S + 30)
        return parse_oha(output)


def parse_oha(output: str) -> Round:
    """oha's `--output-format json` report as a Round."""
    report = json.loads(output[output.index("{") :])
    summary = report["summary"]
    statuses = {str(k): int(v) for k, v in report.get("statusCodeDistribution", {}).items()}
    failures = {f"status {k}": v for k, v in statuses.items() if not 200 <= int(k) < 400}
    for reason, count in report.get("errorDistribution", {}).items():
        failures[str(reason)[:80]] = int(count)
    requests = sum(v for k, v in statuses.items() if 200 <= int(k) < 400)
    percentiles = report.get("latencyPercentiles", {})
    latency = {
        "p50": float(percentiles.get("p50") or math.nan) * 1000,
        "p90": float(percentiles.get("p90") or math.nan) * 1000,
        "p99": float(percentiles.get("p99") or math.nan) * 1000,
        "max": float(summary.get("slowest") or math.nan) * 1000,
    }
    per_reply = float(summary.get("sizePerRequest") or 0.0)
    return Round(requests, float(summary["total"]), latency, failures, per_reply, 0)


async def run_command(command: list[str], timeout_s: float) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{output.decode()}")
    return output.decode(errors="replace")


async def closed_loop(
    url: str, headers: Mapping[str, str], connections: int, seconds: float
) -> Round:
    """`connections` clients each sending the next request as soon as the last one is answered."""
    clients = pool(url)
    data = request_bytes("GET", url, headers)
    await clients.warm_up(connections)
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    size = 0
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        nonlocal size
        while time.perf_counter() < deadline:
            begin = time.perf_counter()
            try:
                answer = await clients.send(data)
            except HttpError as error:
                failures[type(error).__name__] += 1
                continue
            latencies.append(time.perf_counter() - begin)
            size += len(answer.body)
            if not 200 <= answer.status < 400:
                failures[f"status {answer.status}"] += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(seconds + REQUEST_TIMEOUT_S):
            await asyncio.gather(*(client() for _ in range(connections)))
    except TimeoutError:
        failures["timeout"] += 1
    elapsed = time.perf_counter() - started
    await clients.close()
    answered = len(latencies)
    latency = {
        "p50": percentile_ms(latencies, 50),
        "p90": percentile_ms(latencies, 90),
        "p99": percentile_ms(latencies, 99),
        "max": percentile_ms(latencies, 100),
    }
    per_reply = size / answered if answered else 0.0
    return Round(answered, elapsed, latency, dict(failures), per_reply, clients.opened)


async def closed_rounds(
    generator: Generator,
    specs: list[Spec],
    cpu_groups: Mapping[str, Iterable[int]],
    *,
    connections: int,
    seconds: float,
    rounds: int,
    warmup: float,
) -> list[Load]:
    """Each spec warmed up once for `warmup` s, then `rounds` rounds of `seconds`, the specs
    taking turns within each round so that a change in the machine's other load hits all alike.
    Prints and returns one Load per spec."""
    for spec in specs:
        if warmup > 0:
            await generator.closed(spec.url, spec.headers, connections, warmup)
    for _ in range(rounds):
        for spec in specs:
            before = cpu_seconds(cpu_groups)
            result = await generator.closed(spec.url, spec.headers, connections, seconds)
            after = cpu_seconds(cpu_groups)
            spec.cpu.update({k: after[k] - before[k] for k in after})
            spec.rounds.append(result)
    loads = []
    for spec in specs:
        load = closed_load(spec, generator, connections, seconds)
        print_load(load)
        loads.append(load)
    return loads


def closed_load(spec: Spec, generator: Generator, connections: int, seconds: float) -> Load:
    """A spec's rounds as one Load: req/s = answers over all rounds; p50 and p90 the median of
    the rounds', p99 and max the worst."""
    elapsed = sum(r.elapsed_s for r in spec.rounds)
    requests = sum(r.requests for r in spec.rounds)
    failures: Counter[str] = Counter()
    for r in spec.rounds:
        failures.update(r.failures)
    used = cores(spec.cpu, elapsed)
    if generator.kind == "builtin":
        used["load generator"] = used.pop("bench process")
    return Load(
        server=spec.server,
        variant=spec.variant,
        mode="closed",
        generator=generator.describe(connections, seconds) + f", {len(spec.rounds)} rounds",
        connections=connections,
        elapsed_s=elapsed,
        requests=requests,
        rate=requests / elapsed if elapsed else 0.0,
        p50_ms=statistics.median(r.latency["p50"] for r in spec.rounds),
        p90_ms=statistics.median(r.latency["p90"] for r in spec.rounds),
        p99_ms=max(r.latency["p99"] for r in spec.rounds),
        max_ms=max(r.latency["max"] for r in spec.rounds),
        failures={k: v for k, v in failures.items() if v},
        bytes_per_reply=spec.rounds[-1].bytes_per_reply,
        connections_opened=max(r.connections_opened for r in spec.rounds),
        cpu_cores=used,
        round_rates=[r.requests / r.elapsed_s if r.elapsed_s else 0 for r in spec.rounds],
    )


def add_closed_loop_args(parser: argparse.ArgumentParser) -> None:
    """The flags of `closed_rounds` and `Generator.find`."""
    parser.add_argument(
        "--duration", type=float, default=CLOSED_ROUND_S, help="seconds of each closed-loop round"
    )
    parser.add_argument("--rounds", type=int, default=CLOSED_ROUNDS, help="closed-loop rounds")
    parser.add_argument("--warmup", type=float, default=CLOSED_WARMUP_S)
    parser.add_argument("--connections", type=int, default=CLOSED_CONNECTIONS)
    parser.add_argument("--threads", type=int, default=WRK_THREADS, help="wrk threads")
    parser.add_argument(
        "--load-generator", choices=["auto", "wrk", "oha", "builtin"], default="auto"
    )


def finite(value: Any) -> Any:
    """NaN (a percentile of no values) and infinities (a cost per nothing sold) as null, in
    dicts and lists too, so that JSON output stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def ratio(a: float, b: float) -> str:
    return f"{a / b:,.2f}×" if b else "—"


MET: Final = {True: "yes", False: "**no**", None: ""}


def print_table(columns: Sequence[str], rows: Iterable[Any]) -> None:
    """A markdown table: `rows` are dataclasses whose fields are the columns in order, the last
    two the target and whether it was met (True, False or None: no target)."""
    print("\n| " + " | ".join(columns) + " |")
    print("| --- | " + " | ".join("---:" for _ in columns[1:-2]) + " | --- | --- |")
    for row in rows:
        *cells, met = astuple(row)
        print("| " + " | ".join([*map(str, cells), MET[met]]) + " |")


def write_json(path: Path, document: Any) -> None:
    """The results as strict JSON (NaN as null)."""
    path.write_text(json.dumps(finite(document), indent=1, allow_nan=False))


# --- open loop: a fixed rate, each latency from its scheduled time ---


class OpenLoopConnection(Connection):
    """A connection of the open-loop client: sends from a callback, reports each answer to its
    `OpenLoop` (no task per request)."""

    def __init__(self, runner: OpenLoop) -> None:
        super().__init__()
        self.runner = runner
        self.scheduled = 0.0

    def send_at(self, scheduled: float) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(self.runner.data)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiter = self.waiter
        if waiter is not None and waiter.done():
            self.waiter = None
            error = waiter.exception()
            self.runner.answered(self, 0 if error else waiter.result().status, self.scheduled)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self.waiter
        super().connection_lost(exc)
        if waiter is not None and waiter.done():
            self.waiter = None
            waiter.exception()  # retrieved: not logged as never retrieved
            self.runner.answered(self, 0, self.scheduled)


class OpenLoop:
    """Requests at a fixed rate (constant spacing), each sent at its time on an idle connection,
    else on a new one while fewer than `limit` are open, else on the next one freed; each
    latency counts from the request's scheduled time."""

    def __init__(self, url: str, headers: Mapping[str, str], limit: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.data = request_bytes("GET", url, headers)
        self.limit = limit
        self.idle: list[OpenLoopConnection] = []
        self.backlog: deque[float] = deque()
        self.open = self.opened = 0
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.failures: Counter[str] = Counter()
        self.outstanding = 0
        self.finished: asyncio.Event | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.open += 1
        self.opened += 1
        try:
            _, connection = await loop.create_connection(
                lambda: OpenLoopConnection(self), self.host, self.port
            )
        except OSError as error:
            self.open -= 1
            self.failures[f"connect: {type(error).__name__}"] += 1
            return
        self.ready(connection)

    def spawn_connect(self) -> None:
        task = asyncio.get_running_loop().create_task(self.connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def ready(self, connection: OpenLoopConnection) -> None:
        """A connection is free: give it the oldest waiting request, else keep it idle."""
        if self.backlog:
            connection.send_at(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def due(self, scheduled: float, now: float) -> None:
        self.outstanding += 1
        self.lags.append(now - scheduled)  # how late the client itself was
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                connection.send_at(scheduled)
                return
            self.open -= 1  # closed by the server while idle
        self.backlog.append(scheduled)
        if self.open < self.limit:
            self.spawn_connect()

    def answered(self, connection: OpenLoopConnection, status: int, scheduled: float) -> None:
        self.outstanding -= 1
        if status == 0:
            self.failures["transport"] += 1
        else:
            self.latencies.append(time.perf_counter() - scheduled)
            if not 200 <= status < 400:
                self.failures[f"status {status}"] += 1
        if connection.usable:
            self.ready(connection)
        else:
            self.open -= 1
            if self.backlog:
                self.spawn_connect()
        if self.outstanding == 0 and self.finished is not None:
            self.finished.set()

    async def run(self, rate: float, seconds: float, warm: int) -> float:
        """Send for `seconds`, wait for the answers (REQUEST_TIMEOUT_S at most): elapsed s."""
        await asyncio.gather(*(self.connect() for _ in range(warm)))
        count = max(1, int(rate * seconds))
        interval = 1 / rate
        origin = time.perf_counter() + 0.01
        sent = 0
        while sent < count:
            now = time.perf_counter()
            while sent < count and origin + sent * interval <= now:
                self.due(origin + sent * interval, now)
                sent += 1
            if sent < count:
                await asyncio.sleep(max(0.0, origin + sent * interval - time.perf_counter()))
        self.finished = asyncio.Event()
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    await self.finished.wait()
        if self.outstanding:
            self.failures["timeout"] += self.outstanding
        elapsed = time.perf_counter() - origin
        for connection in self.idle:
            connection.fail()
        return elapsed


# --- CPU accounting (Linux /proc): who used the cores during a run ---

_TICK_S: Final = 1 / os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and its reaped children)."""
    table: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        table[int(entry.name)] = (int(fields[1]), ticks * _TICK_S)
    return table


def cpu_seconds(groups: Mapping[str, Iterable[int]]) -> dict[str, float]:
    """CPU seconds so far of each group of process trees, of this process (the asyncio client)
    and of its reaped children (wrk, oha)."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    used: dict[str, float] = {}
    for name, roots in groups.items():
        total, todo = 0.0, list(roots)
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][1]
                todo.extend(children.get(pid, []))
        used[name] = total
    times = os.times()
    used["bench process"] = times.user + times.system
    used["load generator"] = times.children_user + times.children_system
    with Path("/proc/stat").open() as stat:
        # user nice system idle iowait irq softirq steal ...
        ticks = [int(value) for value in stat.readline().split()[1:]]
    used["kernel softirq"] = ticks[6] * _TICK_S  # mostly the loopback network's work
    used["machine"] = (sum(ticks[:8]) - ticks[3] - ticks[4]) * _TICK_S  # busy: not idle, iowait
    return used


def main(argv: list[str] | None = None) -> int:
    """`loadgen.py --serve-constant --port P`: serve the constant app (see `start_ceiling`)."""
    parser = argparse.ArgumentParser(description="Serve the benchmarks' constant ASGI app.")
    parser.add_argument("--serve-constant", action="store_true", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(f"{Path(__file__).stem}:create_constant_app", args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
