"""A real Prometheus (Debian's) scrapes the four services with the compose scrape configuration
and rules.yml: every target is up, the services' own `service` label survives, the rules load
and evaluate healthy, and orders and a complaint move the business metrics it stores."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from ops.known_metrics import ROOT, RULES, SERVICES, rules
from ops.suite import send_traffic
from stackutil import ServiceProcess, SmtpServer, Stack, eventually, free_port, running_suite
from tooling.prometheus import prometheus

pytestmark = pytest.mark.e2e
CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def local_config(services: dict[str, ServiceProcess], own_port: int) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the compose targets swapped for the local services
    and a 1 s scrape and evaluation interval."""
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            if job["job_name"] == "crm":
                service = services[static["labels"]["service"]]
                static["targets"] = [f"127.0.0.1:{service.port}"]
            else:
                static["targets"] = [f"127.0.0.1:{own_port}"]
    return config


class Prometheus:
    def __init__(self, folder: Path, config: dict[str, Any], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / "prometheus.log"
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        (folder / "rules.yml").write_text(RULES.read_text())
        self.args = [
            str(prometheus()),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"prometheus exited:\n{self.tail()}"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"prometheus not ready after 30 s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The value of a query that yields one sample (None when it yields none)."""
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def suite(stack: Stack, smtp: SmtpServer) -> Iterator[dict[str, ServiceProcess]]:
    with running_suite(stack, smtp) as services:
        yield services


@pytest.fixture
def server(suite: dict[str, ServiceProcess], tmp_path: Path) -> Iterator[Prometheus]:
    port = free_port()
    server = Prometheus(tmp_path, local_config(suite, port), port)
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_prometheus_scrapes_the_suite_evaluates_the_rules_and_sees_business_metrics(
    stack: Stack, server: Prometheus
) -> None:
    def all_up() -> bool:
        found = server.query('up{job="crm"}')
        return {s["metric"]["service"] for s in found if s["value"][1] == "1"} == set(SERVICES)

    eventually(all_up, timeout=30, interval=0.5)
    # nothing moved yet: the services start from empty databases and zeroed counters
    assert server.value("sum(crm_points_earned_total)") == 0
    assert not server.value("max(crm_tickets_open)")

    traffic = send_traffic(stack)

    eventually(
        lambda: (server.value("sum(crm_points_earned_total)") or 0) >= traffic.points,
        timeout=30,
        interval=0.5,
    )
    eventually(lambda: (server.value("max(crm_tickets_open)") or 0) >= 1, timeout=30, interval=0.5)
    eventually(
        lambda: (
            (server.value('max(crm_points_outstanding{service="loyalty"})') or 0) >= traffic.points
        ),
        timeout=30,
        interval=0.5,
    )
    processed = server.query("sum by (service) (crm_events_processed_total)")
    assert {s["metric"]["service"] for s in processed if float(s["value"][1]) > 0} == set(SERVICES)
    # the services' own `service` label was kept (honor_labels), not renamed
    assert server.query('count({job="crm", exported_service!=""})') == []
    assert {
        s["metric"]["service"] for s in server.query('process_resident_memory_bytes{job="crm"}')
    } == set(SERVICES)

    def rules_healthy() -> bool:
        groups = server.api("rules")["groups"]
        loaded = [rule for group in groups for rule in group["rules"]]
        assert {g["name"] for g in groups} == {"crm.recording", "crm.alerts"}, groups
        assert len(loaded) == len(rules())
        bad = [(r["name"], r.get("lastError")) for r in loaded if r["health"] == "err"]
        assert not bad, bad
        return all(rule["health"] == "ok" for rule in loaded)

    eventually(rules_healthy, timeout=20, interval=0.5)
    eventually(
        lambda: (
            {s["metric"]["service"] for s in server.query("crm:consumer_lag:sum")} == set(SERVICES)
        ),
        timeout=20,
        interval=0.5,
    )
    firing = server.query('ALERTS{alertstate="firing", alertname=~"Crm.*"}')
    assert firing == [], firing
