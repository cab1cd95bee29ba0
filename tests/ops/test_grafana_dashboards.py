"""deploy/grafana: the provisioning points Grafana at the Prometheus datasource and at the folder
compose mounts the dashboards into; every dashboard is valid JSON with unique ids and uids, its
panels are laid out and use the provisioned datasource, and every query parses as PromQL (with
Prometheus's own parser, through promtool) and references only metrics the suite exposes."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops.known_metrics import BUSINESS, KNOWN, check_promql, metric_names
from tooling import ROOT
from tooling.prometheus import promtool

from crm_contracts.topics import SERVICES

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yaml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "crm.yaml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
EXPECTED = {"overview", *SERVICES}
GRAFANA_RANGES = re.compile(r"\[\$\{?__(?:rate_interval|interval|range)\}?\]")
GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those nested in collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in board["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def targets(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [target for panel in panels(board) for target in panel.get("targets", [])]


def variable_queries(board: dict[str, Any]) -> list[str]:
    queries: list[str] = []
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def provisioned_uids() -> set[str]:
    document = yaml.safe_load(DATASOURCES.read_text())
    return {source["uid"] for source in document["datasources"]}


def as_promql(expr: str) -> str:
    """A Grafana query as Prometheus sees it: ranges and variables substituted."""
    return GRAFANA_VARIABLE.sub("x", GRAFANA_RANGES.sub("[5m]", expr))


def test_the_datasource_is_the_compose_prometheus_with_uid_prometheus() -> None:
    document = yaml.safe_load(DATASOURCES.read_text())
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert (source["uid"], source["type"], source["url"]) == (
        "prometheus",
        "prometheus",
        "http://prometheus:9090",
    )
    assert source["isDefault"] is True


def test_the_dashboard_provider_reads_the_folder_compose_mounts() -> None:
    document = yaml.safe_load(PROVIDERS.read_text())
    assert document["apiVersion"] == 1
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    path = provider["options"]["path"]
    assert path == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load(COMPOSE.read_text())
    mounts = {
        volume.split(":")[0]: volume.split(":")[1]
        for volume in compose["services"]["grafana"]["volumes"]
    }
    assert mounts["./grafana/dashboards"] == path
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert (GRAFANA / "provisioning" / "dashboards").is_dir()
    assert (GRAFANA / "provisioning" / "datasources").is_dir()


def test_the_expected_dashboards_with_unique_uids_and_titles() -> None:
    boards = dashboards()
    assert set(boards) == EXPECTED
    uids = [board["uid"] for board in boards.values()]
    titles = [board["title"] for board in boards.values()]
    assert len(set(uids)) == len(uids), uids
    assert len(set(titles)) == len(titles), titles
    assert all(re.fullmatch(r"[a-z0-9-]{1,40}", uid) for uid in uids), uids
    for name, board in boards.items():
        assert board["uid"] == f"crm-{name}"
        assert "id" not in board or board["id"] is None, "provisioned dashboards carry no id"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_panels_have_unique_ids_a_layout_and_the_provisioned_datasource(name: str) -> None:
    board = dashboards()[name]
    uids = provisioned_uids()
    everything = panels(board)
    ids = [panel["id"] for panel in everything]
    assert len(set(ids)) == len(ids), f"duplicate panel ids in {name}: {ids}"
    cells: set[tuple[int, int]] = set()
    for panel in everything:
        title = f"{name}: {panel.get('title')!r}"
        position = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(position), title
        assert position["w"] > 0, title
        assert position["h"] > 0, title
        assert position["x"] >= 0, title
        assert position["x"] + position["w"] <= 24, title
        covered = {
            (x, y)
            for x in range(position["x"], position["x"] + position["w"])
            for y in range(position["y"], position["y"] + position["h"])
        }
        assert not covered & cells, f"{title} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, title
        assert panel["targets"], f"{title} has no query"
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"])["uid"] in uids, title
            assert target["expr"].strip(), title
            assert target["refId"], title
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            assert variable["datasource"]["uid"] in uids, variable["name"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_queries_reference_only_known_metrics(name: str) -> None:
    board = dashboards()[name]
    unknown: dict[str, list[str]] = {}
    for target in targets(board):
        names = metric_names(target["expr"])
        assert names, f"no metric found in {target['expr']!r}"
        if names - KNOWN:
            unknown[target["expr"]] = sorted(names - KNOWN)
    for query in variable_queries(board):
        match = LABEL_VALUES.match(query)
        assert match, f"variable query {query!r} is not label_values(...)"
        if match.group(1) and metric_names(match.group(1)) - KNOWN:
            unknown[query] = sorted(metric_names(match.group(1)) - KNOWN)
    assert not unknown, unknown


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_dashboard_shows_its_business_metrics(name: str) -> None:
    referenced = set().union(*(metric_names(t["expr"]) for t in targets(dashboards()[name])))
    missing = sorted(BUSINESS[name] - referenced)
    assert not missing, f"{name}.json shows none of {missing}"


def test_overview_shows_up_lag_dead_letters_outbox_throughput_latency_memory() -> None:
    referenced = set().union(*(metric_names(t["expr"]) for t in targets(dashboards()["overview"])))
    assert {
        "up",
        "crm:consumer_lag:sum",
        "crm_dlq_messages_total",
        "crm_outbox_oldest_age_seconds",
        "crm_events_processed_total",
        "crm_batch_duration_seconds_bucket",
        "process_resident_memory_bytes",
    } <= referenced


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    """Each query (Grafana's variables and ranges substituted) as a recording rule: promtool
    check rules parses them all with Prometheus's parser."""
    exprs = sorted(
        {as_promql(t["expr"]) for board in dashboards().values() for t in targets(board)}
        | {
            as_promql(match.group(1))
            for board in dashboards().values()
            for query in variable_queries(board)
            if (match := LABEL_VALUES.match(query)) and match.group(1)
        }
    )
    assert len(exprs) > 40
    done = check_promql(promtool(), exprs, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout


def test_the_promql_check_catches_a_broken_query(tmp_path: Path) -> None:
    done = check_promql(promtool(), ["sum by (service (up)"], tmp_path)
    assert done.returncode != 0
    assert "parse error" in (done.stdout + done.stderr)
