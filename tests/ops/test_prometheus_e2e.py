"""A real Prometheus (Debian's) scrapes the four services with the compose scrape configuration
and rules.yml: every target is up, the services' own `service` label survives, the rules load
and evaluate healthy, and orders and a complaint move the business metrics it stores."""

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from ops.known_metrics import rules
from ops.suite import send_traffic
from stackutil import (
    ServiceProcess,
    SmtpServer,
    Stack,
    eventually,
    free_port,
    local_stack,
    running_suite,
)
from tooling.prometheus import prometheus

from crm_contracts.topics import SERVICES

pytestmark = pytest.mark.e2e


class Prometheus(local_stack.PrometheusNode):
    """The local stack's Prometheus (deploy/prometheus/prometheus.yml and rules.yml, targets
    swapped for the test's services) with a 1 s scrape, and its HTTP API."""

    proc: subprocess.Popen[bytes] | None = None

    def run(self) -> None:
        self.proc = self.start()

    def stop(self) -> None:
        if self.proc is not None:
            local_stack.stop_pid(self.proc.pid, timeout=15)
            self.proc.wait(5)

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
    targets = {name: [service.port] for name, service in suite.items()}
    server = Prometheus(
        tmp_path, targets, port=free_port(), interval="1s", binary=str(prometheus())
    )
    try:
        server.run()
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

    def all_processed() -> bool:
        processed = server.query("sum by (service) (crm_events_processed_total)")
        busy = {s["metric"]["service"] for s in processed if float(s["value"][1]) > 0}
        assert busy <= set(SERVICES), busy
        return busy == set(SERVICES)

    eventually(all_processed, timeout=30, interval=0.5)
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
