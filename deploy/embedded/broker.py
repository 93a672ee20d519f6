"""The embedded Apache Kafka broker: KRaft, 127.0.0.1 only, one node or a 3-node cluster.

Jars come from Maven Central through the pinned ``pom.xml`` beside this module, copied into a
cache this launcher owns (``LIENTHONG_CACHE_DIR``, default ``~/.cache/lienthong``)::

    with EmbeddedKafka() as kafka:            # temporary data, one node
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)

    EmbeddedKafka(data_dir="var/kafka", nodes=3).start()   # persistent 3-node cluster

Every node runs both KRaft roles (broker and controller) with a static voter set, so one of
three nodes may die and the other two keep the quorum; ports are chosen afresh on every start,
which a static voter set allows without reformatting. Data in a persistent ``data_dir`` is
formatted once and survives restarts.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO

from lienthong.services.settings import Settings

HOST = "127.0.0.1"
# Kafka's own default (kafka-server-start.sh). With 384m, G1's concurrent marking and
# collections took 0.1-0.25 of a core under the benchmarks' load on 2 cores.
DEFAULT_HEAP = "1g"
_PACKAGE = "lienthong.deploy.embedded"
_READY_MARK = ".complete"
_BIND_FAILURE = re.compile(r"BindException|Address already in use")


class BrokerError(RuntimeError):
    """The embedded broker could not be resolved, formatted, started or reached."""


# --------------------------------------------------------------------------- jars


def pom_path() -> Path:
    """The pinned pom shipped with this package (a real file, editable install or wheel)."""
    return Path(str(resources.files(_PACKAGE).joinpath("pom.xml")))


def log_config_path() -> Path:
    return Path(str(resources.files(_PACKAGE).joinpath("log4j2.properties")))


def pinned_version() -> str:
    """The Kafka version pinned in the pom (``<kafka.version>``)."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom_path().read_text())
    if match is None:  # pragma: no cover - the pom is part of this package
        raise BrokerError(f"no <kafka.version> in {pom_path()}")
    return match.group(1).strip()


def libs_dir(version: str, cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{version}" / "libs"


def ensure_jars(
    version: str | None = None,
    cache_dir: Path | None = None,
    *,
    echo: Callable[[str], None] = print,
) -> Path:
    """Resolve the broker's jars into the cache once; later calls return at once.

    The copy goes to a temporary directory renamed into place when Maven succeeds, so an
    interrupted download never looks complete.
    """
    settings = Settings.from_env()
    version = version or settings.kafka_version or pinned_version()
    cache_dir = Path(cache_dir or settings.cache_dir).expanduser()
    libs = libs_dir(version, cache_dir)
    if (libs / _READY_MARK).exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven ('mvn') is required to fetch the Kafka broker's jars; install "
                          "Maven 3.8+ (and Java 17) and retry")
    libs.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs.", dir=libs.parent))
    echo(f"Fetching Apache Kafka {version} broker jars from Maven Central into {libs} "
         "(first run only, about 40 MB)...")
    started = time.monotonic()
    command = [mvn, "-q", "-B", "-f", str(pom_path()), "process-resources",
               f"-Dkafka.version={version}", f"-Dlienthong.libs={staging}"]
    result = subprocess.run(command, cwd=libs.parent, capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(f"Maven could not resolve Kafka {version} (exit {result.returncode}):\n"
                          + (result.stdout + result.stderr)[-3000:])
    (staging / _READY_MARK).write_text(version + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    jars = len(list(libs.glob("*.jar")))
    echo(f"Fetched {jars} jars in {time.monotonic() - started:.1f} s.")
    return libs


def java_executable() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise BrokerError("Java 17 or newer is required to run the embedded Kafka broker")
    return found


# --------------------------------------------------------------------------- configuration


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the broker may still lose a race for it: retried)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding.

    Never starting with "-": the storage tool would read such an id as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def broker_config(
    node: int,
    nodes: int,
    ports: Mapping[int, tuple[int, int]],
    data: Path,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """server.properties of one combined broker+controller node.

    ``ports`` maps node id -> (client port, controller port). Replication follows the cluster
    size (1 or 3, min.insync.replicas 1 or 2); timeouts are short so groups, transactions and
    failover settle in seconds rather than the production defaults' tens of seconds.
    """
    replication = min(nodes, 3)
    min_isr = 1 if replication == 1 else 2
    client, controller = ports[node]
    voters = ",".join(f"{n}@{HOST}:{ports[n][1]}" for n in sorted(ports))
    config = {
        "process.roles": "broker,controller",
        "node.id": str(node),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{client},CONTROLLER://{HOST}:{controller}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{client}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        # Topics are created explicitly, with their partition counts, by the hub.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": str(replication),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min_isr),
        "transaction.state.log.num.partitions": "10",
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # A group forms as soon as its first member joins; test consumers may ask for short
        # sessions.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "500",
        # A producer that dies mid-transaction is aborted within a minute at most.
        "transaction.max.timeout.ms": "60000",
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        # A killed node is fenced, and dropped from the ISR, within seconds.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        "replica.lag.time.max.ms": "5000",
        "controlled.shutdown.enable": "true",
        "log.retention.check.interval.ms": "30000",
    }
    config.update(extra or {})
    return config


def write_properties(path: Path, config: Mapping[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in config.items()))


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the broker gets SIGTERM if the process that started it dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Node:
    node_id: int
    home: Path
    client_port: int = 0
    controller_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    console: IO[bytes] | None = field(default=None, repr=False)

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def address(self) -> str:
        return f"{HOST}:{self.client_port}"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("console.log", "server.log"):
            path = self.logs / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                text += f"--- {path} (last {len(tail)} lines)\n" + "\n".join(tail) + "\n"
        return text


class EmbeddedKafka:
    """A local Apache Kafka (KRaft) cluster of ``nodes`` nodes on 127.0.0.1.

    ``data_dir=None`` uses a temporary directory removed by ``stop()``; a path keeps the data
    across restarts (formatted on first use only). ``port`` fixes node 1's client port (node n
    gets ``port + n - 1``); otherwise free ports are chosen. ``start()`` returns the bootstrap
    address (``host:port,...``); ``kill(n)`` and ``restart(n)`` are for failure tests.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        nodes: int = 1,
        *,
        port: int | None = None,
        heap: str = DEFAULT_HEAP,
        version: str | None = None,
        cache_dir: Path | str | None = None,
        extra_config: Mapping[str, str] | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"nodes must be at least 1, not {nodes}")
        settings = Settings.from_env()
        self.nodes = nodes
        self.port = port
        self.heap = heap
        self.version = version or settings.kafka_version or pinned_version()
        self.cache_dir = Path(cache_dir or settings.cache_dir).expanduser()
        self.extra_config = dict(extra_config or {})
        self._echo = echo or (lambda message: print(message, file=sys.stderr))
        self._temporary = data_dir is None
        self.data_dir = Path(data_dir).expanduser().resolve() if data_dir is not None else None
        self._nodes: dict[int, _Node] = {}
        self.cluster_id = ""
        #: Seconds from launching the JVMs to the first metadata answer, of the last start().
        self.start_seconds: float | None = None

    # ------------------------------------------------------------------ public API

    @property
    def bootstrap(self) -> str:
        if not self._nodes or not any(node.alive() for node in self._nodes.values()):
            raise BrokerError("the embedded broker is not running")
        return ",".join(node.address for node in self._nodes.values())

    def address(self, node: int) -> str:
        """The client address of one node (1-based)."""
        return self._node(node).address

    def node_alive(self, node: int) -> bool:
        return self._node(node).alive()

    def start(self, timeout: float = 90.0) -> str:
        """Fetch jars if needed, format storage once, start every node, wait until it answers.

        Returns the bootstrap address. On failure every node is stopped before the error.
        """
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> str:
        libs = ensure_jars(self.version, self.cache_dir, echo=self._echo)
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="lienthong-kafka-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._nodes = {n: _Node(n, self.data_dir / f"node-{n}") for n in range(1, self.nodes + 1)}
        self._load_or_create_cluster()
        attempts = 1 if self.port is not None else 4
        for attempt in range(1, attempts + 1):
            self._assign_ports()
            self._write_configs()
            if attempt == 1:
                self._format(libs)
            began = time.monotonic()
            for node in self._nodes.values():
                self._launch(node, libs)
            try:
                self._wait_ready(list(self._nodes), began + timeout)
            except BrokerError:
                bind_failure = any(_BIND_FAILURE.search(n.log_tail(200))
                                   for n in self._nodes.values())
                self._terminate_all(timeout=10)
                if bind_failure and attempt < attempts:
                    self._echo("a chosen port was taken; retrying with other ports")
                    continue
                raise
            self.start_seconds = time.monotonic() - began
            return self.bootstrap
        raise BrokerError("unreachable")  # pragma: no cover

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM every node (controlled shutdown), SIGKILL any still alive after ``timeout``."""
        self._terminate_all(timeout)
        if self._temporary and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def kill(self, node: int) -> None:
        """SIGKILL one node, as a crash would."""
        target = self._node(node)
        if target.process is not None and target.alive():
            target.process.kill()
            target.process.wait(10)
        self._close_console(target)

    def terminate(self, node: int, timeout: float = 20.0) -> None:
        """Stop one node cleanly."""
        self._stop_nodes([self._node(node)], timeout)

    def restart(self, node: int, timeout: float = 60.0) -> None:
        """Start a killed or stopped node again on its former ports and wait until it answers."""
        target = self._node(node)
        if target.alive():
            self.terminate(node)
        libs = ensure_jars(self.version, self.cache_dir, echo=self._echo)
        began = time.monotonic()
        self._launch(target, libs)
        self._wait_ready([node], began + timeout)

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals

    def _node(self, node: int) -> _Node:
        if node not in self._nodes:
            raise ValueError(f"no node {node}; nodes are 1..{self.nodes}")
        return self._nodes[node]

    def _load_or_create_cluster(self) -> None:
        assert self.data_dir is not None
        marker = self.data_dir / "cluster.json"
        if marker.exists():
            saved = json.loads(marker.read_text())
            if saved.get("nodes") != self.nodes:
                raise BrokerError(f"{self.data_dir} holds a {saved.get('nodes')}-node cluster; "
                                  f"use --nodes {saved.get('nodes')} or another data directory")
            self.cluster_id = str(saved["cluster_id"])
        else:
            self.cluster_id = new_cluster_id()
        for node in self._nodes.values():
            node.logs.mkdir(parents=True, exist_ok=True)

    def _assign_ports(self) -> None:
        taken: set[int] = set()

        def pick() -> int:
            while (port := free_port()) in taken:
                pass
            taken.add(port)
            return port

        for node in self._nodes.values():
            node.client_port = self.port + node.node_id - 1 if self.port is not None else pick()
            node.controller_port = pick()

    def _write_configs(self) -> None:
        ports = {n.node_id: (n.client_port, n.controller_port) for n in self._nodes.values()}
        for node in self._nodes.values():
            config = broker_config(node.node_id, self.nodes, ports, node.data, self.extra_config)
            write_properties(node.properties, config)

    def _jvm(self, node: _Node, libs: Path, heap: str) -> list[str]:
        return [
            java_executable(), f"-Xmx{heap}", "-Xss1m", "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={node.logs}",
            f"-Dlog4j2.configurationFile={log_config_path()}",
            "-cp", f"{libs}/*",
        ]

    def _format(self, libs: Path) -> None:
        """Format each node's storage once; existing storage (a persistent dir) is kept."""
        assert self.data_dir is not None
        pending = [n for n in self._nodes.values() if not (n.data / "meta.properties").exists()]
        running = []
        for node in pending:
            command = [*self._jvm(node, libs, "128m"), "kafka.tools.StorageTool", "format",
                       "--cluster-id", self.cluster_id, "--config", str(node.properties)]
            running.append((node, subprocess.Popen(command, stdout=subprocess.PIPE,
                                                   stderr=subprocess.STDOUT)))
        for node, process in running:
            out, _ = process.communicate(timeout=120)
            if process.returncode != 0:
                raise BrokerError(f"formatting KRaft storage of node {node.node_id} failed:\n"
                                  + out.decode(errors="replace")[-3000:])
        (self.data_dir / "cluster.json").write_text(json.dumps(
            {"cluster_id": self.cluster_id, "nodes": self.nodes, "version": self.version}))

    def _launch(self, node: _Node, libs: Path) -> None:
        node.logs.mkdir(parents=True, exist_ok=True)
        self._close_console(node)
        node.console = (node.logs / "console.log").open("ab")
        command = [*self._jvm(node, libs, self.heap), "kafka.Kafka", str(node.properties)]
        in_main_thread = threading.current_thread() is threading.main_thread()
        node.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=node.console,
            stderr=subprocess.STDOUT,
            # Own process group: a terminal's Ctrl-C reaches the launcher, which stops the
            # broker cleanly, not the JVM directly.
            start_new_session=True,
            # The death signal follows the starting *thread*; only the main thread lives as
            # long as the process.
            preexec_fn=_die_with_parent if in_main_thread and sys.platform == "linux" else None,
        )

    def _wait_ready(self, node_ids: list[int], deadline: float) -> None:
        """Wait until each node accepts connections and the cluster lists it as unfenced."""
        for node_id in node_ids:
            node = self._nodes[node_id]
            while True:
                if not node.alive():
                    raise BrokerError(f"Kafka node {node_id} exited during start-up "
                                      f"(code {node.process.returncode if node.process else '?'})"
                                      f"\n{node.log_tail()}")
                if time.monotonic() > deadline:
                    raise BrokerError(f"Kafka node {node_id} did not answer in time\n"
                                      f"{node.log_tail()}")
                if _port_open(node.client_port) and _answers(node.address, self.nodes):
                    break
                time.sleep(0.2)

    def _terminate_all(self, timeout: float) -> None:
        self._stop_nodes(list(self._nodes.values()), timeout)

    def _stop_nodes(self, nodes: list[_Node], timeout: float) -> None:
        for node in nodes:
            if node.process is not None and node.alive():
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(10)
            self._close_console(node)

    @staticmethod
    def _close_console(node: _Node) -> None:
        if node.console is not None:
            node.console.close()
            node.console = None


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _answers(address: str, expected_brokers: int) -> bool:
    """A metadata answer from ``address`` listing ``expected_brokers`` unfenced brokers."""
    from kafka import KafkaAdminClient  # only the launcher's readiness check needs kafka here

    try:
        admin = KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=3000,
                                 bootstrap_timeout_ms=3000, client_id="lienthong-embedded")
    except Exception:
        return False
    try:
        cluster = admin.describe_cluster()
        unfenced = [b for b in cluster["brokers"] if not b.get("is_fenced")]
        return len(unfenced) >= expected_brokers
    except Exception:
        return False
    finally:
        admin.close()


@contextlib.contextmanager
def kafka_cluster(
    settings: Settings | None = None,
    *,
    data_dir: Path | str | None = None,
    nodes: int = 1,
    echo: Callable[[str], None] | None = None,
) -> Iterator[str]:
    """Yield a bootstrap address: ``KAFKA_BOOTSTRAP_SERVERS`` if set, else an embedded broker.

    The embedded broker is stopped on exit; an external cluster is left alone.
    """
    settings = settings or Settings.from_env()
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    broker = EmbeddedKafka(data_dir=data_dir, nodes=nodes, echo=echo)
    try:
        yield broker.start()
    finally:
        broker.stop()
