"""Every service's /metrics, after a little traffic, passes `promtool check metrics` and declares
the suite's metric names: the runtime's and the service's own business metrics.

`promtool check metrics` lints names, types, help and units. Our crm_* metrics must be clean.
Metrics we do not define are tolerated where promtool complains about their names and we cannot
rename them (see TOLERATED); there are none today, the set is there to say so explicitly.
"""

import re
import subprocess
from collections.abc import Iterator
from functools import partial

import httpx
import pytest
from ops.known_metrics import BUSINESS, EXPOSED, FASTSTREAM, PROCESS, RUNTIME
from ops.suite import send_traffic
from stackutil import ServiceProcess, SmtpServer, Stack, eventually, running_suite
from tooling.prometheus import promtool

from crm_contracts.topics import SERVICES

TOLERATED: frozenset[str] = frozenset()
"""Foreign metric families whose lint problems we accept (FastStream's, prometheus_client's)."""

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(\{[^}]*\})? (\S+)", re.MULTILINE)


@pytest.fixture(scope="module")
def suite(stack: Stack, smtp: SmtpServer) -> Iterator[dict[str, ServiceProcess]]:
    with running_suite(stack, smtp) as services:
        send_traffic(stack)
        eventually(lambda: services["loyalty"].metric("crm_points_earned_total") > 0, timeout=30)
        eventually(lambda: services["tickets"].metric("crm_tickets_open") >= 1, timeout=30)
        for service in services.values():
            eventually(partial(service.metric, "crm_events_processed_total"), timeout=30)
        yield services


def exposition(service: ServiceProcess) -> str:
    response = httpx.get(f"{service.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def declared(text: str) -> set[str]:
    """The series names the exposition declares (`# TYPE` lines), samples or not: a labelled
    counter nothing incremented yet has no sample but is declared. prometheus_client also
    declares a `<name>_created` gauge (the creation time) per counter and histogram: left out."""
    types = dict(_TYPE.findall(text))
    names: set[str] = set()
    for name, kind in types.items():
        base = name.removesuffix("_created")
        if name != base and {types.get(base), types.get(f"{base}_total")} & {
            "counter",
            "histogram",
            "summary",
        }:
            continue
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif kind == "summary":
            names |= {name, f"{name}_sum", f"{name}_count"}
        else:
            names.add(name)
    return names


def samples(text: str, name: str) -> list[float]:
    return [float(value) for found, _, value in _SAMPLE.findall(text) if found == name]


def family_of(problem: str) -> str:
    """promtool prints `<metric name> <problem>` per line."""
    return problem.split(" ", 1)[0]


@pytest.mark.parametrize("name", SERVICES)
def test_promtool_check_metrics_finds_no_problem_in_our_metrics(
    suite: dict[str, ServiceProcess], name: str
) -> None:
    text = exposition(suite[name])
    done = subprocess.run(
        [str(promtool()), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    ours = [p for p in problems if family_of(p) not in TOLERATED]
    assert not ours, f"promtool check metrics on {name} (exit {done.returncode}):\n" + "\n".join(
        problems
    )
    assert done.returncode == 0 or problems, done


@pytest.mark.parametrize("name", SERVICES)
def test_the_suites_metric_names_are_declared(suite: dict[str, ServiceProcess], name: str) -> None:
    names = declared(exposition(suite[name]))
    expected = RUNTIME | BUSINESS[name] | FASTSTREAM | PROCESS
    missing = sorted(expected - names)
    assert not missing, f"{name} does not declare {missing}"
    # and nothing of ours the rules, dashboards and this list do not know of
    unknown = sorted(n for n in names if n.startswith("crm_") and n not in EXPOSED)
    assert not unknown, f"{name} declares {unknown}: add them to tests/ops/known_metrics.py"
    others = sorted(set().union(*(BUSINESS[s] for s in SERVICES if s != name)) & names)
    assert not others, f"{name} declares other services' metrics {others}"


def reaches(service: ServiceProcess, name: str, least: float) -> float:
    """The sum of `name`'s samples once it reaches `least` (database gauges are refreshed at
    most every 10 s, on a scrape)."""
    return float(
        eventually(
            lambda: (total := sum(samples(exposition(service), name))) >= least and total,
            timeout=30,
        )
    )


def test_the_traffic_moved_the_business_metrics(suite: dict[str, ServiceProcess]) -> None:
    assert reaches(suite["loyalty"], "crm_points_earned_total", 199) >= 199
    assert reaches(suite["loyalty"], "crm_points_outstanding", 199) >= 199
    assert reaches(suite["tickets"], "crm_tickets_open", 1) == 1
    assert reaches(suite["archive"], "crm_customers", 1) == 1
    for name in SERVICES:
        assert reaches(suite[name], "crm_consumer_assigned_partitions", 1) >= 1, name
        assert samples(exposition(suite[name]), "crm_consumer_lag"), f"{name} reports no lag"
