"""Shared by the benchmark scripts: a private stack, metrics, memory, a printed table."""

import contextlib
import os
import platform
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "deploy" / "local"), str(ROOT / "tests")]

import stack  # noqa: E402
from stackutil import free_port  # noqa: E402


@dataclass
class BenchStack:
    bootstrap: str
    mongodb_url: str
    workdir: Path
    pids: list[int]

    def start_service(self, name: str, env: dict[str, str]) -> tuple[int, Any]:
        """Start a service on a free port with `env` (CRM_<NAME>_*); wait until ready."""
        port = free_port()
        full = stack.service_env(name, port, self.bootstrap, self.mongodb_url, env)
        proc = stack.start_service(name, full, self.workdir / f"{name}.log")
        self.pids.append(proc.pid)
        stack.wait_for(lambda: stack.service_ready(port), name, 120, proc)
        return port, proc


@contextlib.contextmanager
def private_stack() -> Iterator[BenchStack]:
    """Apache Kafka + SecantusDB on free ports (or KAFKA_BOOTSTRAP_SERVERS / MONGODB_URL)."""
    workdir = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    pids: list[int] = []
    try:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "")
        mongodb_url = os.environ.get("MONGODB_URL", "")
        if not bootstrap:
            node = stack.KafkaNode(workdir / "kafka", free_port(), free_port())
            pids.append(node.start().pid)
            bootstrap = node.bootstrap
        if not mongodb_url:
            mongo = stack.MongoNode(workdir / "db", free_port())
            pids.append(mongo.start().pid)
            mongodb_url = mongo.url
        stack.provision_topics(bootstrap)
        yield BenchStack(bootstrap, mongodb_url, workdir, pids)
    finally:
        for pid in reversed(pids):
            stack.stop_pid(pid)
        shutil.rmtree(workdir, ignore_errors=True)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    store = "MONGODB_URL" if "MONGODB_URL" in os.environ else "SecantusDB (embedded)"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"\n{title} ({machine}; store: {store})")
    width = max(11, *(len(h) for h in header))
    print("| " + " | ".join(f"{h:>{width}}" for h in header) + " |")
    print("|" + "|".join("-" * (width + 2) for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v!s:>{width}}" for v in row) + " |")
