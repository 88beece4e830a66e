"""`tessera up` / `tessera down`: the whole system on one machine (docs/architecture.md §7.4).

`up` starts, in order, and stops in reverse: PostgreSQL (embedded), a Redis server (Valkey), one
NATS server with JetStream per region (the first, the writer's home, is the hub; every other region
is its own domain, leaf-connected to it, holding mirrors of the hub's streams), the local
identity provider (fans' tokens: every tier verifies them against its JWKS, as in production;
its key ring is kept in `<data-dir>/identity/keys.json`), the global writer (which migrates its
database), the demo event, then per region a read node and an edge; the
notifier and a mail catcher when they are installed. Every service is a process of its own with
its log under `<data-dir>/services/`; `<data-dir>/stack.json` (tessera_ops/stackfile.py) says
where everything is. `TESSERA_DATABASE_URL`, `TESSERA_REDIS_URL`, `TESSERA_NATS_URL` point the
stack at external servers instead (one NATS for every region then).

The supervisor (`up` itself, in the foreground) checks its children twice a second. One that dies
is reported on stderr in one line (what, its exit code or signal, its log) and started again,
same port, same data, after a backoff that doubles with each restart of it within a window
(`limits.stack_restart_*`); one that keeps dying is given up on (`limits.stack_restarts_max`),
and `up` then ends with status 1 when it is stopped. Every change is recorded in `stack.json`
(`services`: pid, start time, restarts, state), which `tessera status` reads. Ctrl-C (SIGINT),
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
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit

import httpx
import msgspec
from nats.aio.client import Client as NatsClient

from tessera import limits
from tessera.jetstream import (
    Definition,
    JetStreamSetupError,
    ensure_jetstream,
    load_definitions,
    load_regional_definitions,
    wait_for_mirrors,
)
from tessera.tickets import new_signing_ring
from tessera_ops import processes, servers, stackfile, venue_gen
from tessera_ops.identity_provider import JWKS_PATH, KEYS_ENV, TOKEN_PATH, KeyRing

REGION_NAMES: Final = ("us-east", "eu-west", "ap-southeast", "sa-east", "af-south")
# Found through the package, not the repository, so an installed `tessera up` runs from anywhere.
DEMO_VENUE: Final = venue_gen.shipped_venue("stadium-70k.json")
DEMO_USER: Final = "alice"
# Short holds so an onsale rehearsal shows abandoned holds expiring within its minute.
DEMO_HOLD_TTL_S: Final = 20
DEMO_PER_USER_LIMIT: Final = 8
# Fans of the demo have no email address: their confirmations go to <user>@ this domain.
DEMO_MAIL_DOMAIN: Final = "fans.tessera.localhost"
# The local identity provider's key ring, under the data directory (kept by `up` and `down`).
IDENTITY_KEYS: Final = Path("identity", "keys.json")


@dataclass
class RestartPolicy:
    """When to start a dead child again: a delay doubling from `backoff_s_min` to `backoff_s_max`
    with each attempt made within the last `window_s`, and none at all (give up) once
    `restarts_max` attempts fall within it. Times are `time.monotonic()` seconds."""

    backoff_s_min: float = limits.stack_restart_backoff_s_min
    backoff_s_max: float = limits.stack_restart_backoff_s_max
    restarts_max: int = limits.stack_restarts_max
    window_s: float = limits.stack_restart_window_s
    attempts: deque[float] = field(default_factory=deque)

    def delay_s(self, now: float) -> float | None:
        """Seconds to wait before the next attempt; None: give up (a crash loop)."""
        while self.attempts and now - self.attempts[0] >= self.window_s:
            self.attempts.popleft()
        if len(self.attempts) >= self.restarts_max:
            return None
        return min(self.backoff_s_max, self.backoff_s_min * 2.0 ** len(self.attempts))

    def attempted(self, now: float) -> None:
        self.attempts.append(now)


@dataclass
class Child:
    """A process `up` started: how to handle it, and its live state (recorded in stack.json)."""

    name: str
    kind: Literal["server", "service"]
    # Where it answers, without credentials (what `tessera status` shows and probes).
    url: str
    log: Path
    current_pid: Callable[[], int]
    stop: Callable[[], None]
    # SIGKILL its process group and reap it: after its leader died, what the leader left behind.
    kill: Callable[[], None]
    # Start it again (same port, same data) and wait until it is ready; ServerStartError if not.
    restart: Callable[[], None]
    region: str | None = None
    started_at_s: float = field(default_factory=time.time)
    restarts: int = 0
    state: stackfile.ServiceStateName = "running"
    # While restarting: when (time.monotonic()) the next attempt is due.
    due_s: float = 0.0
    policy: RestartPolicy = field(default_factory=RestartPolicy)

    @property
    def pid(self) -> int:
        return self.current_pid()

    def record(self) -> stackfile.ServiceState:
        running = self.state == "running"
        return stackfile.ServiceState(
            name=self.name,
            kind=self.kind,
            region=self.region,
            url=self.url,
            log=str(self.log),
            pid=self.pid if running else None,
            started_at_s=self.started_at_s if running else None,
            restarts=self.restarts,
            state=self.state,
        )


def exit_status(pid: int) -> str | None:
    """How the child process `pid` ended ("exit code 1", "killed by SIGKILL"); None while it
    runs. It is looked at without being reaped (WNOWAIT): until `Child.kill` reaps it its pid
    stays reserved, so its process group is killed as a whole without the risk of reaching a
    stranger that was given the same number."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "ended (exit status already collected)"
    if info is None:
        return None
    if info.si_code == os.CLD_EXITED:
        return f"exit code {info.si_status}"
    try:
        name = signal.Signals(info.si_status).name
    except ValueError:
        name = f"signal {info.si_status}"
    return f"killed by {name}" + (" (core dumped)" if info.si_code == os.CLD_DUMPED else "")


class Stopped(Exception):
    """SIGINT or SIGTERM arrived."""


@dataclass
class SignalGate:
    """Turns SIGINT and SIGTERM into `Stopped`, except inside `deferred()`, whose end raises it.

    Starting a process is one such block: `Stopped` raised between its spawn and its being
    recorded would leave it running after `up` stops. (Blocking the signals with
    pthread_sigmask instead would be inherited by the children started meanwhile, which would
    then ignore `stop()`.)"""

    deferring: bool = False
    pending: str | None = None

    def handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.deferring:
            self.pending = name
            return
        raise Stopped(name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        outer = self.deferring
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = outer
            if not outer and self.pending is not None:
                name, self.pending = self.pending, None
                # Raised even over an exception under way: the user's stop wins.
                raise Stopped(name)


signals = SignalGate()


def report(text: str) -> None:
    """A supervision event on the console: one line, timestamped (`up` may run for days)."""
    print(f"tessera up: [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def shown(path: Path) -> str:
    """`path` as a user would type it from here (relative under the current directory)."""
    with contextlib.suppress(ValueError, OSError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def last_log_line(path: Path, chars: int = 200) -> str:
    with contextlib.suppress(OSError), path.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - limits.server_log_tail_bytes))
        lines = [line.strip() for line in file.read().decode(errors="replace").splitlines()]
        return next((line[:chars] for line in reversed(lines) if line), "")
    return ""


def without_credentials(url: str) -> str:
    """scheme://host:port of a server URL (NATS URLs carry a user's password)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port}"


@dataclass
class Supervisor:
    """`up`'s children: started in order, stopped in reverse, restarted when they die."""

    data_dir: Path
    children: list[Child] = field(default_factory=list)

    def add_server(self, name: str, server: servers.RunningServer) -> None:
        def restart() -> None:
            # The whole of it: RunningServer.restart() records the new process only once it is
            # ready, so an interruption would orphan it. Servers start in a second or two.
            with signals.deferred():
                if isinstance(server, servers.NatsDomainServer):
                    # Not waiting for the hub: a region must come back while the hub is down too
                    # (its leaf connection is retried by the server itself).
                    server.restart(wait_for_hub=False)
                else:
                    server.restart()

        self.children.append(
            Child(
                name=name,
                kind="server",
                url=without_credentials(server.url),
                log=server.log_path,
                current_pid=lambda: server.pid,
                stop=server.stop,
                kill=server.kill,
                restart=restart,
            )
        )

    def add_service(
        self, name: str, service: processes.ServiceProcess, region: str | None = None
    ) -> None:
        def restart() -> None:
            with signals.deferred():
                service.spawn()
            # Interruptible: `service.process` is the new process already, which stop() reaches.
            processes.wait_ready(service)

        self.children.append(
            Child(
                name=name,
                kind="service",
                url=service.url,
                log=service.log_path,
                current_pid=lambda: service.pid,
                stop=service.stop,
                kill=service.kill,
                restart=restart,
                region=region,
            )
        )

    def set_region(self, name: str, region: str) -> None:
        for child in self.children:
            if child.name == name:
                child.region = region

    def check(self) -> bool:
        """Notice children that died and restart those that are due; whether anything changed
        (then stack.json is rewritten)."""
        changed = False
        for child in self.children:
            if child.state == "running":
                ended = exit_status(child.pid)
                if ended is not None:
                    self.died(child, ended)
                    changed = True
            elif child.state == "restarting" and time.monotonic() >= child.due_s:
                self.restart(child)
                changed = True
        return changed

    def died(self, child: Child, ended: str) -> None:
        pid = child.pid
        # At once, not at the restart: Granian's worker outlives a killed parent, keeps serving
        # half a service and holds the port the restart needs.
        child.kill()
        last = last_log_line(child.log) if ended.startswith("exit") else ""
        said = f" (last line: {last})" if last else ""
        delay = child.policy.delay_s(time.monotonic())
        then = f"restarting in {delay:g} s" if delay is not None else self.giving_up(child)
        report(f"{child.name} (pid {pid}) died, {ended}; log {shown(child.log)}{said}; {then}")
        self.schedule(child, delay)

    def restart(self, child: Child) -> None:
        child.policy.attempted(time.monotonic())
        try:
            child.restart()
        except (servers.ServerStartError, OSError) as error:
            child.kill()  # what the failed start left, if anything
            delay = child.policy.delay_s(time.monotonic())
            then = f"next attempt in {delay:g} s" if delay is not None else self.giving_up(child)
            cause = (str(error).strip().splitlines() or [repr(error)])[0].rstrip(":")
            last = last_log_line(child.log)
            said = f" (last line: {last})" if last else ""
            report(f"{child.name} did not come back: {cause}; log {shown(child.log)}{said}; {then}")
            self.schedule(child, delay)
            return
        child.restarts += 1
        child.state = "running"
        child.started_at_s = time.time()
        report(
            f"{child.name} is back: pid {child.pid}, ready at {child.url} "
            f"(restart {child.restarts})"
        )

    def giving_up(self, child: Child) -> str:
        return (
            f"giving up on it after {len(child.policy.attempts)} restarts within "
            f"{child.policy.window_s:g} s (`tessera down`, fix, `tessera up`)"
        )

    def schedule(self, child: Child, delay: float | None) -> None:
        if delay is None:
            child.state = "failed"
        else:
            child.state = "restarting"
            child.due_s = time.monotonic() + delay

    def healthy(self) -> bool:
        """Every child runs (those that died came back)."""
        return all(child.state == "running" for child in self.children)

    def describe(self, stack: stackfile.Stack) -> stackfile.Stack:
        """`stack` with the children's live state (and the pids `tessera down` checks)."""
        states = [child.record() for child in self.children]
        return msgspec.structs.replace(
            stack,
            services=states,
            pids={state.name: state.pid for state in states if state.pid is not None},
            logs={state.name: state.log for state in states},
        )

    def save(self, stack: stackfile.Stack) -> None:
        with signals.deferred():  # a half-done rename would leave its temporary file behind
            stackfile.write_stack(self.describe(stack))

    def stop_all(self) -> None:
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                child.stop()
        self.children.clear()


@dataclass(frozen=True)
class UpOptions:
    regions: int = 2
    venue: Path = DEMO_VENUE
    data_dir: Path = field(default_factory=stackfile.default_data_dir)
    quiet: bool = False


def external(variable: str) -> str | None:
    return os.environ.get(variable) or None


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
    admission_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    # One secret per purpose, as deployed (docs/operations.md): the edges' admin API (waiting
    # rooms) has its own key, and the edges present their own credential to the writer.
    edge_admin_key: str = field(default_factory=lambda: secrets.token_hex(24))
    edge_writer_credential: str = field(default_factory=lambda: secrets.token_hex(32))
    # The writer's ticket signing ring and the door staff's credential (docs/tickets.md).
    ticket_signing_keys: str = field(default_factory=lambda: new_signing_ring("local"))
    door_staff_key: str = field(default_factory=lambda: secrets.token_hex(24))


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


def identity_ring(data_dir: Path) -> Path:
    """`<data_dir>/identity/keys.json`, the local identity provider's key ring: made at the
    first start, kept (owner-only) across restarts so tokens minted earlier still verify."""
    path = data_dir / IDENTITY_KEYS
    if not path.exists():
        KeyRing.generate().save(path)
    try:
        KeyRing.load(path)
    except msgspec.DecodeError as error:
        raise servers.ServerStartError(
            f"{path}: not a key ring ({error}); remove it to have a new one made"
        ) from None
    path.chmod(0o600)  # the private keys: a copy made readable by others is tightened again
    return path


def start_identity(
    sup: Supervisor, workdir: Path, data_dir: Path
) -> tuple[processes.ServiceProcess, dict[str, str]]:
    """The local identity provider, and what every tier that checks fans' tokens is told: its
    JWKS, issuer and audience, as a deployment names its real provider (docs/identity.md). No
    tier gets an HS256 secret, not even one inherited from this shell."""
    keys = identity_ring(data_dir)
    ring = KeyRing.load(keys)
    idp = processes.start_service(
        "tessera_ops.identity_provider", workdir / "idp", {KEYS_ENV: str(keys.resolve())}
    )
    sup.add_service("idp", idp)
    return idp, {
        "TESSERA_JWKS_URL": idp.url + JWKS_PATH,
        "TESSERA_JWT_ISSUER": ring.issuer,
        "TESSERA_JWT_AUDIENCE": ring.audience,
        "TESSERA_JWT_SECRET": "",
    }


def start_region(
    sup: Supervisor,
    workdir: Path,
    name: str,
    nats_url: str,
    base: dict[str, str],
    *,
    dev_token_url: str,
) -> tuple[processes.ServiceProcess, processes.ServiceProcess]:
    regional = processes.start_regional(
        workdir / f"regional-{name}", {**base, "TESSERA_NATS_URL": nats_url, "TESSERA_REGION": name}
    )
    sup.add_service(f"regional-{name}", regional, region=name)
    edge = processes.start_edge(
        workdir / f"edge-{name}",
        {
            **base,
            "TESSERA_ORIGIN_URLS": regional.url,
            "TESSERA_REGION": name,
            "TESSERA_DEV_TOKENS": "true",
            # The page's "sign in as" asks the identity provider: the edge holds no signing key.
            "TESSERA_DEV_TOKEN_URL": dev_token_url,
        },
    )
    sup.add_service(f"edge-{name}", edge, region=name)
    return regional, edge


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
    for name in names:
        sup.set_region(f"nats-{name}", name)
    say("starting the identity provider …")
    idp, identity = start_identity(sup, workdir, options.data_dir)
    say("starting the global writer (migrations run on start) …")
    base = {
        **identity,
        "TESSERA_DATABASE_URL": database_url,
        "TESSERA_REDIS_URL": redis_url,
        "TESSERA_ADMIN_KEY": keys.admin_key,
        "TESSERA_ADMISSION_SECRET": keys.admission_secret,
        # The writer refuses fans' writes without it; the edges send it.
        "TESSERA_EDGE_WRITER_CREDENTIAL": keys.edge_writer_credential,
    }
    writer = processes.start_writer(
        workdir / "writer",
        {
            **base,
            "TESSERA_NATS_URL": nats.writer_url,
            "TESSERA_REGION": names[0],
            "TESSERA_TICKET_SIGNING_KEYS": keys.ticket_signing_keys,
            "TESSERA_DOOR_STAFF_KEYS": json.dumps({"door": keys.door_staff_key}),
        },
    )
    say(f"door staff key (X-Staff-Key, POST /v1/tickets/scan): {keys.door_staff_key}")
    sup.add_service("writer", writer, region=names[0])
    say("starting the notifier and a local mail catcher …")
    mail, notifier_url = start_notifications(sup, workdir, nats.notifier_url, redis_url)
    say(f"creating the demo event at {options.venue.name} …")
    event_id = create_demo_event(writer.url, keys, options.venue, names[0])
    base["TESSERA_WRITER_URL"] = writer.url
    base["TESSERA_ADMIN_KEY"] = keys.edge_admin_key  # the edges' own, from here on
    regions = []
    for index, name in enumerate(names):
        say(f"starting the read node and the edge of {name} …")
        regional, edge = start_region(
            sup, workdir, name, nats.reader_urls[index], base, dev_token_url=idp.url + TOKEN_PATH
        )
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
        identity_keys=str((options.data_dir / IDENTITY_KEYS).resolve()),
        idp_url=idp.url,
        admission_secret=keys.admission_secret,
        edge_admin_key=keys.edge_admin_key,
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
    token = stackfile.fan_minter(stack)(DEMO_USER)
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
    """Whether process `pid` runs. A zombie does not: `tessera up` started by a script (or a
    test) stays one until that parent reaps it, and `down` waited out its whole timeout for it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    with contextlib.suppress(OSError, IndexError):
        # "pid (command) state …": the command may itself contain ") ".
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    return True


def up(options: UpOptions) -> int:
    """Start the stack and supervise it until stopped: 1 if it could not start, or if something
    it started is down at the end (a crash loop it gave up on); crashes it repaired do not count.
    """
    try:
        prepare_data_dir(options.data_dir)
    except servers.ServerStartError as error:
        print(f"tessera up: {error}", file=sys.stderr)
        return 1
    previous = {sig: signal.signal(sig, signals.handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    sup = Supervisor(options.data_dir)
    path = options.data_dir / stackfile.STACK_FILE
    started = healthy = False
    try:
        stack = boot(sup, options, Secrets())
        sup.save(stack)
        started = True
        print(banner(stack, path), flush=True)
        while True:
            if sup.check():
                sup.save(stack)
            time.sleep(limits.stack_supervise_s)
    except Stopped:
        print("\ntessera up: stopping …", flush=True)
    except (servers.ServerStartError, JetStreamSetupError, OSError, httpx.HTTPError) as error:
        doing = "supervising" if started else "could not start"
        print(f"tessera up: {doing}: {error}", file=sys.stderr)
        started = False
    finally:
        healthy = started and sup.healthy()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan children
        sup.stop_all()
        signal.signal(signal.SIGINT, previous[signal.SIGINT])
        path.unlink(missing_ok=True)
    print("tessera up: stopped.", flush=True)
    return 0 if healthy else 1


def status(data_dir: Path) -> tuple[stackfile.Stack, list[stackfile.ServiceStatus]]:
    """What `up` recorded of every service, each probed now (all at once: a hung one costs the
    probe timeout, not the sum); `FileNotFoundError` when no stack runs from `data_dir`."""
    stack = stackfile.read_stack(data_dir)

    def ready(service: stackfile.ServiceState) -> bool:
        return (
            service.state == "running"
            and service.pid is not None
            and pid_alive(service.pid)
            and processes.probe(service.url, limits.stack_status_probe_timeout_s)
        )

    with ThreadPoolExecutor(max_workers=max(1, len(stack.services))) as pool:
        answers = list(pool.map(ready, stack.services))
    now = time.time()
    return stack, [
        stackfile.ServiceStatus(
            name=service.name,
            region=service.region,
            pid=service.pid,
            uptime_s=None if service.started_at_s is None else round(now - service.started_at_s, 1),
            restarts=service.restarts,
            state=service.state,
            ready=answer,
            url=service.url,
        )
        for service, answer in zip(stack.services, answers, strict=True)
    ]


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
