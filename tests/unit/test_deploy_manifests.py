"""Deployment manifests checked against the code: every YAML parses, the Strimzi topics and the
compose cluster match ``lienthong.schemas.topics``, every ``lienthong`` command line in the
manifests parses with that command's own parser, Prometheus accepts the compose scrape
configuration and systemd accepts the units."""

from __future__ import annotations

import argparse
import importlib
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lienthong.schemas.topics import specs
from lienthong.services.cli import COMMANDS
from lienthong.services.settings import Settings

DEPLOY = Path(__file__).parents[2] / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
PARTITIONS, REPLICATION = 8, 3


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in docs(p)
            if d.get("kind") == kind]


def compose() -> dict[str, Any]:
    return docs(DEPLOY / "compose" / "docker-compose.yml")[0]


def test_every_yaml_manifest_parses() -> None:
    assert len(YAML_FILES) >= 10
    for path in YAML_FILES:
        assert docs(path), f"{path} holds no document"


def test_strimzi_topics_match_the_topic_module() -> None:
    wanted = {s.name: s for s in specs(Settings(partitions=PARTITIONS,
                                                replication_factor=REPLICATION))}
    found = {t["spec"].get("topicName", t["metadata"]["name"]): t for t in k8s("KafkaTopic")}
    assert set(found) == set(wanted)
    for name, spec in wanted.items():
        topic = found[name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "lienthong"
        assert topic["spec"]["partitions"] == spec.partitions, name
        assert topic["spec"]["replicas"] == spec.replication, name
        assert {k: str(v) for k, v in topic["spec"]["config"].items()} == spec.config, name


def test_the_strimzi_cluster_is_three_kraft_nodes_with_min_isr_two() -> None:
    [kafka] = k8s("Kafka")
    [pool] = k8s("KafkaNodePool")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert pool["spec"]["replicas"] == 3
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    config = kafka["spec"]["kafka"]["config"]
    assert (config["default.replication.factor"], config["min.insync.replicas"]) == (3, 2)
    assert config["unclean.leader.election.enable"] is False
    [env] = [c for c in k8s("ConfigMap") if c["metadata"]["name"] == "lienthong-env"]
    assert int(env["data"]["LIENTHONG_PARTITIONS"]) == PARTITIONS
    assert int(env["data"]["LIENTHONG_REPLICATION"]) == REPLICATION
    [hpa] = k8s("HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] <= PARTITIONS  # more workers than partitions idle


def test_compose_runs_three_kraft_brokers_and_every_part_of_the_hub() -> None:
    services = compose()["services"]
    assert {"worker", "gateway", "delivery", "dashboard", "notify", "prometheus",
            "alertmanager", "grafana", "topics"} <= set(services)
    brokers = [s for name, s in services.items() if name.startswith("kafka-")]
    assert len(brokers) == 3
    ids = sorted(int(b["environment"]["KAFKA_NODE_ID"]) for b in brokers)
    assert ids == [1, 2, 3]
    for b in brokers:
        env = b["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
        assert (env["KAFKA_DEFAULT_REPLICATION_FACTOR"], env["KAFKA_MIN_INSYNC_REPLICAS"]) == \
            (3, 2)
    assert services["worker"]["deploy"]["replicas"] == 2
    for name in ("topics", "worker", "gateway"):
        env = services[name]["environment"]
        assert int(env["LIENTHONG_PARTITIONS"]) == PARTITIONS
        assert int(env["LIENTHONG_REPLICATION"]) == REPLICATION


# -- command lines in the manifests --------------------------------------------------------

def _parse(argv: list[str]) -> argparse.Namespace:
    name, rest = argv[0], argv[1:]
    assert name in COMMANDS, f"lienthong {name}: no such command"
    module = importlib.import_module(COMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"lienthong {name}", exit_on_error=False)
    module.add_arguments(parser)
    return parser.parse_args(rest)


def command_lines() -> list[tuple[str, list[str]]]:
    lines: list[tuple[str, list[str]]] = []
    for name, svc in compose()["services"].items():
        cmd = svc.get("command")
        if isinstance(cmd, list) and cmd and cmd[0] == "lienthong":
            lines.append((f"compose {name}", [c.replace("${SMTP_RELAY:-smtp}", "smtp")
                                              .replace("${SMTP_FROM:-lienthong@localhost}",
                                                       "x@y") for c in cmd[1:]]))
    for d in k8s("Deployment"):
        for c in d["spec"]["template"]["spec"]["containers"]:
            lines.append((f"k8s {d['metadata']['name']}", list(c["args"])))
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart=")
                                   .replace("${SMTP_RELAY}", "smtp")
                                   .replace("${SMTP_FROM}", "x@y"))
                assert argv[0] == "/opt/lienthong/venv/bin/lienthong"
                lines.append((f"systemd {unit.name}", argv[1:]))
    return lines


def test_every_hub_command_line_in_the_manifests_parses() -> None:
    lines = command_lines()
    assert {argv[0] for _, argv in lines} >= {"worker", "gateway", "delivery", "dashboard",
                                              "notify"}
    for where, argv in lines:
        try:
            _parse(argv)
        except (argparse.ArgumentError, SystemExit) as exc:  # pragma: no cover - the failure
            pytest.fail(f"{where}: lienthong {' '.join(argv)}: {exc}")


# -- tools ----------------------------------------------------------------------------------

def test_promtool_accepts_the_compose_scrape_configuration(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (make test-deps)"
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "rules.yml", tmp_path / "rules.yml")
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    units = sorted([*(DEPLOY / "systemd").glob("*.service"),
                    *(DEPLOY / "systemd").glob("*.target"),
                    *(DEPLOY / "systemd").glob("*.timer")])
    for unit in units:
        # The program and environment files exist only on an installed VM.
        text = unit.read_text(encoding="utf-8")
        text = text.replace("/opt/lienthong/venv/bin/lienthong", "/bin/true")
        text = text.replace("EnvironmentFile=/", "EnvironmentFile=-/")
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    names = [str(tmp_path / u.name) for u in units if "@" not in u.name]
    names.append(str(tmp_path / "lienthong-worker@1.service"))
    done = subprocess.run([analyze, "verify", "--man=no", *names], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    problems = [line for line in done.stderr.splitlines()
                if str(tmp_path) in line or "lienthong" in line]
    assert done.returncode == 0 and not problems, done.stderr


def _unit(name: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in (DEPLOY / "systemd" / name).read_text(encoding="utf-8").splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key] = value
    return sections


def test_a_timer_runs_the_backup_every_night_and_catches_up_after_downtime() -> None:
    timer = _unit("lienthong-backup.timer")
    assert timer["Timer"]["Unit"] == "lienthong-backup.service"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    done = subprocess.run([analyze, "calendar", "--iterations=2", timer["Timer"]["OnCalendar"]],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "01:30:00" in done.stdout and "*-*-* 01:30:00" in done.stdout


def test_the_backup_service_is_a_oneshot_that_keeps_dated_backups() -> None:
    service = _unit("lienthong-backup.service")["Service"]
    assert service["Type"] == "oneshot"
    argv = shlex.split(service["ExecStart"])
    args = _parse(argv[1:])
    assert argv[1] == "backup" and args.into == Path("/var/backups/lienthong")
    assert args.keep >= 7 and not args.include_secrets  # secrets stay in /etc/lienthong
    assert "/var/backups/lienthong" in service["ReadWritePaths"]
    assert service["UMask"] == "0077"  # backups hold personal data (Decree 13/2023)
