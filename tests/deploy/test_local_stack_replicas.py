"""ADR 0028: the local stack runs notify as two processes in its one group and database, its
bulk topics in a replica at the lowest weight (`REPLICAS` in deploy/local/stack.py). Between
them they read every topic notify consumes, each exactly once; only the first relays; both pass
notify's own settings; the local Prometheus scrapes both under the service's label."""

import json

import pytest
from stackutil import local_stack

from crm_contracts.topics import consumed_by
from crm_notify.settings import NotifySettings


def process_envs(service: str) -> dict[str, dict[str, str]]:
    first = local_stack.service_env(
        service,
        8084,
        "127.0.0.1:9092",
        "mongodb://127.0.0.1:1",
        local_stack.first_process_env(service, local_stack.REPLICAS),
    )
    replicas = {
        name: local_stack.replica_env(replica, "127.0.0.1:9092", "mongodb://127.0.0.1:1")
        for name, replica in local_stack.REPLICAS.items()
        if replica.service == service
    }
    return {service: first, **replicas}


def test_notify_and_its_bulk_replica_read_each_of_notifys_topics_once() -> None:
    envs = process_envs("notify")
    assert set(envs) == {"notify", "notify-bulk"}
    read = [topic for env in envs.values() for topic in json.loads(env["CRM_NOTIFY_TOPICS"])]
    assert sorted(read) == sorted(t.name for t in consumed_by("notify"))
    # what a person waits on stays with the process at the default weight
    assert {"tickets.v1", "members.v1"} <= set(json.loads(envs["notify"]["CRM_NOTIFY_TOPICS"]))


def test_only_the_first_process_relays_and_both_share_the_group_and_database() -> None:
    envs = process_envs("notify")
    assert envs["notify-bulk"]["CRM_NOTIFY_OUTBOX_RELAY_ENABLED"] == "false"
    assert "CRM_NOTIFY_OUTBOX_RELAY_ENABLED" not in envs["notify"]
    for env in envs.values():
        assert "CRM_NOTIFY_CONSUMER_GROUP" not in env
        assert "CRM_NOTIFY_DATABASE" not in env
    ports = {env["CRM_NOTIFY_HTTP_PORT"] for env in envs.values()}
    assert len(ports) == 2


def test_a_service_without_replicas_reads_all_its_topics() -> None:
    assert local_stack.first_process_env("archive", local_stack.REPLICAS) == {}


def test_notifys_settings_accept_what_the_stack_gives_each_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, env in process_envs("notify").items():
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = NotifySettings()
        assert settings.consumed_topics() == [
            t.name for t in consumed_by("notify") if t.name in json.loads(env["CRM_NOTIFY_TOPICS"])
        ], name
        assert settings.outbox_relay_enabled is (name == "notify")


def test_the_local_prometheus_scrapes_both_processes_as_notify() -> None:
    targets = {name: [port] for name, port in local_stack.SERVICES.items()}
    targets["notify"].append(local_stack.REPLICAS["notify-bulk"].port)
    config = local_stack.prometheus_config(targets, 9090, "5s")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "crm"]
    scraped = {
        target: static["labels"]["service"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert scraped["127.0.0.1:8084"] == scraped["127.0.0.1:8086"] == "notify"
    assert len(scraped) == len(local_stack.SERVICES) + 1
