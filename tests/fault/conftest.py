"""The fault suite's own Kafka and SecantusDB: the tests stop and restart them, so they must not
be the servers the other suites share. Skipped against external servers."""

import os
import shutil
from collections.abc import Iterator

import pytest
from stackutil import ROOT, ContainerFaultStack, FaultStack, free_port, local_stack


@pytest.fixture(scope="session")
def faulty() -> Iterator[FaultStack]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("MONGODB_URL"):
        pytest.skip("the fault suite stops and restarts its own Kafka and database")
    if os.environ.get("CRM_TEST_STACK", "").strip() == "containers":
        yield from faulty_containers()
        return
    base = ROOT / ".local" / f"fault-stack-{os.getpid()}"
    kafka = local_stack.KafkaNode(base / "kafka", free_port(), free_port())
    mongo = local_stack.MongoNode(base / "secantusdb", free_port())
    stack = FaultStack(kafka.bootstrap, mongo.url, kafka=kafka, mongo=mongo)
    try:
        stack.start("kafka")
        stack.start("database")
        local_stack.provision_topics(kafka.bootstrap)
        yield stack
    finally:
        for server in list(stack.processes):
            stack.stop(server)
        shutil.rmtree(base, ignore_errors=True)


def faulty_containers() -> Iterator[ContainerFaultStack]:
    """CRM_TEST_STACK=containers: the fault suite's own Kafka and MongoDB containers."""
    import containerstack

    with containerstack.running_containers(free_port(), free_port()) as servers:
        local_stack.provision_topics(servers.bootstrap)
        yield ContainerFaultStack(servers.bootstrap, servers.mongodb_url, servers=servers)
