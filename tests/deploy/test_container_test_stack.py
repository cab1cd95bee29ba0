"""The container test stack (CRM_TEST_STACK=containers, tests/containerstack.py), checked without a
Docker engine: the containers are only defined (an explicit API version keeps docker-py from
asking an engine for one), never started.

They protect: the images and tags equal deploy/compose.yaml's; Kafka runs KRaft with compose's
settings and advertises the bound host port; MongoDB runs as replica set rs0, initiated once;
the URLs handed to the services; the immediate stop, with the way back to the default, where no
engine answers.
"""

import os
import subprocess
import sys
from typing import Any

import pytest
import yaml
from containerstack import (
    CONTAINERS,
    INITIATE_SCRIPT,
    KAFKA_IMAGE,
    KAFKA_SETTINGS,
    MONGO_IMAGE,
    MONGOD_ARGS,
    ApacheKafkaContainer,
    ReplicaSetMongoContainer,
    StackSelectionError,
    kafka_bootstrap,
    mongodb_url,
    selected_stack,
)
from pymongo.uri_parser import parse_uri
from tooling import ROOT

COMPOSE = ROOT / "deploy" / "compose.yaml"
NO_ENGINE = "unix:///nonexistent/crm-no-docker.sock"
OFFLINE = {"docker_client_kw": {"version": "1.44"}}
"""An explicit API version: docker-py then asks no engine which one it speaks."""


@pytest.fixture(scope="module")
def compose_services() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    services: dict[str, Any] = document["services"]
    return services


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DOCKER_HOST that cannot answer: a definition that called the engine would fail."""
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


@pytest.mark.unit
def test_images_and_tags_are_the_ones_compose_runs(compose_services: dict[str, Any]) -> None:
    assert compose_services["kafka"]["image"] == KAFKA_IMAGE
    assert compose_services["mongo"]["image"] == MONGO_IMAGE


@pytest.mark.unit
@pytest.mark.usefixtures("no_engine")
def test_kafka_container_runs_kraft_with_compose_settings(
    compose_services: dict[str, Any],
) -> None:
    kafka = ApacheKafkaContainer(41234, **OFFLINE)
    kafka.configure()
    env = {key: str(value) for key, value in kafka.env.items()}
    compose_env = {
        key: str(value) for key, value in compose_services["kafka"]["environment"].items()
    }

    assert kafka.image == KAFKA_IMAGE
    assert kafka.kraft_enabled
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    assert env["CLUSTER_ID"] == compose_env["CLUSTER_ID"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9094"
    assert "CONTROLLER://0.0.0.0:9094" in env["KAFKA_LISTENERS"]
    assert "CONTROLLER:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert "KAFKA_BROKER_ID" not in env
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert "confluent" not in kafka.boot_command
    for key, value in KAFKA_SETTINGS.items():
        assert env[key] == compose_env[key] == value, key
    # Clients are told the host port bound up front, which a restart keeps.
    assert env["KAFKA_ADVERTISED_LISTENERS"].startswith("PLAINTEXT://127.0.0.1:41234,")
    assert kafka.ports == {"9093": 41234}
    assert kafka.get_bootstrap_server() == "127.0.0.1:41234"


@pytest.mark.unit
@pytest.mark.usefixtures("no_engine")
def test_kafka_container_refuses_an_image_without_kraft_only_releases() -> None:
    kafka = ApacheKafkaContainer(41234, **OFFLINE)
    kafka.image = "apache/kafka:3.9.0"
    with pytest.raises(ValueError, match="Apache Kafka 4"):
        kafka.with_kraft()


@pytest.mark.unit
@pytest.mark.usefixtures("no_engine")
def test_mongo_container_is_a_one_node_replica_set_like_compose(
    compose_services: dict[str, Any],
) -> None:
    mongo = ReplicaSetMongoContainer(42345, **OFFLINE)
    mongo._configure()

    assert mongo.image == MONGO_IMAGE
    assert compose_services["mongo"]["command"] == MONGOD_ARGS == mongo._command
    assert not any(key.startswith("MONGO_INITDB_ROOT") for key in mongo.env)  # no key file, no auth
    assert mongo.ports == {"27017": 42345}
    # Initiated once (a restarted container keeps its configuration), member rs0 of itself.
    assert INITIATE_SCRIPT.startswith("try { rs.status() } catch (e) { rs.initiate(")
    assert "_id: 'rs0'" in INITIATE_SCRIPT
    assert "host: 'localhost:27017'" in INITIATE_SCRIPT


@pytest.mark.unit
@pytest.mark.usefixtures("no_engine")
def test_urls_handed_to_the_services_reach_the_bound_ports_directly() -> None:
    mongo = ReplicaSetMongoContainer(42345, **OFFLINE)
    parsed = parse_uri(mongo.get_connection_url())

    assert parsed["nodelist"] == [("127.0.0.1", 42345)]
    assert parsed["options"]["directConnection"] is True  # the member's name is the container's
    assert mongodb_url("db.example", 1) == "mongodb://db.example:1/?directConnection=true"
    assert kafka_bootstrap("127.0.0.1", 41234) == "127.0.0.1:41234"


@pytest.mark.unit
def test_selection_defaults_to_embedded_and_rejects_unknown_names() -> None:
    assert selected_stack({}) == "embedded"
    assert selected_stack({"CRM_TEST_STACK": " "}) == "embedded"
    assert selected_stack({"CRM_TEST_STACK": "containers"}) == CONTAINERS
    with pytest.raises(StackSelectionError, match=r"names no test stack.*'embedded'"):
        selected_stack({"CRM_TEST_STACK": "docker"})


def run_pytest(**environment: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """pytest on an integration module in a child process with `environment` added; the timeout
    only guards against a hang (the stop must come before any server starts)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_stack.py",
        ],
        cwd=ROOT,
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done, done.stdout + done.stderr


def test_containers_without_an_engine_stop_the_session_before_collecting() -> None:
    """CRM_TEST_STACK=containers where no engine answers: pytest exits with a usage error that says
    so and how to run the default, before collecting (so no Kafka or database is started)."""
    done, output = run_pytest(CRM_TEST_STACK="containers", DOCKER_HOST=NO_ENGINE)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "CRM_TEST_STACK=containers needs a Docker engine and none answers" in output
    assert "unset CRM_TEST_STACK and run `make test`" in output
    assert "collected" not in output


def test_an_unknown_stack_name_stops_the_session_with_the_choices() -> None:
    done, output = run_pytest(CRM_TEST_STACK="podman")
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert "CRM_TEST_STACK='podman' names no test stack" in output
