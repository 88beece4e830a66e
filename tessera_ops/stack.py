"""`tessera up` / `tessera down`: the whole system on one machine (ARCHITECTURE.md §7).

`up` starts, in order, and stops in reverse: PostgreSQL (embedded), a Redis server (Valkey), one
NATS server with JetStream per region (the first, the writer's home, is the hub; every other region
is its own domain, leaf-connected to it, holding mirrors of the hub's streams), the global writer
(which migrates its database), the demo event, then per region a read node and an edge; the
notifier and a mail catcher when they are installed. Every service is a process of its own with
its log under `<data-dir>/logs/`; `<data-dir>/stack.json` (tessera_ops/stackfile.py) says
where everything is. `TESSERA_DATABASE_URL`, `TESSERA_REDIS_URL`, `TESSERA_NATS_URL` point the
stack at external servers instead (one NATS for every region then).

The supervisor (`up` itself) checks its children twice a second: one that exits is reported on
stderr with the end of its log, and `up` ends with status 1 when it is stopped. Ctrl-C (SIGINT),
SIGTERM or `tessera down` stop everything cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

import httpx
from nats.aio.client import Client as NatsClient

from tessera import limits
from tessera.auth import mint_token
from tessera.jetstream import (
    Definition,
    JetStreamSetupError,
    ensure_jetstream,
    load_definitions,
    load_regional_definitions,
    wait_for_mirrors,
)
from tessera_ops import processes, servers, stackfile

REGION_NAMES: Final = ("us-east", "eu-west", "ap-southeast", "sa-east", "af-south")
DEMO_VENUE: Final = Path(__file__).resolve().parents[1] / "examples" / "venues" / "stadium-70k.json"
DEMO_USER: Final = "alice"
# Short holds so an onsale rehearsal shows abandoned holds expiring within its minute.
DEMO_HOLD_TTL_S: Final = 20
DEMO_PER_USER_LIMIT: Final = 8
# Fans of the demo have no email address: their confirmations go to <user>@ this domain.
DEMO_MAIL_DOMAIN: Final = "fans.tessera.localhost"


class Stoppable(Protocol):
    def stop(self) -> None: ...


@dataclass
class Child:
    name: str
    handle: Stoppable
    pid: int
    log: Path
    alive: Callable[[], bool]


@dataclass
class Supervisor:
    data_dir: Path
    children: list[Child] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)

    def add_server(self, name: str, server: servers.RunningServer) -> None:
        self.children.append(
            Child(name, server, server.pid, server.log_path, lambda: server.running)
        )

    def add_service(self, name: str, service: processes.ServiceProcess) -> None:
        process = service.process
        assert process is not None
        self.children.append(
            Child(name, service, process.pid, service.log_path, lambda: process.poll() is None)
        )

    def check(self) -> None:
        for child in self.children:
            if child.name not in self.crashed and not child.alive():
                self.crashed.append(child.name)
                tail = log_tail(child.log)
                print(
                    f"tessera up: {child.name} (pid {child.pid}) exited; {child.log}:\n{tail}",
                    file=sys.stderr,
                    flush=True,
                )

    def stop_all(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.handle.stop()
        self.children.clear()


@dataclass(frozen=True)
class UpOptions:
    regions: int = 2
    venue: Path = DEMO_VENUE
    data_dir: Path = field(default_factory=stackfile.default_data_dir)
    quiet: bool = False


def external(variable: str) -> str | None:
    return os.environ.get(variable) or None


def log_tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


@dataclass
class Nats:
    """Per region: the NATS URL its read node uses; the writer's URL on the hub."""

    writer_url: str
    reader_urls: list[str]
    # The notifier consumes the hub's ORDERS work queue.
    notifier_url: str


def start_storage(sup: Supervisor, workdir: Path) -> tuple[str, str]:
    """PostgreSQL and Redis (or the external ones): the database URL and the Redis URL."""
    database_url = external("TESSERA_DATABASE_URL")
    if database_url is None:
        postgres = servers.start_postgres(workdir / "postgres")
        sup.add_server("postgres", postgres)
        database_url = servers.create_database(postgres.url, "tessera")
    redis_url = external("TESSERA_REDIS_URL")
    if redis_url is None:
        valkey = servers.start_valkey(workdir / "valkey")
        sup.add_server("redis", valkey)
        redis_url = valkey.url
    return database_url, redis_url


def start_nats(sup: Supervisor, workdir: Path, regions: list[str]) -> Nats:
    """The hub in the first region, a leaf-connected domain with mirrors in every other."""
    shared = external("TESSERA_NATS_URL")
    if shared is not None:
        return Nats(shared, [shared] * len(regions), shared)
    hub = servers.start_nats_hub(workdir / f"nats-{regions[0]}", domain=regions[0].replace("-", ""))
    sup.add_server(f"nats-{regions[0]}", hub)
    # The hub's streams before the regions' mirrors of them (the writer would create them too,
    # but only once it runs, and a mirror created first waits 30 s before it retries).
    apply_definitions(hub.url, load_definitions())
    readers = [hub.url_for("reader")]
    for name in regions[1:]:
        region = servers.start_nats_region(
            workdir / f"nats-{name}", domain=name.replace("-", ""), hub=hub
        )
        sup.add_server(f"nats-{name}", region)
        apply_definitions(region.url, load_regional_definitions(hub_domain=hub.domain))
        readers.append(region.url_for("reader"))
    return Nats(hub.url, readers, hub.url_for("admin"))


def apply_definitions(url: str, definitions: list[Definition]) -> None:
    """Create or update streams (and wait for mirrors to reach their sources)."""

    async def main() -> None:
        nc = NatsClient()
        await nc.connect(url, connect_timeout=5, allow_reconnect=False)
        try:
            js = nc.jetstream()
            await ensure_jetstream(js, definitions)
            await wait_for_mirrors(js, definitions, timeout_s=limits.server_start_timeout_s)
        finally:
            await nc.close()

    asyncio.run(main())


@dataclass(frozen=True)
class Secrets:
    admin_key: str = field(default_factory=lambda: secrets.token_hex(24))
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    edge_secret: str = field(default_factory=lambda: secrets.token_hex(32))


def create_demo_event(writer_url: str, keys: Secrets, venue: Path, home: str) -> str:
    body = {
        "name": "Tessera demo night",
        "venue": json.loads(venue.read_bytes()),
        "onsale_at": "2020-01-01T00:00:00Z",
        "hold_ttl_s": DEMO_HOLD_TTL_S,
        "per_user_limit": DEMO_PER_USER_LIMIT,
        "home_region": home,
    }
    response = httpx.post(
        f"{writer_url}/v1/admin/events",
        json=body,
        headers={"X-Admin-Key": keys.admin_key},
        timeout=limits.service_start_timeout_s,
    )
    if response.status_code != 201:
        raise servers.ServerStartError(f"creating the demo event: {response.text}")
    event_id: str = response.json()["event_id"]
    return event_id


def start_notifications(
    sup: Supervisor, workdir: Path, nats_url: str, redis_url: str
) -> tuple[stackfile.Mail, str]:
    """A local mail catcher and the notifier sending to it: the demo shows the emails."""
    smtp_port = servers.free_port()
    catcher = processes.start_service(
        "notifier.mailcatcher",
        workdir / "mailcatcher",
        {"TESSERA_MAILCATCHER_SMTP_PORT": str(smtp_port)},
    )
    sup.add_service("mailcatcher", catcher)
    notifier = processes.start_service(
        "notifier",
        workdir / "notifier",
        {
            "TESSERA_NATS_URL": nats_url,
            "TESSERA_REDIS_URL": redis_url,
            "TESSERA_NOTIFY_SMTP_HOST": "127.0.0.1",
            "TESSERA_NOTIFY_SMTP_PORT": str(smtp_port),
            "TESSERA_NOTIFY_FALLBACK_DOMAIN": DEMO_MAIL_DOMAIN,
        },
    )
    sup.add_service("notifier", notifier)
    return stackfile.Mail(
        smtp_host="127.0.0.1", smtp_port=smtp_port, inbox_url=catcher.url
    ), notifier.url


def start_region(
    sup: Supervisor,
    workdir: Path,
    name: str,
    nats_url: str,
    base: dict[str, str],
) -> tuple[processes.ServiceProcess, processes.ServiceProcess]:
    regional = processes.start_regional(
        workdir / f"regional-{name}", {**base, "TESSERA_NATS_URL": nats_url, "TESSERA_REGION": name}
    )
    sup.add_service(f"regional-{name}", regional)
    edge = processes.start_edge(
        workdir / f"edge-{name}",
        {
            **base,
            "TESSERA_ORIGIN_URLS": regional.url,
            "TESSERA_REGION": name,
            "TESSERA_DEV_TOKENS": "true",
        },
    )
    sup.add_service(f"edge-{name}", edge)
    return regional, edge


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stopped(signum: int, _frame: object) -> None:
    raise Stopped(signal.Signals(signum).name)


def boot(sup: Supervisor, options: UpOptions, keys: Secrets) -> stackfile.Stack:
    """Start everything, in dependency order; the stack description once all of it is ready."""
    workdir = options.data_dir / "services"
    names = [*REGION_NAMES[: options.regions]]
    names += [f"region-{n}" for n in range(len(names) + 1, options.regions + 1)]

    def say(text: str) -> None:
        if not options.quiet:
            print(text, flush=True)

    say("starting PostgreSQL and Redis …")
    database_url, redis_url = start_storage(sup, workdir)
    say(f"starting NATS for {', '.join(names)} …")
    nats = start_nats(sup, workdir, names)
    say("starting the global writer (migrations run on start) …")
    base = {
        "TESSERA_DATABASE_URL": database_url,
        "TESSERA_REDIS_URL": redis_url,
        "TESSERA_ADMIN_KEY": keys.admin_key,
        "TESSERA_JWT_SECRET": keys.jwt_secret,
        "TESSERA_EDGE_SECRET": keys.edge_secret,
    }
    writer = processes.start_writer(
        workdir / "writer",
        {**base, "TESSERA_NATS_URL": nats.writer_url, "TESSERA_REGION": names[0]},
    )
    sup.add_service("writer", writer)
    say("starting the notifier and a local mail catcher …")
    mail, notifier_url = start_notifications(sup, workdir, nats.notifier_url, redis_url)
    say(f"creating the demo event at {options.venue.name} …")
    event_id = create_demo_event(writer.url, keys, options.venue, names[0])
    base["TESSERA_WRITER_URL"] = writer.url
    regions = []
    for index, name in enumerate(names):
        say(f"starting the read node and the edge of {name} …")
        regional, edge = start_region(sup, workdir, name, nats.reader_urls[index], base)
        wait_for_event(regional.url, event_id)
        regions.append(
            stackfile.Region(
                name=name,
                nats_url=nats.reader_urls[index],
                regional_url=regional.url,
                edge_url=edge.url,
                page_url=f"{edge.url}/events/{event_id}",
                home=index == 0,
            )
        )
    return stackfile.Stack(
        data_dir=str(options.data_dir.resolve()),
        database_url=database_url,
        redis_url=redis_url,
        writer_url=writer.url,
        admin_key=keys.admin_key,
        jwt_secret=keys.jwt_secret,
        edge_secret=keys.edge_secret,
        event_id=event_id,
        regions=regions,
        supervisor_pid=os.getpid(),
        pids={child.name: child.pid for child in sup.children},
        logs={child.name: str(child.log) for child in sup.children},
        mail=mail,
        notifier_url=notifier_url,
        metrics={
            "writer": f"{writer.url}/metrics",
            "notifier": f"{notifier_url}/metrics",
            **{f"regional-{r.name}": f"{r.regional_url}/metrics" for r in regions},
            **{f"edge-{r.name}": f"{r.edge_url}/metrics" for r in regions},
        },
    )


def wait_for_event(regional_url: str, event_id: str) -> None:
    """Until the read node serves the demo event: the stack is ready when fans can see it."""
    deadline = time.monotonic() + limits.service_start_timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{regional_url}/v1/events/{event_id}/seatmap").status_code == 200:
                return
        time.sleep(0.1)
    raise servers.ServerStartError(f"{regional_url} never served the demo event")


def banner(stack: stackfile.Stack, path: Path) -> str:
    lines = ["", "Tessera is up.", ""]
    for region in stack.regions:
        home = " (home: the writer's region)" if region.home else ""
        lines += [
            f"  {region.name}{home}",
            f"    seat-map page  {region.page_url}",
            f"    edge API       {region.edge_url}/v1/events/{stack.event_id}/seatmap",
            f"    read node      {region.regional_url}",
        ]
    token = mint_token(DEMO_USER, stack.jwt_secret)
    lines += [
        "",
        f"  writer         {stack.writer_url}  (OpenAPI: {stack.writer_url}/schema)",
        f"  metrics        {', '.join(stack.metrics.values())}",
        f"  emails         {stack.mail.inbox_url if stack.mail else '-'}  (order confirmations)",
        f"  demo event     {stack.event_id}",
        f"  admin key      {stack.admin_key}",
        f"  dev token ({DEMO_USER}): {token}",
        f"  stack file     {path}",
        f"  logs           {Path(stack.data_dir) / 'services'}",
        "",
        "Try `tessera onsale` in another terminal. Ctrl-C (or `tessera down`) stops everything.",
    ]
    return "\n".join(lines)


def prepare_data_dir(data_dir: Path) -> None:
    """A fresh data directory, unless a live stack already runs there."""
    with contextlib.suppress(FileNotFoundError, ValueError):
        running = stackfile.read_stack(data_dir)
        if pid_alive(running.supervisor_pid):
            raise servers.ServerStartError(
                f"a stack is already running from {data_dir} (pid {running.supervisor_pid}); "
                "`tessera down` first"
            )
    shutil.rmtree(data_dir / "services", ignore_errors=True)
    (data_dir / stackfile.STACK_FILE).unlink(missing_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def up(options: UpOptions) -> int:
    """Start the stack and supervise it until stopped; 1 if a service crashed meanwhile."""
    try:
        prepare_data_dir(options.data_dir)
    except servers.ServerStartError as error:
        print(f"tessera up: {error}", file=sys.stderr)
        return 1
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    sup = Supervisor(options.data_dir)
    path = options.data_dir / stackfile.STACK_FILE
    try:
        stack = boot(sup, options, Secrets())
        stackfile.write_stack(stack)
        print(banner(stack, path), flush=True)
        while True:
            sup.check()
            time.sleep(limits.stack_supervise_s)
    except Stopped:
        print("\ntessera up: stopping …", flush=True)
    except (servers.ServerStartError, JetStreamSetupError, OSError, httpx.HTTPError) as error:
        print(f"tessera up: could not start: {error}", file=sys.stderr)
        sup.crashed.append("start")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        sup.stop_all()
        signal.signal(signal.SIGINT, previous[signal.SIGINT])
        path.unlink(missing_ok=True)
    print("tessera up: stopped.", flush=True)
    return 1 if sup.crashed else 0


def down(data_dir: Path) -> int:
    """Stop the stack running from `data_dir`: signal its supervisor, wait, then make sure no
    process it started is left (SIGKILL to their process groups otherwise)."""
    try:
        stack = stackfile.read_stack(data_dir)
    except FileNotFoundError:
        print(f"tessera down: no stack running from {data_dir}", file=sys.stderr)
        return 1
    if pid_alive(stack.supervisor_pid):
        os.kill(stack.supervisor_pid, signal.SIGTERM)
    deadline = time.monotonic() + limits.stack_stop_timeout_s
    while pid_alive(stack.supervisor_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftovers = [name for name, pid in stack.pids.items() if pid_alive(pid)]
    for name in leftovers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(stack.pids[name], signal.SIGKILL)
    (data_dir / stackfile.STACK_FILE).unlink(missing_ok=True)
    if leftovers:
        print(f"tessera down: killed what did not stop: {', '.join(leftovers)}", file=sys.stderr)
    print("tessera down: stopped.")
    return 0
