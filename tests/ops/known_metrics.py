"""The metric names the suite exposes, and the PromQL helpers the ops tests share.

Alert rules (deploy/prometheus/rules.yml) and Grafana dashboards (deploy/grafana/dashboards) may
reference only these names, so a typo in either fails a test instead of a silent empty panel or
an alert that never fires. Names are as Prometheus stores them: counters with `_total`,
histograms as `_bucket`, `_sum` and `_count`.
"""

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import yaml
from tooling import ROOT

RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def histogram(name: str) -> set[str]:
    return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}


RUNTIME: frozenset[str] = frozenset(
    {
        # crm_runtime.metrics, every service
        "crm_events_processed_total",
        "crm_events_ignored_total",
        "crm_events_duplicate_total",
        "crm_dlq_messages_total",
        "crm_transient_retries_total",
        "crm_master_key_missing_total",
        *histogram("crm_batch_duration_seconds"),
        "crm_outbox_published_total",
        "crm_outbox_backlog",
        "crm_outbox_oldest_age_seconds",
        # crm_runtime.sweeps
        "crm_sweep_runs_total",
        "crm_sweep_changed_records_total",
        "crm_sweep_last_success_timestamp_seconds",
        # the consumer's group lag and assignment
        "crm_consumer_lag",
        "crm_consumer_assigned_partitions",
        "crm_gauge_refresh_failures_total",
    }
)

BUSINESS: dict[str, frozenset[str]] = {
    "archive": frozenset({"crm_customers", "crm_churn_risks_raised_total"}),
    "tickets": frozenset({"crm_tickets_open", "crm_sla_warnings_total", "crm_sla_breaches_total"}),
    "loyalty": frozenset(
        {
            "crm_points_earned_total",
            "crm_points_redeemed_total",
            "crm_points_reversed_total",
            "crm_points_expired_total",
            "crm_points_outstanding",
            "crm_loyalty_accounts",
        }
    ),
    "notify": frozenset(
        {
            "crm_notifications_total",
            "crm_notifications_waiting",
            "crm_staff_messages_unaddressed_total",
        }
    ),
    "relations": frozenset(
        {
            "crm_tasks_created_total",
            "crm_tasks_completed_total",
            "crm_tasks_overdue_total",
            "crm_tasks_open",
            "crm_agreement_periods_closed_total",
            "crm_agreement_fulfilment_at_risk_total",
        }
    ),
}
"""Each service's own metrics (crm_<service>.metrics), on top of RUNTIME."""

FASTSTREAM: frozenset[str] = frozenset(
    {
        "faststream_received_messages_total",
        *histogram("faststream_received_messages_size_bytes"),
        "faststream_received_messages_in_process",
        "faststream_received_processed_messages_total",
        *histogram("faststream_received_processed_messages_duration_seconds"),
        "faststream_received_processed_messages_exceptions_total",
        "faststream_published_messages_total",
        *histogram("faststream_published_messages_duration_seconds"),
        "faststream_published_messages_exceptions_total",
    }
)

PROCESS: frozenset[str] = frozenset(
    {
        # prometheus_client's process, platform and GC collectors
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_open_fds",
        "process_max_fds",
        "process_start_time_seconds",
        "python_info",
        "python_gc_objects_collected_total",
        "python_gc_objects_uncollectable_total",
        "python_gc_collections_total",
    }
)

PROMETHEUS: frozenset[str] = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})
"""Series Prometheus itself makes (scrape health, alert state)."""

RECORDED: frozenset[str] = frozenset({"crm:consumer_lag:sum", "crm:batch_duration_seconds:p95_5m"})
"""The recording rules of rules.yml (the rules test checks the file records exactly these)."""

EXPOSED: frozenset[str] = RUNTIME.union(*BUSINESS.values(), FASTSTREAM, PROCESS)
KNOWN: frozenset[str] = EXPOSED | PROMETHEUS | RECORDED

# -- PromQL ------------------------------------------------------------------------------------
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, aggregations, keywords, label
    names, durations, strings and Grafana variables left out)."""
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub("", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if match.group(2) is None and match.group(1).lower() not in _KEYWORDS
    }


def rules() -> list[dict[str, object]]:
    """Every rule of rules.yml (recording and alerting)."""
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def check_promql(
    promtool: Path, exprs: Iterable[str], folder: Path
) -> subprocess.CompletedProcess[str]:
    """Parse `exprs` with Prometheus's own parser: write them as recording rules into a rules
    file and run `promtool check rules` (it parses every expression and names the bad ones)."""
    path = folder / "exprs.rules.yml"
    recorded = [{"record": f"check:expr_{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": recorded}]}))
    return subprocess.run(
        [str(promtool), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
