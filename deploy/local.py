"""A local hub on one broker, for integration tests, benchmarks and fault scenarios.

``LocalHub`` is one isolated hub on a Kafka cluster another part started (the embedded broker,
or ``KAFKA_BOOTSTRAP_SERVERS``): its own topic prefix, app id and consumer groups, so several
hubs share one broker without seeing each other's records. It creates the hub's topics, runs
each part as its own process as production does (``lienthong worker|gateway|delivery``, each on
free ports, each with its log in ``workdir``), kills them with SIGKILL as a crash would, and
publishes events onto its ``dossier.events``::

    hub = LocalHub(bootstrap, Path("/tmp/run"))
    hub.create_topics()
    worker = hub.start_worker(clock="scaled:2026-11-25T14:44:35+07:00:1")
    hub.publish(events)
    ...
    hub.kill(worker)          # or hub.kill("worker0")
    hub.stop_all()

A process is named by its label, the part and how many of it were started before
(``worker0``, ``worker1``, ``gateway0``); its log is ``workdir/LABEL.log``. ``kill`` records
what it killed on purpose, so ``crashed()`` names only the processes that exited by
themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lienthong.deploy.embedded.broker import free_port
from lienthong.schemas import topics
from lienthong.services.settings import SAMPLE_CATALOGUE, Settings

if TYPE_CHECKING:
    from kafka import KafkaProducer

    from lienthong.services.domain.catalogue import Catalogue

#: Topic configuration that makes a record's timestamp the instant the broker appended it, on
#: the same machine clock as the producers' ``CreateTime`` (timed outputs of benchmarks).
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}

Process = subprocess.Popen[bytes]


def isolated_prefix(letter: str = "h") -> str:
    """A fresh topic prefix (``h1a2b3c4d.``); the letter tells on a shared broker who made it."""
    return f"{letter}{uuid.uuid4().hex[:8]}."


@dataclass
class LocalHub:
    """One isolated hub on the broker at ``bootstrap``: topics, processes, keys and logs.

    ``clock`` is the workers' clock unless ``start_worker`` names another (``wall``, or
    ``scaled:ISO-INSTANT:SPEED[@EPOCH]``). With ``broker_timestamps`` the timed output topics
    (deliveries, alerts, dossier status) and every ``extra`` topic of ``create_topics`` are
    stamped by the broker (``APPEND_TIME``).
    """

    bootstrap: str
    workdir: Path
    partitions: int = 4
    prefix: str = field(default_factory=isolated_prefix)
    catalogue_path: Path = SAMPLE_CATALOGUE
    replication: int = 1
    clock: str = "wall"
    loglevel: str = "info"
    broker_timestamps: bool = False
    gateway_port: int = field(default_factory=free_port)
    procs: dict[str, Process] = field(default_factory=dict)  # label -> process, in start order
    ports: dict[str, int] = field(default_factory=dict)  # label -> its web/metrics port
    killed: set[str] = field(default_factory=set)  # labels killed on purpose
    started: Counter[str] = field(default_factory=Counter)

    # -- what the hub is ------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return Settings(kafka_bootstrap_servers=self.bootstrap, partitions=self.partitions,
                        replication_factor=self.replication, topic_prefix=self.prefix,
                        app_id=f"{self.prefix}worker", catalog_path=self.catalogue_path,
                        data_dir=self.workdir)

    @property
    def names(self) -> topics.TopicNames:
        return topics.names(self.settings)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def keys_file(self) -> Path:
        return self.workdir / "keys.json"

    @property
    def workers(self) -> list[Process]:
        """Every worker started, in start order (killed ones too)."""
        return [p for label, p in self.procs.items() if label.startswith("worker")]

    @property
    def worker_ports(self) -> list[int]:
        """Each worker's web port (``/metrics``), in start order."""
        return [port for label, port in self.ports.items() if label.startswith("worker")]

    # -- topics, keys, catalogue ---------------------------------------------------------------

    def topic_specs(self, extra: Iterable[str] = ()) -> list[topics.TopicSpec]:
        """The hub's topics and ``extra`` ones, timed ones stamped by the broker if asked."""
        n = self.names
        timed = {n.deliveries, n.alerts, n.status} if self.broker_timestamps else set()
        stamp = APPEND_TIME if self.broker_timestamps else {}
        specs = [replace(s, config={**s.config, **APPEND_TIME}) if s.name in timed else s
                 for s in topics.specs(self.settings)]
        return specs + [topics.TopicSpec(name, self.partitions, self.replication, dict(stamp))
                        for name in extra]

    def create_topics(self, extra: tuple[str, ...] = ()) -> None:
        """Create the hub's topics (and ``extra`` ones with the hub's partitions)."""
        topics.ensure_topics(self.bootstrap, self.settings, wanted=self.topic_specs(extra))

    def write_keys(self, catalogue: Catalogue) -> Path:
        """A fresh signing key for every agency of ``catalogue``, in ``keys_file``."""
        from lienthong.connectors.simulator.play import write_keys

        write_keys(catalogue, self.keys_file)
        return self.keys_file

    def route_to_doubles(self, catalogue: Catalogue, doubles_url: str) -> Path:
        """From now on the processes started read a copy of ``catalogue`` in which every
        agency's system is the doubles server at ``doubles_url`` (also agencies the catalogue
        gives no endpoint: their deliveries would otherwise be parked as ``no_endpoint``)."""
        from lienthong.connectors.doubles import point_catalogue_at

        routed = point_catalogue_at(catalogue, doubles_url, only_with_endpoint=False)
        path = self.workdir / "catalogue-doubles.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(routed.to_dict(), ensure_ascii=False), encoding="utf-8")
        self.catalogue_path = path
        return path

    # -- processes ------------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of the hub's processes: this hub's settings, none of the caller's
        own ``LIENTHONG_*`` variables, and ``extra``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("LIENTHONG_")}
        env.update({"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
                    "LIENTHONG_TOPIC_PREFIX": self.prefix,
                    "LIENTHONG_PARTITIONS": str(self.partitions),
                    "LIENTHONG_REPLICATION": str(self.replication),
                    "LIENTHONG_APP_ID": self.settings.app_id,
                    "LIENTHONG_CATALOG": str(self.catalogue_path),
                    "LIENTHONG_CLOCK": self.clock}, **extra)
        return env

    def spawn(self, part: str, args: list[str], env: dict[str, str]) -> Process:
        """Run ``lienthong ARGS`` as process ``PARTn`` with its output in ``workdir``."""
        label = f"{part}{self.started[part]}"
        self.started[part] += 1
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.workdir / f"{label}.log", "wb") as log:  # the child keeps its own copy
            proc = subprocess.Popen([sys.executable, "-m", "lienthong.services.cli", *args],
                                    env=env, stdout=log, stderr=subprocess.STDOUT,
                                    cwd=self.workdir)
        self.procs[label] = proc
        return proc

    def start_worker(self, clock: str | None = None, loglevel: str | None = None) -> Process:
        """A worker of the hub's app (its own data directory and web port); ``clock`` and
        ``loglevel`` override the hub's."""
        label = f"worker{self.started['worker']}"
        self.ports[label] = free_port()
        extra = {"LIENTHONG_DATA_DIR": str(self.workdir / f"{label}-data"),
                 "LIENTHONG_WORKER_PORT": str(self.ports[label])}
        if clock is not None:
            extra["LIENTHONG_CLOCK"] = clock
        return self.spawn("worker", ["worker", "--loglevel", loglevel or self.loglevel],
                          self.env(**extra))

    def start_gateway(self, bootstrap: str | None = None, kafka_timeout: float = 2.0,
                      ) -> Process:
        """The gateway on ``gateway_port`` (the same on every restart) with ``keys_file`` and
        a spool in ``workdir``; ``bootstrap`` points it at another (e.g. dead) broker."""
        return self.spawn("gateway", [
            "gateway", "--port", str(self.gateway_port), "--keys-file", str(self.keys_file),
            "--spool-dir", str(self.workdir / "gateway-spool"),
            "--bootstrap", bootstrap or self.bootstrap, "--kafka-timeout", str(kafka_timeout)],
            self.env())

    def start_delivery(self, *options: str) -> Process:
        """The delivery service of the hub's deliveries (its own consumer group), signing
        with ``keys_file``; ``options`` are more ``lienthong delivery`` options."""
        return self.spawn("delivery", [
            "delivery", "--bootstrap", self.bootstrap, "--catalog", str(self.catalogue_path),
            "--keys-file", str(self.keys_file), "--group", f"{self.prefix}delivery",
            "--metrics-port", "0", *options], self.env())

    async def gateway_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """The gateway's ``/healthz`` answer once it gives one."""
        import httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    answer = await client.get(f"{self.gateway_url}/healthz")
                    if answer.status_code == 200:
                        return dict(answer.json())
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the gateway did not answer in {timeout:.0f} s")

    def label(self, which: Process | str) -> str:
        if isinstance(which, str):
            if which not in self.procs:
                raise KeyError(f"no process {which!r}; started: {', '.join(self.procs)}")
            return which
        for label, proc in self.procs.items():
            if proc is which:
                return label
        raise KeyError(f"process {which.pid} was not started by this hub")

    def kill(self, which: Process | str) -> None:
        """SIGKILL, as a crash would; recorded as killed on purpose."""
        label = self.label(which)
        proc = self.procs[label]
        self.killed.add(label)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)

    def live(self) -> list[Process]:
        """Workers not killed on purpose (a test watches these for crashes)."""
        return [p for label, p in self.procs.items()
                if label.startswith("worker") and label not in self.killed]

    def crashed(self) -> list[str]:
        """Labels of the processes that exited without being killed on purpose."""
        return [label for label, p in self.procs.items()
                if p.poll() is not None and label not in self.killed]

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM every process still running, then SIGKILL what did not stop in time."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def log(self, which: int | str = -1, chars: int = 4000) -> str:
        """The end of a process's log: a label, or the index of a worker (the latest by
        default)."""
        if isinstance(which, int):
            workers = [label for label in self.procs if label.startswith("worker")]
            if not workers:
                return ""
            which = workers[which % len(workers)]
        path = self.workdir / f"{which}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- traffic --------------------------------------------------------------------------------

    def producer(self) -> KafkaProducer:
        from kafka import KafkaProducer

        return KafkaProducer(bootstrap_servers=self.bootstrap, acks="all",
                             enable_idempotence=True, linger_ms=2)

    def publish(self, events: list[dict[str, Any]]) -> None:
        """Events (canonical JSON form) onto the hub's ``dossier.events``, keyed by dossier."""
        from lienthong.schemas import codec

        producer = self.producer()
        try:
            for e in events:
                producer.send(self.names.events, key=e["dossier"].encode(),
                              value=codec.EVENTS.encode(e))
            producer.flush()
        finally:
            producer.close()
