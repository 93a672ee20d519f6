"""Prometheus rules, scrape config, Alertmanager routes and the Grafana dashboard agree with the
metric contract (deploy/prometheus/METRICS.md) and with the code that exports the metrics.

``promtool`` comes from Debian's ``prometheus`` package; without it these tests fail (install
it: ``apt-get install -y prometheus``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[2]
PROM = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana" / "lienthong.json"
NAME = re.compile(r"\blienthong_[a-z0-9_]+")
SUFFIXES = ("_bucket", "_sum", "_count")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: apt-get install -y prometheus", pytrace=False)
    return subprocess.run([tool, *args], cwd=PROM, capture_output=True, text=True, timeout=60,
                          check=False)


def contract() -> set[str]:
    text = (PROM / "METRICS.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `(lienthong_[a-z0-9_]+)`", text, flags=re.M))


def used_in(expr: str) -> set[str]:
    names = set()
    for n in NAME.findall(expr):
        for s in SUFFIXES:
            if n.endswith(s) and n[: -len(s)] in contract():
                n = n[: -len(s)]
        names.add(n)
    return names


def rules() -> list[dict[str, object]]:
    data = yaml.safe_load((PROM / "rules.yml").read_text(encoding="utf-8"))
    return [r for g in data["groups"] for r in g["rules"]]


def test_promtool_accepts_the_rules_and_the_scrape_config() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_the_rules_fire_on_the_hand_made_series_of_their_unit_tests() -> None:
    result = promtool("test", "rules", "rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_metric_the_rules_and_grafana_use_is_in_the_contract() -> None:
    names = contract()
    for r in rules():
        assert used_in(str(r["expr"])) <= names, (r.get("alert") or r.get("record"), r["expr"])
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert used_in(target["expr"]) <= names, (panel["title"], target["expr"])


def test_every_metric_the_code_exports_is_in_the_contract() -> None:
    declared = re.compile(
        r"(Counter|Gauge|Histogram|GaugeMetricFamily)\(\s*\"(lienthong_[a-z0-9_]+)\"")
    found: dict[str, str] = {}
    for path in (*ROOT.glob("services/**/*.py"), *ROOT.glob("connectors/**/*.py")):
        for kind, name in declared.findall(path.read_text(encoding="utf-8")):
            if kind == "Counter" and not name.endswith("_total"):
                name += "_total"
            found[name] = str(path.relative_to(ROOT))
    assert found, "no metric declarations found"
    missing = {n: p for n, p in found.items() if n not in contract()}
    assert not missing, f"exported but not in METRICS.md: {missing}"


def test_each_alert_has_a_severity_and_a_summary() -> None:
    alerts = [r for r in rules() if "alert" in r]
    assert {a["alert"] for a in alerts} >= {
        "LienthongOverdueRising", "LienthongConsumerLag", "LienthongDeliveryFailing",
        "LienthongDeadLetters", "LienthongPortalDrift"}
    for a in alerts:
        assert a["labels"]["severity"] in ("warning", "critical"), a["alert"]  # type: ignore[index]
        assert a["annotations"]["summary"], a["alert"]  # type: ignore[index]


def test_alertmanager_routes_name_only_defined_receivers_and_known_alerts() -> None:
    config = yaml.safe_load((PROM / "alertmanager.yml").read_text(encoding="utf-8"))
    receivers = {r["name"] for r in config["receivers"]}
    routes = [config["route"], *config["route"].get("routes", [])]
    assert {r["receiver"] for r in routes} <= receivers
    alert_names = {str(r["alert"]) for r in rules() if "alert" in r}
    matcher = re.compile(r'^(\w+)(=~|=|!=|!~)"(.*)"$')
    for route in routes[1:]:
        for m in route["matchers"]:
            label, _op, value = matcher.match(m).groups()  # type: ignore[union-attr]
            if label == "alertname":
                pattern = re.compile(value.replace("\\\\", "\\"))
                assert any(pattern.fullmatch(a) for a in alert_names), m
    for rule in config["inhibit_rules"]:
        assert rule["source_matchers"] and rule["target_matchers"] and rule["equal"]


def test_grafana_panels_have_unique_ids_and_fit_the_grid() -> None:
    dashboard = json.loads(GRAFANA.read_text(encoding="utf-8"))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for p in dashboard["panels"]:
        pos = p["gridPos"]
        assert pos["x"] + pos["w"] <= 24 and p["targets"], p["title"]
