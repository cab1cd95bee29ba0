"""deploy/prometheus: the rules parse, the compose configuration is valid and scrapes the four
services, every alert passes its promtool unit tests (firing and not firing), carries the
labels and annotations on-call needs, and references only metrics the suite exposes."""

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops.known_metrics import KNOWN, RECORDED, RULES, metric_names, rules
from tooling import PORTS, ROOT
from tooling.prometheus import promtool

PROMETHEUS = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULES_TEST = PROMETHEUS / "tests" / "rules_test.yml"
COMPOSE = ROOT / "deploy" / "compose.yaml"
ALERTS = {
    "CrmServiceDown",
    "CrmConsumerLagGrowing",
    "CrmDeadLettersGrowing",
    "CrmOutboxStale",
    "CrmSlaBreachSpike",
    "CrmNotificationFailureRatio",
    "CrmSweepStale",
    "CrmConsumerUnassigned",
    "CrmGaugesFailing",
    "CrmMasterKeyMissing",
}


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def alerts() -> dict[str, dict[str, Any]]:
    return {str(rule["alert"]): rule for rule in rules() if "alert" in rule}


def test_promtool_check_rules() -> None:
    done = run_promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_check_config_as_compose_mounts_it(tmp_path: Path) -> None:
    """compose mounts prometheus.yml and rules.yml side by side in /etc/prometheus; the config
    names its rule file relative to itself, so a copy of the two files checks as deployed."""
    for source in (CONFIG, RULES):
        shutil.copy(source, tmp_path / source.name)
    done = run_promtool("check", "config", str(tmp_path / CONFIG.name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_the_config_scrapes_the_four_services_with_their_service_label() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["rules.yml"]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "crm"]
    # the services label their own series with `service`: keep it (not exported_service)
    assert job["honor_labels"] is True
    targets = {
        target: static["labels"]["service"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert targets == {f"{name}:{port}": name for name, port in PORTS.items()}


def test_compose_mounts_the_rules_next_to_the_config() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in volumes}
    config_at = mounts["./prometheus/prometheus.yml"]
    assert mounts["./prometheus/rules.yml"] == str(Path(config_at).parent / "rules.yml")
    assert f"--config.file={config_at}" in compose["services"]["prometheus"]["command"]
    for name, port in PORTS.items():
        assert name in compose["services"], name
        environment = compose["services"][name].get("environment", {})
        port_setting = environment.get(f"CRM_{name.upper()}_HTTP_PORT", str(port))
        assert str(port_setting) == str(port), (name, port_setting)


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    done = run_promtool("test", "rules", str(RULES_TEST.relative_to(PROMETHEUS)), cwd=PROMETHEUS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    cases = yaml.safe_load(RULES_TEST.read_text())
    assert cases["rule_files"] == ["../rules.yml"]
    fired: set[str] = set()
    silent: set[str] = set()
    for test in cases["tests"]:
        for check in test.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    assert set(alerts()) == ALERTS
    assert fired == ALERTS, f"no firing case for {sorted(ALERTS - fired)}"
    assert silent == ALERTS, f"no silent case for {sorted(ALERTS - silent)}"
    recorded = {
        name
        for test in cases["tests"]
        for check in test.get("promql_expr_test", [])
        for name in metric_names(check["expr"])
        if name in RECORDED
    }
    assert recorded == RECORDED, f"recording rules without a test: {RECORDED - recorded}"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alerts_carry_severity_summary_description_and_a_one_line_runbook(name: str) -> None:
    rule = alerts()[name]
    assert rule["labels"]["severity"] in {"critical", "warning"}
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook"}
    for key in ("summary", "description", "runbook"):
        assert annotations[key].strip(), key
        assert "\n" not in annotations[key].strip(), f"{name}'s {key} is not one line"


def test_recording_rules_are_the_known_ones_and_named_level_metric_operation() -> None:
    records = {str(rule["record"]) for rule in rules() if "record" in rule}
    assert records == RECORDED
    assert all(len(record.split(":")) == 3 for record in records)


def test_rules_reference_only_known_metrics() -> None:
    referenced = {str(rule["expr"]): metric_names(str(rule["expr"])) for rule in rules()}
    assert all(referenced.values()), "an expression whose metrics the parser did not find"
    unknown = {expr: sorted(names - KNOWN) for expr, names in referenced.items() if names - KNOWN}
    assert not unknown, unknown


def test_the_metric_name_parser_finds_a_typo() -> None:
    """What the reference checks rest on: names are found through functions, aggregations,
    matchers, ranges, grouping, offsets, numbers and Grafana variables."""
    expr = (
        "histogram_quantile(0.95, sum by (service, le) "
        '(rate(crm_batch_duration_second_bucket{service=~"$service", le!="1e3"}[$__rate_interval]'
        ' offset 5m))) > on (service) group_left (instance) max without (instance) (up{job="crm"})'
        " or time() - crm:consumer_lag:sum unless vector(1) * 2e3"
    )
    assert metric_names(expr) == {
        "crm_batch_duration_second_bucket",
        "up",
        "crm:consumer_lag:sum",
    }
    assert metric_names(expr) - KNOWN == {"crm_batch_duration_second_bucket"}
