"""ADR 0028: the local stack runs notify as two processes in its one group and database, its
bulk topics in a replica at the lowest weight (`REPLICAS` in deploy/local/stack.py). Between
them they read every topic notify consumes, each exactly once; only the first relays and sweeps,
while the replica still sends what it decides; both pass notify's own settings; the local
Prometheus scrapes both under the service's label."""

import json

import pytest
from stackutil import local_stack

from crm_contracts.topics import consumed_by
from crm_notify.settings import NotifySettings

KAFKA, MONGODB = "127.0.0.1:9092", "mongodb://127.0.0.1:1"


def process_envs(service: str, extra: dict[str, str] | None = None) -> dict[str, dict[str, str]]:
    """Each of `service`'s processes' environment as `LocalStack.up` gives it, by name."""
    own = {**(extra or {}), **local_stack.first_process_env(service, local_stack.REPLICAS)}
    first = local_stack.service_env(service, 8084, KAFKA, MONGODB, own)
    replicas = {
        name: local_stack.replica_env(replica, KAFKA, MONGODB, extra)
        for name, replica in local_stack.replicas_of(service, local_stack.REPLICAS).items()
    }
    return {service: first, **replicas}


def test_notify_and_its_bulk_replica_read_each_of_notifys_topics_once() -> None:
    envs = process_envs("notify")
    assert set(envs) == {"notify", "notify-bulk"}
    read = [topic for env in envs.values() for topic in json.loads(env["CRM_NOTIFY_TOPICS"])]
    assert sorted(read) == sorted(t.name for t in consumed_by("notify"))
    # what a person waits on stays with the process at the default weight
    assert {"tickets.v1", "members.v1"} <= set(json.loads(envs["notify"]["CRM_NOTIFY_TOPICS"]))


def test_only_the_first_process_relays_and_sweeps_and_both_share_the_group_and_database() -> None:
    envs = process_envs("notify", {"CRM_NOTIFY_SWEEPS_ENABLED": "true"})  # as a benchmark asks
    assert envs["notify-bulk"]["CRM_NOTIFY_OUTBOX_RELAY_ENABLED"] == "false"
    assert envs["notify-bulk"]["CRM_NOTIFY_SWEEPS_ENABLED"] == "false"
    assert "CRM_NOTIFY_OUTBOX_RELAY_ENABLED" not in envs["notify"]
    assert envs["notify"]["CRM_NOTIFY_SWEEPS_ENABLED"] == "true"
    for env in envs.values():
        assert "CRM_NOTIFY_CONSUMER_GROUP" not in env
        assert "CRM_NOTIFY_DATABASE" not in env
    assert len({env["CRM_NOTIFY_HTTP_PORT"] for env in envs.values()}) == 2


def test_a_service_without_replicas_reads_all_its_topics() -> None:
    assert local_stack.first_process_env("archive", local_stack.REPLICAS) == {}


def test_replicas_that_take_every_topic_leave_the_first_process_none_and_are_refused() -> None:
    everything = tuple(t.name for t in consumed_by("notify"))
    greedy = {"notify-all": local_stack.Replica("notify", 8099, everything)}
    with pytest.raises(ValueError, match="none is left"):
        local_stack.first_process_env("notify", greedy)


def test_notifys_settings_accept_what_the_stack_gives_each_process() -> None:
    for name, env in process_envs("notify").items():
        with pytest.MonkeyPatch.context() as patch:  # each process alone, as it starts
            for key, value in env.items():
                patch.setenv(key, value)
            settings = NotifySettings()
        topics = json.loads(env["CRM_NOTIFY_TOPICS"])
        assert settings.consumed_topics() == [
            t.name for t in consumed_by("notify") if t.name in topics
        ], name
        assert settings.outbox_relay_enabled is (name == "notify")
        assert settings.sweeps_enabled is (name == "notify")
        assert settings.sends_now(), name  # each sends what it decides right after its commit


def test_the_local_prometheus_scrapes_both_processes_as_notify() -> None:
    targets = local_stack.LocalStack().scrape_targets()
    config = local_stack.prometheus_config(targets, 9090, "5s")
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "crm"]
    scraped = {
        target: static["labels"]["service"]
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert scraped["127.0.0.1:8084"] == scraped["127.0.0.1:8086"] == "notify"
    assert len(scraped) == len(local_stack.SERVICES) + 1
