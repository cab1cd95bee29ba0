"""The test stack on containers (`CRM_TEST_STACK=containers`), for machines with a Docker engine.

Apache Kafka (KRaft, one node) and MongoDB (a one-node replica set, so transactions work) run as
containers started with testcontainers, from the images `deploy/compose.yaml` pins; the services
still run as processes and get the containers' URLs. The default (`CRM_TEST_STACK` unset or
`embedded`) is the embedded stack of `stackutil.running_stack`: Kafka from jars and SecantusDB.

Host ports are bound to free ports chosen up front (not left to Docker): a container stopped and
started again by the fault suite keeps its port, so the URLs the services hold stay true.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Self

from pymongo import MongoClient
from testcontainers.community.kafka import KafkaContainer
from testcontainers.community.mongodb import MongoDbContainer
from testcontainers.core.container import DockerContainer

STACK_VARIABLE = "CRM_TEST_STACK"
EMBEDDED = "embedded"
CONTAINERS = "containers"

KAFKA_IMAGE = "apache/kafka:4.1.1"
"""The image (and tag) `deploy/compose.yaml` runs; a unit test keeps them equal."""
MONGO_IMAGE = "mongo:8.0"
"""The image (and tag) `deploy/compose.yaml` runs; a unit test keeps them equal."""
KAFKA_CLUSTER_ID = "duUrIaonRuWs5AfBjSZcwA"
REPLICA_SET = "rs0"
MONGOD_ARGS = ["--replSet", REPLICA_SET, "--bind_ip_all"]
"""mongod's arguments, as in compose: a replica set (transactions need one), reachable from the
host through the bound port."""
INITIATE_SCRIPT = (
    f"try {{ rs.status() }} catch (e) {{ rs.initiate({{_id: '{REPLICA_SET}', "
    "members: [{_id: 0, host: 'localhost:27017'}]}) }"
)
"""Initiates the one-node replica set once (a restarted container keeps its configuration: then
`rs.status()` answers and nothing is initiated again). The member is `localhost:27017`, which
only the container resolves: clients connect with `directConnection=true`."""

KAFKA_SETTINGS = {
    # One node: every internal topic has one replica (as in deploy/compose.yaml).
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_NUM_PARTITIONS": "12",
    "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
    # Topics come from the registry (provision_topics), never from a typo.
    "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
}
"""Broker settings shared with deploy/compose.yaml's `kafka` service (a unit test compares)."""


class StackSelectionError(Exception):
    """`CRM_TEST_STACK` names no stack, or names the containers and no Docker engine answers."""


def selected_stack(environ: Mapping[str, str]) -> str:
    """`embedded` (the default) or `containers`; any other value is a usage error."""
    value = environ.get(STACK_VARIABLE, "").strip() or EMBEDDED
    if value not in (EMBEDDED, CONTAINERS):
        raise StackSelectionError(
            f"{STACK_VARIABLE}={value!r} names no test stack: use '{EMBEDDED}' (the default: "
            f"Kafka from jars and SecantusDB) or '{CONTAINERS}' (Kafka and MongoDB in Docker)"
        )
    return value


def no_engine_message(problem: str) -> str:
    return (
        f"{STACK_VARIABLE}={CONTAINERS} needs a Docker engine and none answers ({problem}). "
        f"Start Docker (or point DOCKER_HOST at one), or run the default embedded stack "
        f"(Kafka from jars and SecantusDB): unset {STACK_VARIABLE} and run `make test` or "
        f"`.venv/bin/pytest`."
    )


def require_engine() -> None:
    """Raise StackSelectionError at once when no Docker engine answers a ping."""
    import docker.errors  # type: ignore[import-untyped]  # testcontainers' client library
    from testcontainers.core.docker_client import DockerClient

    try:
        DockerClient(timeout=5).client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise StackSelectionError(no_engine_message(str(exc))) from exc


def check_selection(environ: Mapping[str, str]) -> str:
    """The selected stack; for `containers`, only when a Docker engine answers."""
    stack = selected_stack(environ)
    if stack == CONTAINERS:
        require_engine()
    return stack


# -- the URLs handed to the services ---------------------------------------------------------
def kafka_bootstrap(host: str, port: int) -> str:
    return f"{host}:{port}"


def mongodb_url(host: str, port: int) -> str:
    """Straight to the one member: its replica-set name (localhost:27017) means the container."""
    return f"mongodb://{host}:{port}/?directConnection=true"


# -- the containers --------------------------------------------------------------------------
class ApacheKafkaContainer(KafkaContainer):
    """The community Kafka module in KRaft mode, on the Apache Kafka image compose uses.

    The module's KRaft check and start script are written for Confluent Platform images
    (`cp-kafka` 7.0.0+, /etc/confluent/docker); Apache Kafka 4 has only KRaft and starts with
    /etc/kafka/docker/run, configured by the same `KAFKA_*` variables."""

    def __init__(self, host_port: int, **kwargs: Any) -> None:
        super().__init__(KAFKA_IMAGE, **kwargs)
        self.host_port = host_port
        self.with_bind_ports(self.port, host_port)
        self.with_cluster_id(KAFKA_CLUSTER_ID)
        self.with_kraft()

    def _verify_min_kraft_version(self) -> None:
        major = self.image.rsplit(":", 1)[-1].split(".")[0]
        if not major.isdigit() or int(major) < 4:
            raise ValueError(f"{self.image}: Apache Kafka 4 or later (KRaft only) is expected")

    def configure(self) -> None:
        """KRaft only (the module's other branch is ZooKeeper, which Apache Kafka 4 has not)."""
        self._configure_kraft()

    def _configure_kraft(self) -> None:
        super()._configure_kraft()
        self.env.pop("KAFKA_BROKER_ID", None)  # ZooKeeper's name for it; KRaft's is KAFKA_NODE_ID
        self.with_envs(**KAFKA_SETTINGS)
        self.with_env("KAFKA_ADVERTISED_LISTENERS", self.advertised_listeners())
        self.boot_command = ""  # the module's is Confluent's (sed on /etc/confluent/docker)

    def advertised_listeners(self) -> str:
        """Clients reach the broker on the bound host port; the broker itself on localhost."""
        return f"{self.listener_name}://127.0.0.1:{self.host_port},BROKER://localhost:9092"

    def tc_start(self) -> None:
        self.create_file(b"exec /etc/kafka/docker/run\n", KafkaContainer.TC_START_SCRIPT)

    def get_bootstrap_server(self) -> str:
        return kafka_bootstrap("127.0.0.1", self.host_port)


class ReplicaSetMongoContainer(MongoDbContainer):
    """MongoDB as a one-node replica set (no root user: with a replica set, authentication needs a
    key file; compose's mongo has neither)."""

    def __init__(self, host_port: int, **kwargs: Any) -> None:
        super().__init__(MONGO_IMAGE, port=27017, **kwargs)
        self.host_port = host_port
        self.with_bind_ports(self.port, host_port)
        self.with_command(MONGOD_ARGS)

    def _configure(self) -> None:
        """No MONGO_INITDB_ROOT_* variables: mongod runs without authentication."""

    def get_connection_url(self) -> str:
        return mongodb_url("127.0.0.1", self.host_port)

    def start(self) -> Self:
        super().start()
        self.initiate()
        return self

    def initiate(self) -> None:
        """Initiate the replica set (once) and wait until this member is the primary. Tried
        again until mongosh gets through: a restarted container may not listen yet."""
        wait_until(self.initiated, "MongoDB replica-set initiation", 60)
        wait_until(self.is_primary, "MongoDB replica-set primary", 60)

    def initiated(self) -> bool:
        return self.exec(["mongosh", "--quiet", "--eval", INITIATE_SCRIPT]).exit_code == 0

    def is_primary(self) -> bool:
        client: MongoClient[dict[str, Any]] = MongoClient(
            self.get_connection_url(), serverSelectionTimeoutMS=2000
        )
        try:
            return bool(client.admin.command("hello").get("isWritablePrimary"))
        except Exception:
            return False
        finally:
            client.close()


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    import stack as local_stack  # deploy/local/stack.py (on sys.path through stackutil)

    local_stack.wait_for(check, what, timeout)


class ServerContainers:
    """Kafka and MongoDB as containers on the given host ports; `stop`/`start` through the
    container API (as `docker stop` / `docker start`: same container, same data, same port)."""

    def __init__(self, kafka_port: int, mongo_port: int) -> None:
        self.kafka = ApacheKafkaContainer(kafka_port)
        self.mongo = ReplicaSetMongoContainer(mongo_port)

    @property
    def bootstrap(self) -> str:
        return self.kafka.get_bootstrap_server()

    @property
    def mongodb_url(self) -> str:
        return self.mongo.get_connection_url()

    def container(self, server: str) -> DockerContainer:
        return self.kafka if server == "kafka" else self.mongo

    def stop(self, server: str) -> None:
        """Stop `kafka` or `database`: SIGTERM, SIGKILL after 30 s (as an orchestrator would)."""
        self.container(server).get_wrapped_container().stop(timeout=30)

    def start(self, server: str) -> None:
        """Start the same container again and wait until it serves."""
        import stack as local_stack

        self.container(server).get_wrapped_container().start()
        if server == "kafka":
            wait_until(lambda: local_stack.kafka_ready(self.bootstrap), "Kafka container", 120)
        else:
            self.mongo.initiate()

    def remove(self) -> None:
        for container in (self.mongo, self.kafka):
            with contextlib.suppress(Exception):
                container.stop()  # testcontainers' stop removes the container and its volumes


@contextlib.contextmanager
def running_containers(kafka_port: int, mongo_port: int) -> Iterator[ServerContainers]:
    """Kafka and MongoDB started as containers; removed at the end."""
    require_engine()
    servers = ServerContainers(kafka_port, mongo_port)
    try:
        servers.kafka.start(timeout=120)
        servers.mongo.start()
        yield servers
    finally:
        servers.remove()
