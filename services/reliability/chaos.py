"""Fault scenarios under load (thử nghiệm sự cố): the real hub on 127.0.0.1, simulated province
traffic at a fixed rate, one fault per scenario, then the checker.

Each scenario builds an isolated hub on the broker (its own topic prefix, app id and consumer
group) and runs every part as its own process, as production does: the gateway, the worker(s)
and the delivery service (``lienthong gateway|worker|delivery``); the destination doubles run
in this process so the checker sees every ``Idempotency-Key`` they applied, in order. Traffic
is the sample province's plan (``connectors.simulator.generate.plan``), every event signed by
its agency and POSTed to the gateway at ``rate`` events per second; a dossier's events go one
after another, and a request that fails (gateway down, 5xx) is retried with the same event id
until accepted, as an agency system would.

Time: the workers run on a clock frozen in a lunch break (``LUNCH``; no working instant
passes during a run) and every event lies before it, so the alerts due are exactly those the
domain core raises over the accepted events at that instant.

Scenarios (``SCENARIOS``): a worker killed with SIGKILL and restarted; two workers, one killed;
one broker of a 3-broker KRaft cluster (replication 3, min.insync.replicas 2, acks=all)
killed and brought back; the gateway killed while it holds spooled events; a destination
answering 503 for a while; a very slow destination; the broker fully down for a while. Each
stops by itself; ``recovery`` is the time from the repair (restart, destination back) until
every delivery of the events accepted before it was applied by its destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from lienthong.connectors.doubles import Doubles, running
from lienthong.connectors.http import NO_RETRY, RequestSigner, load_keyring, make_async_client
from lienthong.connectors.simulator.generate import plan
from lienthong.deploy.embedded.broker import free_port
from lienthong.deploy.local import LocalHub, isolated_prefix
from lienthong.services.domain.catalogue import Catalogue, load_catalogue
from lienthong.services.reliability.checker import (
    Expectation,
    Verdict,
    check,
    destinations_from_doubles,
    expect,
    read_hub,
    row,
)
from lienthong.services.settings import Settings

#: The workers' clock: Friday 27 Nov 2026 at 11:35, in the lunch break (11:30-13:00).
LUNCH = datetime.fromisoformat("2026-11-27T11:35:00+07:00")
#: The plan's first receipts: three working days before.
PLAN_START = datetime.fromisoformat("2026-11-24T07:30:00+07:00")
EVENTS_PER_DOSSIER = 3.3  # the sample province's plan, cut at LUNCH
PARTITIONS = 4



def traffic_plan(catalogue: Catalogue, events: int, seed: int = 1) -> list[dict[str, Any]]:
    """The first ``events`` events (in ``at`` order) of the province's plan before ``LUNCH``."""
    dossiers = math.ceil(events / EVENTS_PER_DOSSIER) + 20
    planned = plan(catalogue, seed=seed, dossiers=dossiers, start=PLAN_START,
                   per_working_hour=40.0)
    return [e for e in planned if datetime.fromisoformat(e["at"]) < LUNCH][:events]


# -- the traffic --------------------------------------------------------------------------------

@dataclass
class Traffic:
    """Agency systems posting ``events`` to the gateway at ``rate`` per second."""

    gateway: str
    keys_file: Path
    events: list[dict[str, Any]]
    rate: float
    give_up_after: float  # seconds a single event may keep failing before it is abandoned
    accepted: list[dict[str, Any]] = field(default_factory=list)  # in acceptance order
    accepted_at: dict[str, float] = field(default_factory=dict)  # event id -> monotonic
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    abandoned: int = 0
    sent: int = 0  # events started (the fault timer watches this)

    async def run(self) -> None:
        keys = load_keyring(self.keys_file)
        clients: dict[str, httpx.AsyncClient] = {}
        last: dict[str, asyncio.Task[None]] = {}
        tasks: list[asyncio.Task[None]] = []
        interval = 1.0 / self.rate
        next_slot = time.monotonic()
        try:
            for event in self.events:
                agency = event["agency"]
                if agency not in clients:
                    key = keys.live_keys(agency)[0]
                    clients[agency] = make_async_client(
                        self.gateway, retry=NO_RETRY, timeout=10.0,
                        signer=RequestSigner(agency, key.secret, key.key_id))
                delay = next_slot - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                next_slot += interval
                task = asyncio.create_task(self._send(clients[agency], event,
                                                      last.get(event["dossier"])))
                last[event["dossier"]] = task
                tasks.append(task)
                self.sent += 1
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            for client in clients.values():
                await client.aclose()

    async def _send(self, client: httpx.AsyncClient, event: dict[str, Any],
                    previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(previous)
        body = json.dumps(event, ensure_ascii=False).encode()
        give_up = time.monotonic() + self.give_up_after
        while True:
            try:
                answer = await client.post("/v1/events", content=body,
                                           headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                answer = None
            if answer is not None and answer.status_code == 202:
                data = answer.json()
                if event["event_id"] in data.get("accepted", []):
                    self.accepted.append(event)
                    self.accepted_at[event["event_id"]] = time.monotonic()
                else:
                    for r in data.get("rejected", []):
                        self.refused[str(r.get("reason"))] += 1
                return
            if answer is not None and 400 <= answer.status_code < 500:
                self.refused[f"http_{answer.status_code}"] += 1
                return
            if time.monotonic() > give_up:
                self.abandoned += 1
                return
            self.retries += 1
            await asyncio.sleep(0.5)


# -- one isolated hub ---------------------------------------------------------------------------

#: The delivery service retries fast and opens its breakers briefly, so a repaired fault shows
#: in the recovery time rather than in a backoff's wait.
DELIVERY_OPTIONS = ("--timeout", "5", "--backoff-base", "0.2", "--backoff-max", "2",
                    "--breaker-open", "1", "--breaker-open-max", "4")


def scenario_hub(bootstrap: str, workdir: Path, catalogue_path: Path, *, replication: int,
                 clock_epoch: float) -> LocalHub:
    """The hub of one scenario: its processes run on the lunch-break clock from
    ``clock_epoch``."""
    return LocalHub(bootstrap, workdir, PARTITIONS, isolated_prefix("c"),
                    catalogue_path=catalogue_path, replication=replication,
                    clock=f"scaled:{LUNCH.isoformat()}:1@{clock_epoch}", loglevel="warning")


def prepare(hub: LocalHub, catalogue: Catalogue, doubles_url: str) -> None:
    """Topics, a key per agency, and every agency's system played by a double."""
    hub.workdir.mkdir(parents=True, exist_ok=True)
    hub.create_topics()
    hub.write_keys(catalogue)
    hub.route_to_doubles(catalogue, doubles_url)


# -- scenarios ----------------------------------------------------------------------------------

@dataclass
class Run:
    """What a scenario's fault needs and records."""

    hub: LocalHub
    traffic: Traffic
    doubles: Doubles
    expectation: Expectation
    broker: Any  # EmbeddedKafka or None (an external cluster cannot be killed)
    seconds: float
    repaired_at: float | None = None  # monotonic instant of the repair
    notes: list[str] = field(default_factory=list)
    stall_after: float = 60.0  # see when_sent

    async def when_sent(self, fraction: float) -> None:
        """Until ``fraction`` of the traffic was started and something reached a destination.

        If nothing has reached one ``stall_after`` seconds after the last event was sent, the
        fault goes ahead anyway (and says so in the notes): the scenario still ends, with the
        checker's verdict on what was lost."""
        want = int(len(self.traffic.events) * fraction)
        all_sent_at: float | None = None
        while self.traffic.sent < want or self.doubles.stats()["totals"]["applications"] == 0:
            if self.traffic.sent >= len(self.traffic.events):
                all_sent_at = all_sent_at or time.monotonic()
                if time.monotonic() - all_sent_at > self.stall_after:
                    self.notes.append(f"nothing reached a destination {self.stall_after:g} s "
                                      "after the traffic ended")
                    return
            await asyncio.sleep(0.1)

    def busiest_agency(self) -> str:
        counts = Counter(d.destination for d in self.expectation.deliveries.values()
                         if d.destination not in ("DVCQG", "VNPOST"))
        return counts.most_common(1)[0][0]


Fault = Callable[[Run], Awaitable[None]]


async def worker_killed(run: Run) -> None:
    await run.when_sent(0.35)
    run.hub.kill("worker0")
    await asyncio.sleep(2.0)
    run.hub.start_worker()
    run.repaired_at = time.monotonic()


async def one_of_two_workers_killed(run: Run) -> None:
    await run.when_sent(0.35)
    run.hub.kill("worker0")
    run.repaired_at = time.monotonic()  # the survivor takes over: nothing to restart


async def broker_node_killed(run: Run) -> None:
    await run.when_sent(0.3)
    node = 2
    run.broker.kill(node)
    run.notes.append(f"node {node} of 3 killed")
    await asyncio.sleep(max(5.0, run.seconds / 4))
    await asyncio.to_thread(run.broker.restart, node)
    run.repaired_at = time.monotonic()


async def gateway_killed_with_spool(run: Run) -> None:
    # The gateway started pointing at a broker that is not there: everything it accepts waits
    # in its fsync'd spool. Kill it with the spool full, restart it on the real broker.
    await asyncio.sleep(0.5)
    want = int(len(run.traffic.events) * 0.35)
    while run.traffic.sent < want:
        await asyncio.sleep(0.1)
    health = await run.hub.gateway_ready()
    run.notes.append(f"killed holding {health.get('spooled')} spooled events")
    run.hub.kill("gateway0")
    await asyncio.sleep(2.0)
    run.hub.start_gateway()
    await run.hub.gateway_ready()
    run.repaired_at = time.monotonic()


async def destination_down(run: Run) -> None:
    await run.when_sent(0.25)
    agency = run.busiest_agency()
    outage = max(5.0, run.seconds / 2)
    run.doubles.inbox(agency).set_faults({"fail_seconds": outage, "fail_status": 503})
    run.notes.append(f"{agency} answers 503 for {outage:.0f} s")
    await asyncio.sleep(outage)
    run.repaired_at = time.monotonic()


async def destination_slow(run: Run) -> None:
    agency = run.busiest_agency()
    run.doubles.inbox(agency).set_faults({"slow_seconds": 2.0})
    run.notes.append(f"{agency} answers after 2 s")


async def broker_down(run: Run) -> None:
    await run.when_sent(0.3)
    outage = max(5.0, run.seconds / 2)
    for node in range(1, run.broker.nodes + 1):
        run.broker.kill(node)
    run.notes.append(f"every broker node killed for {outage:.0f} s")
    await asyncio.sleep(outage)
    await asyncio.to_thread(_restart_all, run.broker)
    run.repaired_at = time.monotonic()


def _restart_all(broker: Any) -> None:
    for node in range(1, broker.nodes + 1):
        broker.restart(node)


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: Fault
    summary: str
    workers: int = 1
    brokers: int = 1  # 3: its own 3-node cluster
    broker_control: bool = False  # needs an embedded broker it may kill
    gateway_starts_on_dead_broker: bool = False


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("worker-kill", worker_killed, "kill -9 the worker, restart it"),
    Scenario("worker-pair", one_of_two_workers_killed,
             "two workers share the partitions; kill -9 one", workers=2),
    Scenario("broker-kill", broker_node_killed,
             "kill -9 one broker of 3 (replication 3, min ISR 2, acks=all), bring it back",
             brokers=3, broker_control=True),
    Scenario("gateway-kill", gateway_killed_with_spool,
             "kill -9 the gateway holding spooled events, restart it",
             gateway_starts_on_dead_broker=True),
    Scenario("destination-down", destination_down,
             "the busiest destination answers 503 for half the run, then recovers"),
    Scenario("destination-slow", destination_slow, "the busiest destination answers after 2 s"),
    Scenario("broker-down", broker_down, "the whole broker down for half the run, then back",
             broker_control=True),
)}


@dataclass
class Result:
    scenario: str
    verdict: Verdict
    recovery: float | None
    notes: list[str]
    seconds: float

    def row(self) -> dict[str, str]:
        return row(self.scenario, self.verdict, self.recovery)

    def to_json(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "recovery_seconds": self.recovery,
                "notes": self.notes, "seconds": round(self.seconds, 1),
                **self.verdict.to_json()}


def recovery_seconds(run: Run) -> float | None:
    """From the repair until every delivery of an event accepted before it was applied."""
    if run.repaired_at is None:
        return None
    applied_at: dict[str, float] = {}
    for log in destinations_from_doubles(run.doubles).values():
        applied_at.update(zip(log.applied, log.applied_at, strict=True))
    latest = run.repaired_at
    for d in run.expectation.deliveries.values():
        accepted = run.traffic.accepted_at.get(d.event_id)
        if accepted is not None and accepted <= run.repaired_at and d.delivery_id in applied_at:
            latest = max(latest, applied_at[d.delivery_id])
    return latest - run.repaired_at


async def run_scenario(scenario: Scenario, *, bootstrap: str, broker: Any, workdir: Path,
                       rate: float, seconds: float, settle: float = 90.0,
                       echo: Callable[[str], None] = print) -> Result:
    began = time.monotonic()
    catalogue_path = Settings.from_env().catalog_path
    catalogue = load_catalogue(catalogue_path)
    clock_epoch = time.time()
    hub = scenario_hub(bootstrap, workdir / scenario.name, catalogue_path,
                       replication=3 if scenario.brokers >= 3 else 1, clock_epoch=clock_epoch)
    events = traffic_plan(catalogue, int(rate * seconds))
    doubles = Doubles(list(catalogue.agencies))
    echo(f"[{scenario.name}] {scenario.summary}: {len(events)} events at {rate:g}/s, "
         f"hub prefix {hub.prefix}, logs in {hub.workdir}")
    async with running(doubles) as doubles_url:
        await asyncio.to_thread(prepare, hub, catalogue, doubles_url)
        try:
            hub.start_delivery(*DELIVERY_OPTIONS)
            for _ in range(scenario.workers):
                hub.start_worker()
            dead = f"127.0.0.1:{free_port()}"
            hub.start_gateway(dead if scenario.gateway_starts_on_dead_broker else None)
            await hub.gateway_ready()
            traffic = Traffic(hub.gateway_url, hub.keys_file, events, rate,
                              give_up_after=seconds + 120)
            # The expectation over the whole plan names the busiest destination up front;
            # the checker's own is computed over what was accepted.
            run = Run(hub, traffic, doubles, expect(events, catalogue, LUNCH), broker, seconds)
            fault = asyncio.create_task(scenario.fault(run))
            sending = asyncio.create_task(traffic.run())
            while not sending.done():
                crashed = hub.crashed()
                if crashed:
                    run.notes.append(f"{', '.join(crashed)} exited unexpectedly")
                    break
                await asyncio.sleep(0.5)
            await sending
            await fault
            expectation = expect(traffic.accepted, catalogue, LUNCH,
                                 until=_virtual_now(clock_epoch))
            run.expectation = expectation
            verdict = await _settle(run, settle)
            crashed = hub.crashed()
            if crashed:
                run.notes.append(f"exited unexpectedly: {', '.join(crashed)}")
                for label in crashed:
                    echo(f"[{scenario.name}] {label} log:\n{hub.log(label, 1500)}")
        finally:
            await asyncio.to_thread(hub.stop_all)
    if traffic.refused:
        run.notes.append(f"refused by the gateway: {dict(traffic.refused)}")
    if traffic.abandoned:
        run.notes.append(f"{traffic.abandoned} events never accepted")
    run.notes.append(f"{traffic.retries} POSTs retried")
    result = Result(scenario.name, verdict, recovery_seconds(run), run.notes,
                    time.monotonic() - began)
    echo(f"[{scenario.name}] {'ok' if verdict.ok else 'FAIL'} in {result.seconds:.0f} s; "
         f"{'; '.join(run.notes)}")
    for example in verdict.examples[:5]:
        echo(f"[{scenario.name}]   {example}")
    return result


def _virtual_now(clock_epoch: float) -> datetime:
    from datetime import timedelta

    return LUNCH + timedelta(seconds=time.time() - clock_epoch)


async def _settle(run: Run, timeout: float) -> Verdict:
    """Wait (bounded) until the outputs caught up, then return the final verdict: every
    expected delivery applied or parked, every expected alert in the feed."""
    deadline = time.monotonic() + timeout
    while True:
        output = await asyncio.to_thread(read_hub, run.hub.bootstrap, run.hub.names)
        verdict = check(run.expectation, output, destinations_from_doubles(run.doubles))
        settled = verdict.lost == verdict.parked and not verdict.alerts_missing \
            and not verdict.events_lost
        if settled or time.monotonic() >= deadline:
            break
        await asyncio.sleep(2.0)
    await asyncio.sleep(1.0)  # anything repeated late would arrive meanwhile
    output = await asyncio.to_thread(read_hub, run.hub.bootstrap, run.hub.names)
    return check(run.expectation, output, destinations_from_doubles(run.doubles))


async def run_all(names: list[str], *, rate: float, seconds: float, workdir: Path,
                  bootstrap: str | None = None, settle: float = 90.0,
                  echo: Callable[[str], None] = print) -> list[Result]:
    """Run the named scenarios in turn; with ``bootstrap`` (an existing cluster) the ones that
    kill brokers are skipped."""
    from lienthong.deploy.embedded import EmbeddedKafka

    results: list[Result] = []
    shared: Any = None
    try:
        for name in names:
            scenario = SCENARIOS[name]
            if scenario.brokers >= 3:
                if bootstrap is not None:
                    echo(f"[{name}] skipped: needs its own embedded 3-broker cluster")
                    continue
                cluster = EmbeddedKafka(nodes=3, echo=echo)
                address = await asyncio.to_thread(cluster.start)
                try:
                    results.append(await run_scenario(
                        scenario, bootstrap=address, broker=cluster, workdir=workdir,
                        rate=rate, seconds=seconds, settle=settle, echo=echo))
                finally:
                    await asyncio.to_thread(cluster.stop)
                continue
            if bootstrap is not None and scenario.broker_control:
                echo(f"[{name}] skipped: cannot kill an external cluster")
                continue
            address = bootstrap
            if address is None:
                if shared is None:
                    shared = EmbeddedKafka(echo=echo)
                    await asyncio.to_thread(shared.start)
                address = shared.bootstrap
            results.append(await run_scenario(
                scenario, bootstrap=address, broker=shared, workdir=workdir, rate=rate,
                seconds=seconds, settle=settle, echo=echo))
    finally:
        if shared is not None:
            await asyncio.to_thread(shared.stop)
    return results


# -- command line -------------------------------------------------------------------------------

def add_arguments(parser: Any) -> None:
    parser.description = (
        "Fault scenarios under load on 127.0.0.1: simulated province traffic through the real "
        "gateway, worker(s), delivery service and destination doubles, one fault each, then "
        "the checker (lost, duplicated, out of order, alerts). Bounded; stops by itself.")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS), default=None,
                        help="run only this scenario (repeatable; default: all): "
                        + "; ".join(f"{s.name}: {s.summary}" for s in SCENARIOS.values()))
    parser.add_argument("--rate", type=float, default=10.0, help="events per second (10)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="seconds of traffic per scenario (60); outages last half of it")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="seconds to wait at most for outputs to catch up (90)")
    parser.add_argument("--bootstrap", default=None,
                        help="use this Kafka cluster instead of embedded brokers (the "
                        "broker scenarios are then skipped)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keys, spools and process logs (default: a temporary directory)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the results as JSON")


def run(args: Any) -> int:
    from lienthong.services.reliability.checker import table

    names = args.scenario or list(SCENARIOS)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="lienthong-chaos-"))
    results = asyncio.run(run_all(names, rate=args.rate, seconds=args.seconds,
                                  workdir=workdir, bootstrap=args.bootstrap,
                                  settle=args.settle))
    print()
    print(table([r.row() for r in results]))
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=1))
    return 0 if results and all(r.verdict.ok for r in results) else 1
