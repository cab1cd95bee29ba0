"""Test support: the real local stack (Apache Kafka + SecantusDB) and services as processes."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiosmtpd.controller import Controller

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "local"))

import stack as local_stack  # noqa: E402

__all__ = ["ROOT", "ServiceProcess", "Stack", "local_stack"]
DEV_TOKEN = local_stack.DEV_TOKEN
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    bootstrap: str
    mongodb_url: str
    kafka_pid: int | None = None
    logs: Path = ROOT / ".local" / "test-logs"
    kafka_data: Path | None = None
    """The broker's log directory when the session started the broker (None: an outside one)."""


@contextlib.contextmanager
def running_stack(name: str) -> Iterator[Stack]:
    """The real stack for a test session or module: the servers that `KAFKA_BOOTSTRAP_SERVERS` /
    `MONGODB_URL` name, or else Apache Kafka (KRaft) and SecantusDB started on free ports in
    `.local/<name>-<pid>`, stopped (and the folder removed) at the end."""
    if os.environ.get("CRM_TEST_STACK", "").strip() == "containers":
        with running_container_stack() as servers:
            yield servers
        return
    base = ROOT / ".local" / f"{name}-{os.getpid()}"
    started = []
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
    mongodb_url = os.environ.get("MONGODB_URL", "")
    kafka_pid = None
    kafka_data = None
    try:
        if not bootstrap:
            node = local_stack.KafkaNode(base / "kafka", free_port(), free_port())
            proc = node.start()
            started.append(proc)
            bootstrap, kafka_pid = node.bootstrap, proc.pid
            kafka_data = node.data / "kraft"
        if not mongodb_url:
            mongo = local_stack.MongoNode(base / "secantusdb", free_port())
            started.append(mongo.start())
            mongodb_url = mongo.url
        local_stack.provision_topics(bootstrap)
        yield Stack(
            bootstrap,
            mongodb_url,
            kafka_pid,
            logs=ROOT / ".local" / "test-logs",
            kafka_data=kafka_data,
        )
    finally:
        for proc in reversed(started):
            local_stack.stop_pid(proc.pid, timeout=30)
            proc.wait(10)
        if os.environ.get("CRM_KEEP_TEST_STACK") != "1":
            shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def running_container_stack() -> Iterator[Stack]:
    """CRM_TEST_STACK=containers: Kafka and MongoDB (a one-node replica set) in Docker
    (tests/containerstack.py), topics provisioned, removed at the end."""
    import containerstack

    with containerstack.running_containers(free_port(), free_port()) as servers:
        local_stack.provision_topics(servers.bootstrap)
        yield Stack(
            servers.bootstrap, servers.mongodb_url, None, logs=ROOT / ".local" / "test-logs"
        )


def store_environment(data: Path) -> dict[str, str]:
    """The environment a local store started in `data` runs with (it is stopped again)."""
    proc = local_stack.MongoNode(data, free_port()).start()
    try:
        raw = Path(f"/proc/{proc.pid}/environ").read_bytes()
    finally:
        local_stack.stop_pid(proc.pid, timeout=30)
        proc.wait(10)
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {key.decode(): value.decode() for key, _, value in pairs}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- events ------------------------------------------------------------------------------------
def cloud_event(
    event_type: str,
    subject: str,
    data: Mapping[str, Any],
    *,
    event_id: str | None = None,
    time: datetime | None = None,
) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id or str(uuid.uuid4()),
            "source": "tests",
            "type": event_type,
            "subject": subject,
            "time": (time or datetime.now(UTC)).isoformat(),
            "datacontenttype": "application/json",
            "data": dict(data),
        },
        ensure_ascii=False,
    ).encode()


def order_placed(
    customer: str,
    order_id: str,
    amount: str,
    *,
    time: datetime | None = None,
    event_id: str | None = None,
    currency: str = "CNY",
) -> bytes:
    return cloud_event(
        "order.placed",
        customer,
        {"order_id": order_id, "amount": amount, "currency": currency, "channel": "web"},
        event_id=event_id,
        time=time,
    )


def ticket_opened(
    customer: str, ticket_id: str, event_id: str | None = None, at: datetime | None = None
) -> bytes:
    """Tickets' `ticket.opened` for a delivery complaint (notify acknowledges it by e-mail)."""
    return cloud_event(
        "ticket.opened",
        customer,
        {
            "ticket_id": ticket_id,
            "channel": "phone",
            "category": "delivery",
            "severity": "high",
            "priority": "P2",
            "queue": "delivery",
        },
        event_id=event_id,
        time=at,
    )


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[str | None, bytes]]) -> int:
    """Send (key, value) pairs with an idempotent producer (acks=all); returns how many."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, enable_idempotence=True, acks="all", linger_ms=5
    )
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key.encode() if key is not None else None)
            for key, value in messages
        ]
        await asyncio.gather(*futures)
        return len(futures)
    finally:
        await producer.stop()


def send(stack: Stack, topic: str, *messages: tuple[str | None, bytes]) -> None:
    """Produce (key, value) pairs and wait until the broker has them."""
    asyncio.run(produce(stack.bootstrap, topic, messages))


async def collect(
    bootstrap: str,
    topic: str,
    keep: Callable[[Any], bool],
    *,
    until: Callable[[list[Any]], bool],
    timeout: float = 20.0,  # noqa: ASYNC109 - a deadline for polling, not a cancellation scope
) -> list[Any]:
    """Read `topic` from the beginning, keeping records that pass `keep`, until `until` holds
    or `timeout` passes (then return what was kept: the caller asserts)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        enable_auto_commit=False,
    )
    await consumer.start()
    kept: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not until(kept):
            batches = await consumer.getmany(timeout_ms=300)
            for records in batches.values():
                kept.extend(r for r in records if keep(r))
    finally:
        await consumer.stop()
    return kept


async def topic_partitions(
    bootstrap: str, topics: Iterable[str] | None = None
) -> list[TopicPartition]:
    """The partitions of `topics` (default: every non-internal topic), from the admin API."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = (
            list(topics)
            if topics is not None
            else [t for t in await admin.list_topics() if not t.startswith("__")]
        )
        described = await admin.describe_topics(names)
    finally:
        await admin.close()
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in described
        for partition in topic["partitions"]
    ]


async def commit_at_end(bootstrap: str, group: str) -> dict[TopicPartition, int]:
    """Commit `group`'s offsets at the log end of every (non-internal) topic."""
    partitions = await topic_partitions(bootstrap)
    if not partitions:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        await consumer.commit(ends)
        return ends
    finally:
        await consumer.stop()


# -- services as processes -------------------------------------------------------------------
@dataclass
class ServiceProcess:
    name: str
    stack: Stack
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def isolated(name: str, stack: Stack, **env: str) -> ServiceProcess:
        """A service with its own database and consumer group, so tests do not see each other.

        The new group's offsets are committed at the current end of every topic first: the
        service reads only what is produced from now on, not the history earlier tests left
        on the shared broker (50,000 orders from a replay test would otherwise come first)."""
        tag = uuid.uuid4().hex[:8]
        prefix = f"CRM_{name.upper()}_"
        asyncio.run(commit_at_end(stack.bootstrap, f"{name}-t{tag}"))
        return ServiceProcess(
            name,
            stack,
            env={
                f"{prefix}DATABASE": f"crm_{name}_t{tag}",
                f"{prefix}CONSUMER_GROUP": f"{name}-t{tag}",
                **{f"{prefix}{k.upper()}": v for k, v in env.items()},
            },
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.stack.logs / f"{self.name}-{self.port}.log"

    def full_env(self) -> dict[str, str]:
        """The service's whole environment (for running its CLIs against the same setup)."""
        return {
            **os.environ,
            **local_stack.service_env(
                self.name, self.port, self.stack.bootstrap, self.stack.mongodb_url, self.env
            ),
        }

    def start(self, **env: str) -> ServiceProcess:
        prefix = f"CRM_{self.name.upper()}_"
        self.env.update({f"{prefix}{k.upper()}": v for k, v in env.items()})
        full_env = local_stack.service_env(
            self.name, self.port, self.stack.bootstrap, self.stack.mongodb_url, self.env
        )
        self.proc = local_stack.start_service(self.name, full_env, self.log)
        local_stack.wait_for(
            lambda: local_stack.service_ready(self.port),
            f"{self.name} service",
            90,
            self.proc,
            self.log,
        )
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, nothing is flushed."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            local_stack.stop_pid(self.proc.pid)
            self.proc.wait(30)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=AUTH, params=params, timeout=10)

    def post(
        self,
        path: str,
        json: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        **params: Any,
    ) -> httpx.Response:
        """POST with query `params` (pass them here: a query written into `path` is dropped)."""
        return httpx.post(
            self.url + path,
            headers={**AUTH, **(headers or {})},
            json=json,
            params=params or None,
            timeout=30,
        )

    def put(
        self, path: str, json: Any, *, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return httpx.put(
            self.url + path, headers={**AUTH, **(headers or {})}, json=json, timeout=30
        )

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples on /metrics, of those with every one of `labels` if any."""
        return local_stack.metric(self.port, name, **labels)

    def processed(self, topic: str, event_type: str) -> float:
        """How many events of the type from `topic` the service handled (applied, or found
        already applied): counted once the batch that held them is saved."""
        return self.metric("crm_events_processed_total", topic=topic, type=event_type)


@contextlib.contextmanager
def running_suite(
    stack: Stack, smtp: SmtpServer, **environment: str
) -> Iterator[dict[str, ServiceProcess]]:
    """Start archive, tickets, loyalty, notify and relations (each with its own database and
    consumer group, on a free port; `environment` added to each one's) side by side; stop them
    all at the end."""
    settings: dict[str, dict[str, str]] = {
        "archive": {},
        "tickets": {},
        "loyalty": {},
        "notify": {
            "smtp_host": "127.0.0.1",
            "smtp_port": str(smtp.port),
            "deliver_interval_s": "0.5",
        },
        "relations": {},
    }
    services = {name: ServiceProcess.isolated(name, stack, **env) for name, env in settings.items()}
    for service in services.values():
        service.env.update(environment)
    try:
        with ThreadPoolExecutor(len(services)) as pool:
            for started in [pool.submit(service.start) for service in services.values()]:
                started.result()
        yield services
    finally:
        for service in services.values():
            service.stop()


def eventually(check: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.2) -> Any:
    """Poll until `check` returns a truthy value; return it, or the last failure after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        time.sleep(interval)
    if isinstance(last, AssertionError):
        raise last
    raise AssertionError(f"not true after {timeout} s (last: {last!r})")


# -- a real SMTP server ------------------------------------------------------------------------
class Mailbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.helo_names: list[str] = []
        """The name each accepted message's client gave in EHLO/HELO."""
        self.peers: list[tuple[str, int]] = []
        """The client address and port each accepted message came over (its connection)."""
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
            self.helo_names.append(session.host_name)
            self.peers.append(tuple(session.peer))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]


class SmtpServer:
    def __init__(self, *, idle_timeout_s: float = 300.0) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.controller: Controller | None = None
        self.idle_timeout_s = idle_timeout_s
        """How long the server keeps a connection that says nothing (RFC 5321: 5 minutes)."""

    def start(self) -> None:
        # a fixed greeting name: the server then makes no host-name lookup of its own
        self.controller = Controller(
            self.mailbox,
            hostname="127.0.0.1",
            port=self.port,
            server_hostname="smtp.test",
            timeout=self.idle_timeout_s,
        )
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


# -- a stack the fault suite may stop and restart ------------------------------------------
@dataclass
class FaultStack(Stack):
    kafka: local_stack.KafkaNode = field(default_factory=lambda: local_stack.KafkaNode(ROOT))
    mongo: local_stack.MongoNode = field(default_factory=lambda: local_stack.MongoNode(ROOT))
    processes: dict[str, Popen[bytes]] = field(default_factory=dict)

    def stop(self, server: str) -> None:
        """Stop `kafka` or `database` (SIGTERM, as an orchestrator would)."""
        proc = self.processes.pop(server)
        local_stack.stop_pid(proc.pid, timeout=30)
        proc.wait(10)

    def start(self, server: str) -> None:
        """Start it again on the same port with the same data."""
        node = self.kafka if server == "kafka" else self.mongo
        self.processes[server] = node.start()


@dataclass
class ContainerFaultStack(FaultStack):
    """The fault suite's Kafka and MongoDB as containers (CRM_TEST_STACK=containers): stopped and
    started again through the container API, same container, data and port."""

    servers: Any = None
    """The `containerstack.ServerContainers` behind it."""

    def stop(self, server: str) -> None:
        """Stop `kafka` or `database` (SIGTERM, as an orchestrator would)."""
        self.servers.stop(server)

    def start(self, server: str) -> None:
        """Start it again on the same port with the same data."""
        self.servers.start(server)
