"""The embedded local stack: Apache Kafka (KRaft, from Maven Central jars), SecantusDB, services.

    python deploy/local/stack.py up       # start what is missing, wait until ready, print URLs
    python deploy/local/stack.py down     # stop what `up` started (data stays in .local/)
    python deploy/local/stack.py status
    python deploy/local/stack.py store    # build (first run) and name the MongoDB-wire server

Neither server is started when `KAFKA_BOOTSTRAP_SERVERS` / `MONGODB_URL` are set: the stack then
uses those. The tests use the same functions with their own ports and folder.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LOCAL = ROOT / ".local"
CACHE = ROOT / ".cache"
KAFKA_POM = HERE / "kafka" / "pom.xml"
DEV_TOKEN = "crm-dev-token"
DEMO_USERS: dict[str, dict[str, Any]] = {
    DEV_TOKEN: {"user": "dev", "roles": ["agent", "supervisor", "ops", "integration"]},
    "crm-demo-agent-07": {"user": "agent-07", "roles": ["agent"]},
    "crm-demo-owner-01": {"user": "owner-01", "roles": ["agent"]},
    "crm-demo-sup-01": {"user": "sup-01", "roles": ["supervisor"]},
}
"""The local stack's people, by token: the dev token (all roles) and a few named demo users (an
agent, an account owner, a supervisor). Never configure these tokens anywhere else."""
DEMO_STAFF: dict[str, dict[str, Any]] = {
    "owner-01": {"email": "owner-01@example.test", "locale": "zh-CN"},
    "agent-07": {"email": "agent-07@example.test", "locale": "en"},
    "sup-01": {"email": "sup-01@example.test", "locale": "zh-CN", "roles": ["supervisor"]},
}
"""The demo users' addresses in notify's staff address book (`CRM_NOTIFY_STAFF`): their task
digests, escalations and agreement alerts land in the mail catcher (.local/mail)."""
SERVICES: dict[str, int] = {
    "archive": 8081,
    "tickets": 8082,
    "loyalty": 8083,
    "notify": 8084,
    "relations": 8085,
}
"""Services of the suite and their HTTP ports."""
NICE: dict[str, int] = {"relations": 19, "notify-bulk": 19}
"""The processes that yield the cores when the machine is short of them (`yield_cores`): those
that act on what the ledgers record (plans, agreement lines, the messages that follow) and may
trail a backlog, while the archive and loyalty (the ledgers staff read, the archive waiting on
loyalty's points) apply theirs one batch after another. They take only what the others leave (19,
the lowest weight: the 70,000-order replay's ledgers were done 0.5-11 s sooner than with relations
at 10, and 3-15 s sooner with notify's bulk at 19 than with all of notify at 5). Notify's own
process, which sends what people wait on (a complaint's acknowledgement), keeps the default
weight: the acknowledgement's p99 at 200 events/s was 283-287 ms this way, 547-706 ms with all
of notify at 5, 1.7-1.8 s with all of notify at 19 (docs/performance.md, "The ledgers first" and
"Notify's bulk in a replica of its own")."""


@dataclass(frozen=True)
class Replica:
    """A second process of `service` that reads only `topics` of its service's (its first
    process reads the rest), on a port of its own, at a weight of its own (`NICE`), in the
    service's one group and database. It relays nothing and sweeps nothing: the first process's
    relay publishes what both committed, and its sweeps run at the first's weight (ADR 0028).
    `settings`: the service's own beside those (CRM_<SERVICE>_*)."""

    service: str
    port: int
    topics: tuple[str, ...]
    settings: Mapping[str, str] = field(default_factory=dict)


REPLICAS: dict[str, Replica] = {
    "notify-bulk": Replica(
        "notify",
        8086,
        ("archive.v1", "loyalty.v1", "relations.v1"),
        {"CRM_NOTIFY_SEND_NOW_ENABLED": "true"},  # sends what it decides, sweeping nothing
    ),
}
"""The local stack's replicas, by process name. Notify's bulk: what follows from what the ledgers
and relations record (points digests, tier news, churn care, staff digests and alerts), which
can wait out a backlog, apart from what a person waits on (acknowledgements, welcomes, consent),
which notify's own process reads (ADR 0028)."""


def replica_env(
    replica: Replica, bootstrap: str, mongodb_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """A replica's environment: its service's with `extra`, on its own port, with its own
    settings (`replica_settings`) whatever `extra` says of those."""
    own = replica_settings(replica)
    return service_env(
        replica.service, replica.port, bootstrap, mongodb_url, {**(extra or {}), **own}
    )


def replica_settings(replica: Replica) -> dict[str, str]:
    """What makes a process of its service a replica: reading its topics, relaying and sweeping
    nothing, and its service's own settings for it."""
    prefix = f"CRM_{replica.service.upper()}_"
    return {
        f"{prefix}TOPICS": json.dumps(replica.topics),
        f"{prefix}OUTBOX_RELAY_ENABLED": "false",
        f"{prefix}SWEEPS_ENABLED": "false",
        **replica.settings,
    }


def replicas_of(service: str, replicas: Mapping[str, Replica]) -> dict[str, Replica]:
    """`service`'s replicas among `replicas`, by process name."""
    return {name: r for name, r in replicas.items() if r.service == service}


def first_process_env(service: str, replicas: Mapping[str, Replica]) -> dict[str, str]:
    """What a service's first process reads when `replicas` read some of its topics: the rest
    (`CRM_<SERVICE>_TOPICS`); nothing when it has no replica. Replicas that took every topic
    are a mistake (an empty list reads them all): refused."""
    shared = {t for r in replicas_of(service, replicas).values() for t in r.topics}
    if not shared:
        return {}
    sys.path.insert(0, str(ROOT / "contracts" / "src"))
    from crm_contracts.topics import consumed_by

    own = [t.name for t in consumed_by(service) if t.name not in shared]
    if not own:
        raise ValueError(f"{service}'s replicas read every topic it reads: none is left for it")
    return {f"CRM_{service.upper()}_TOPICS": json.dumps(own)}


CONSOLE_PORT = 8080
"""The web console (`crm_console`): pages for people, in front of the services' HTTP APIs."""


# -- small helpers ---------------------------------------------------------------------------
def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for(
    check: Callable[[], bool],
    what: str,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode}\n{tail}")
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def spawn(
    args: list[str], log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    out = open(log, "ab")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        args,
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )


def stop_pid(pid: int, timeout: float = 20.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # reap if it is our child
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


# -- Apache Kafka ----------------------------------------------------------------------------
def kafka_classpath(cache: Path = CACHE) -> str:
    """Resolve the broker's jars from Maven Central once; later calls read the cached list."""
    listing = cache / "kafka" / "classpath.txt"
    if (
        not listing.exists()
        or listing.stat().st_mtime < KAFKA_POM.stat().st_mtime
        # a listing written through another path to this cache (a moved clone, a symlink)
        or not all(Path(jar).exists() for jar in listing.read_text().strip().split(os.pathsep))
    ):
        if shutil.which("mvn") is None or shutil.which("java") is None:
            raise RuntimeError("the local Kafka needs java (17+) and mvn on the PATH")
        listing.parent.mkdir(parents=True, exist_ok=True)
        print("resolving Apache Kafka jars from Maven Central (first run only)...", flush=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(KAFKA_POM),
                f"-Dmaven.repo.local={cache / 'm2'}",
                "dependency:build-classpath",
                f"-Dmdep.outputFile={listing}",
            ],
            check=True,
        )
    return listing.read_text().strip()


KAFKA_JVM_OPTS = ("-Xms256m", "-Xmx1g", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1")
"""The local broker's JVM. `TieredStopAtLevel=1` keeps to the quick JIT compiler: the optimising
one (C2) took 8.8 CPU-seconds of a fresh broker through a 10,000-order replay, CPU the services on
the same cores needed; with C1 only the broker used about a quarter less under 200 events/s from
cold, about the same over a long replay, and publishes a burst more slowly (docs/performance.md).
`CRM_KAFKA_JVM_OPTS` adds options after these (a later `-XX` option wins:
`-XX:TieredStopAtLevel=4` gives C2 back)."""


def _kafka_java(classpath: str, main: str, args: list[str], log4j: Path) -> list[str]:
    return [
        "java",
        *KAFKA_JVM_OPTS,
        *shlex.split(os.environ.get("CRM_KAFKA_JVM_OPTS", "")),
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        classpath,
        main,
        *args,
    ]


@dataclass
class KafkaNode:
    data: Path
    port: int = 9092
    controller_port: int = 9093
    template: Path = HERE / "kafka" / "server.properties.template"
    values: Mapping[str, str] = field(default_factory=dict)
    """More placeholders of the template (a secured broker's ports and files)."""
    format_args: tuple[str, ...] = ()
    """More `StorageTool format` arguments (e.g. `--add-scram` users)."""
    client_options: Mapping[str, Any] = field(default_factory=dict)
    """aiokafka security options to reach this broker (for the readiness probe)."""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config(self) -> Path:
        template = self.template.read_text()
        path = self.data / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            template.format(
                log_dir=self.data / "kraft",
                port=self.port,
                controller_port=self.controller_port,
                **self.values,
            )
        )
        return path

    def log4j(self) -> Path:
        return HERE / "kafka" / "log4j2.yaml"

    def start(self) -> subprocess.Popen[bytes]:
        classpath = kafka_classpath()
        config, log4j = self.config(), self.log4j()
        if not (self.data / "kraft" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                _kafka_java(
                    classpath,
                    "kafka.tools.StorageTool",
                    # `=`: a base64url id may begin with "-", which would read as an option.
                    [
                        "format",
                        f"--cluster-id={cluster_id}",
                        "-c",
                        str(config),
                        "--standalone",
                        *self.format_args,
                    ],
                    log4j,
                ),
                check=True,
                stdout=subprocess.DEVNULL,
            )
        log = self.data / "kafka.log"
        proc = spawn(_kafka_java(classpath, "kafka.Kafka", [str(config)], log4j), log)
        ready = functools.partial(kafka_ready, self.bootstrap, **self.client_options)
        wait_for(ready, "Kafka", 120, proc, log)
        return proc


def kafka_ready(bootstrap: str, **options: Any) -> bool:
    async def probe() -> bool:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **options)
        try:
            await admin.start()
            await admin.describe_cluster()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    host, _, port = bootstrap.rpartition(":")
    if not port_open(int(port), host or "127.0.0.1"):
        return False
    return asyncio.run(probe())


def provision_topics(bootstrap: str, **options: Any) -> list[str]:
    """Create every topic of the registry that does not exist yet, and set every topic's
    retention to the registry's (idempotent)."""
    sys.path.insert(0, str(ROOT / "contracts" / "src"))
    from crm_contracts.topics import ALL_TOPICS

    async def create() -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        from crm_runtime.topics import create_topics, set_retention

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
        await admin.start()
        try:
            existing = set(await admin.list_topics())
            missing = [t for t in ALL_TOPICS if t.name not in existing]
            await create_topics(admin, missing)
            await set_retention(admin, [t for t in ALL_TOPICS if t.name in existing])
            return [t.name for t in missing]
        finally:
            await admin.close()

    return asyncio.run(create())


# -- SecantusDB ------------------------------------------------------------------------------
# The Rust SecantusDB server: about five times the Python one's throughput (docs/performance.md).
# Built once per machine and user, outside the clone, so a fresh clone does not build it again.
RUST_STORE_CRATE = "secantus-mdb"
RUST_STORE_VERSION = "0.5.3-beta.196"
RUST_TOOLCHAIN = "1.98"
# How it is built: the crate's own release profile (one codegen unit, thin LTO). Part of the
# cache's name, so a machine holding an earlier build (16 codegen units, no LTO, whose server
# used about 10% more CPU per event: docs/performance.md) builds this one once.
RUST_STORE_BUILD = "release"


def user_cache() -> Path:
    """Per-user cache shared by every clone: `CRM_CACHE`, else `$XDG_CACHE_HOME/crm-suite`."""
    explicit = os.environ.get("CRM_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "crm-suite"


def _cargo_tool(name: str) -> str | None:
    """`name` from the PATH, else from rustup's default place (not on a non-login PATH)."""
    installed = Path.home() / ".cargo" / "bin" / name
    return shutil.which(name) or (str(installed) if installed.exists() else None)


def _run_with_progress(command: list[str], what: str, log: Path) -> None:
    """Run `command` with its output in `log`; print a line every 30 s so a long build shows
    it is alive; raise with the log's tail when it fails."""
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                compiled = log.read_bytes().count(b"Compiling ")
                print(
                    f"  ... {what}: {time.monotonic() - started:.0f} s, {compiled} crates compiled",
                    flush=True,
                )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{tail}")


def rust_store(build: bool = True) -> Path | None:
    """The cached `secantusd-rs`, built with cargo on first use (about 5 minutes on 2 cores);
    None, with the reason printed, where it cannot be had (no cargo, no network)."""
    root = user_cache() / f"{RUST_STORE_CRATE}-{RUST_STORE_VERSION}-{RUST_STORE_BUILD}"
    binary = root / "bin" / "secantusd-rs"
    if binary.exists():
        return binary
    if not build:
        return None
    cargo, rustup = _cargo_tool("cargo"), _cargo_tool("rustup")
    if cargo is None or rustup is None:
        print("no cargo/rustup on this machine: using the Python SecantusDB server", flush=True)
        return None
    root.parent.mkdir(parents=True, exist_ok=True)
    import fcntl  # POSIX only, like the rest of the local stack

    with (root.parent / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another clone may be building it right now
        if binary.exists():
            return binary
        print(
            f"building the Rust SecantusDB server {RUST_STORE_VERSION} into {root} "
            "(once per machine, about 5 minutes; CRM_STORE=python skips it)",
            flush=True,
        )
        staging = root.parent / f"{root.name}.building"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        log = root.parent / f"{root.name}.log"
        try:
            _run_with_progress(
                [
                    rustup,
                    "toolchain",
                    "install",
                    RUST_TOOLCHAIN,
                    "--profile",
                    "minimal",
                    "--no-self-update",  # a toolchain, not rustup's own upgrade
                ],
                f"Rust {RUST_TOOLCHAIN} toolchain",
                log,
            )
            _run_with_progress(
                [
                    cargo,
                    f"+{RUST_TOOLCHAIN}",
                    "install",
                    RUST_STORE_CRATE,
                    "--version",
                    RUST_STORE_VERSION,
                    "--locked",
                    "--root",
                    str(staging),
                ],
                f"cargo install {RUST_STORE_CRATE}",
                log,
            )
        except (OSError, RuntimeError) as exc:
            print(f"the Rust store could not be built, using the Python one: {exc}", flush=True)
            shutil.rmtree(staging, ignore_errors=True)
            return None
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    return binary


def store_server(build: bool = True) -> Path:
    """The MongoDB-wire server the stack and the tests start: `CRM_SECANTUSD` if set; the Python
    `secantusd-py` with `CRM_STORE=python`; else the Rust server (built on first use), falling
    back to the Python one where it cannot be built."""
    explicit = os.environ.get("CRM_SECANTUSD")
    if explicit:
        return Path(explicit)
    python = Path(sys.executable).with_name("secantusd-py")
    if os.environ.get("CRM_STORE", "rust") == "python":
        return python
    return rust_store(build) or python


STORE_ENV = {
    "MIMALLOC_PURGE_DELAY": "-1",
    "SECANTUS_WT_CONFIG_EXTRA": "transaction_sync=(enabled=true,method=none)",
    "SECANTUS_DATA_NONLOGGED": "1",
}
"""How the local store runs (ADR 0020); a variable already in the environment wins.

- `MIMALLOC_PURGE_DELAY=-1`: its allocator (mimalloc) keeps the memory it has freed instead of
  handing it back to the kernel, which costs a fresh zeroed page when it is used again: in the
  70,000-order replay, 1.6 million page faults and about a tenth of the store's CPU
  (`docs/performance.md`, "The store keeps its memory"). Its resident memory stays near its peak.
- `transaction_sync=(enabled=true,method=none)`: a commit writes its journal record to the
  operating system before the store acknowledges it (not synced to disk). By default the record
  waited in the store's memory, and a store killed mid-stream lost the last transactions it had
  acknowledged, after the services had committed their offsets.
- `SECANTUS_DATA_NONLOGGED`: it journals only its oplog, as `mongod` does, and after a crash
  recovers its data from the last checkpoint by replaying the oplog written since. It pays for
  the line above: together they cost the shop replay no throughput that the runs could show
  (`docs/performance.md`, "The local store keeps what it acknowledged"). Read when a store is
  created: a store keeps the mode it was created in.

The Python build ignores the last two."""


@dataclass
class MongoNode:
    data: Path
    port: int = 27017

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self) -> subprocess.Popen[bytes]:
        server = store_server()
        log = self.data / "secantusdb.log"
        self.data.mkdir(parents=True, exist_ok=True)
        proc = spawn(
            [
                str(server),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.data / "db"),
                "--log-level",
                "WARNING",
                *shlex.split(os.environ.get("CRM_SECANTUSD_ARGS", "")),
            ],
            log,
            env={k: v for k, v in STORE_ENV.items() if k not in os.environ},
        )
        wait_for(lambda: port_open(self.port), "SecantusDB", 60, proc, log)
        return proc


# -- Prometheus ------------------------------------------------------------------------------
PROMETHEUS_PORT = 9090
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def debian_binary(binary: str, package: str) -> str:
    """`binary` from the PATH, else `apt-get install package` (as root); raises with apt's
    output when it cannot be had."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{binary} is not installed and apt-get cannot install {package} here")
    install = ["apt-get", "install", "-y", "-q", package]
    done = subprocess.run(install, capture_output=True, text=True, check=False)
    if done.returncode != 0:  # a fresh machine may need the package lists first
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
        done = subprocess.run(install, capture_output=True, text=True, check=False)
    found = shutil.which(binary)
    if not found:
        raise RuntimeError(
            f"apt-get install {package} exited {done.returncode}, no {binary} on the PATH:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    return found


def prometheus_binary() -> str | None:
    """Prometheus from the PATH or Debian's package; None when neither: the stack then runs
    without it."""
    if not shutil.which("prometheus"):
        print("installing Prometheus (Debian package `prometheus`) ...", flush=True)
    try:
        return debian_binary("prometheus", "prometheus")
    except RuntimeError:
        return None


def prometheus_config(
    targets: Mapping[str, Iterable[int]], own_port: int, interval: str
) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml (what compose runs) with the targets swapped for each
    service's processes on 127.0.0.1:<port>, the rules file by its path and another interval."""
    import yaml  # PyYAML: in the dev virtualenv, needed only here

    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"].update(
        scrape_interval=interval, scrape_timeout=interval, evaluation_interval=interval
    )
    config["rule_files"] = [str(PROMETHEUS_RULES)]
    for job in config["scrape_configs"]:
        for static in job["static_configs"]:
            if job["job_name"] == "crm":
                ports = targets[static["labels"]["service"]]
                static["targets"] = [f"127.0.0.1:{port}" for port in ports]
            else:
                static["targets"] = [f"127.0.0.1:{own_port}"]
    return config


@dataclass
class PrometheusNode:
    """A Prometheus scraping the suite with the deployment's job, labels and alert rules."""

    data: Path
    targets: Mapping[str, Iterable[int]]
    """Each service's processes' ports."""
    port: int = PROMETHEUS_PORT
    interval: str = "5s"
    binary: str = "prometheus"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data / "prometheus.log"

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def start(self) -> subprocess.Popen[bytes]:
        import yaml

        self.data.mkdir(parents=True, exist_ok=True)
        config = self.data / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(self.targets, self.port, self.interval)))
        proc = spawn(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.data / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=7d",
            ],
            self.log,
        )
        wait_for(self.ready, "Prometheus", 60, proc, self.log)
        return proc


# -- the services ----------------------------------------------------------------------------
def dev_keys_file() -> Path:
    """The local stack's master and index keys (made once, random, 0600; never for production).

    Every service and every test of this checkout reads the same file, so they can open each
    other's test data; `make clean-local` forgets it, and with it every sealed field."""
    path = LOCAL / "keys.json"
    if not path.exists():
        sys.path.insert(0, str(ROOT / "services" / "runtime" / "src"))
        from crm_runtime.crypto import new_key_file_content

        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"keys.{os.getpid()}.json")
        draft.write_text(json.dumps(new_key_file_content()))
        draft.chmod(0o600)
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)  # the first writer wins; everyone reads the winner's keys
        draft.unlink()
    return path


def service_env(
    name: str, port: int, bootstrap: str, mongodb_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    prefix = f"CRM_{name.upper()}_"
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "MONGODB_URL": mongodb_url,
        "CRM_API_TOKENS": json.dumps(DEMO_USERS),
        "CRM_MASTER_KEYS_FILE": os.environ.get("CRM_MASTER_KEYS_FILE", str(dev_keys_file())),
        f"{prefix}HTTP_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
        **({"CRM_NOTIFY_STAFF": json.dumps(DEMO_STAFF)} if name == "notify" else {}),
        **(extra or {}),
    }


MAIL_PORT = 2525
"""The local mail catcher (aiosmtpd): notify's default SMTP server; mail lands in .local/mail."""


def start_mail_catcher(root: Path, port: int = MAIL_PORT) -> subprocess.Popen[bytes]:
    """`mail_catcher.py` on `port`, filing what it receives into the Maildir `root/mail`."""
    catcher = [sys.executable, str(HERE / "mail_catcher.py"), "--listen", f"127.0.0.1:{port}"]
    return spawn([*catcher, str(root / "mail")], root / "logs" / "mail.log", cwd=ROOT)


def console_env(port: int, services: Mapping[str, int]) -> dict[str, str]:
    """The console's environment: where each service answers (it has no broker, no database)."""
    return {
        **{
            f"CRM_CONSOLE_{name.upper()}_URL": f"http://127.0.0.1:{p}"
            for name, p in services.items()
        },
        "CRM_CONSOLE_HTTP_PORT": str(port),
        "PYTHONUNBUFFERED": "1",
    }


def start_service(
    name: str, env: Mapping[str, str], log: Path, process: str = ""
) -> subprocess.Popen[bytes]:
    """Service `name` as the process `process` (a replica's name; default: the service's own) at
    that process's weight (`NICE`)."""
    proc = spawn([sys.executable, "-m", f"crm_{name}"], log, env=env, cwd=ROOT)
    yield_cores(proc.pid, NICE.get(process or name, 0))
    return proc


def yield_cores(pid: int, nice: int) -> None:
    """Give `pid` (just spawned, in a session of its own) `nice` less CPU weight than the rest of
    the stack. Linux shares the cores between sessions first (autogroup, on by default) by the
    nice value of the session, `/proc/PID/autogroup`, which starts at 0 for every new session, and
    only then between a session's threads by theirs: each process `spawn` starts is its own
    session, so a process's nice value alone changes nothing there. Both are set, the process's
    above the one it inherited, for kernels without autogroup; the threads the service starts
    inherit it. Raising a nice value needs no privilege, but an unprivileged user may set an
    autogroup's only once a tenth of a second, machine-wide (EAGAIN). Where it is refused, the
    service runs at the default weight."""
    if not nice:
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, min(os.getpriority(os.PRIO_PROCESS, 0) + nice, 19))
    for _ in range(10):
        try:
            Path(f"/proc/{pid}/autogroup").write_text(f"{nice}\n")
            return
        except BlockingIOError:
            time.sleep(0.1)
        except OSError:  # no autogroup in this kernel, or not our process
            return


def metric(port: int, *names: str, **labels: str) -> float:
    """The sum of the samples of `names` on a local service's /metrics (one fetch), of those
    with every one of `labels` (`topic="archive.v1"`) when any are given."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        for name in names
        if (line.startswith(name + "{") or line.startswith(name + " "))
        and all(f"{{{label}" in line or f",{label}" in line for label in wanted)
    )


def service_ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except Exception:
        return False


# -- up / down -------------------------------------------------------------------------------
@dataclass
class LocalStack:
    root: Path = LOCAL
    kafka_port: int = 9092
    controller_port: int = 9093
    mongo_port: int = 27017
    services: Mapping[str, int] = field(default_factory=lambda: dict(SERVICES))
    replicas: Mapping[str, Replica] = field(default_factory=lambda: dict(REPLICAS))
    console_port: int = CONSOLE_PORT

    @property
    def pids(self) -> Path:
        return self.root / "run"

    def _record(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self.pids.mkdir(parents=True, exist_ok=True)
        (self.pids / f"{name}.pid").write_text(str(proc.pid))

    def _running(self, name: str) -> int | None:
        path = self.pids / f"{name}.pid"
        if not path.exists():
            return None
        pid = int(path.read_text())
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink()
            return None
        return pid

    def ports(self) -> dict[str, int]:
        """Each service's process and each replica, by name: its HTTP port."""
        return {**self.services, **{name: r.port for name, r in self.replicas.items()}}

    def scrape_targets(self) -> dict[str, list[int]]:
        """Each service's processes' ports, its own first: what Prometheus scrapes as it."""
        return {
            name: [port, *(r.port for r in replicas_of(name, self.replicas).values())]
            for name, port in self.services.items()
        }

    def running(self, name: str) -> bool:
        """Whether the stack's `name` (kafka, secantusdb, mail, a service, prometheus) runs."""
        return self._running(name) is not None

    def bootstrap(self) -> str:
        return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or f"127.0.0.1:{self.kafka_port}"

    def mongodb_url(self) -> str:
        return os.environ.get("MONGODB_URL") or MongoNode(self.root, self.mongo_port).url

    def up(self) -> None:
        if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not self._running("kafka"):
            node = KafkaNode(self.root / "kafka", self.kafka_port, self.controller_port)
            if port_open(self.kafka_port):
                raise RuntimeError(f"port {self.kafka_port} is taken by a process we did not start")
            print(f"starting Apache Kafka on {node.bootstrap} ...", flush=True)
            self._record("kafka", node.start())
        if not os.environ.get("MONGODB_URL") and not self._running("secantusdb"):
            mongo = MongoNode(self.root / "secantusdb", self.mongo_port)
            if port_open(self.mongo_port):
                raise RuntimeError(f"port {self.mongo_port} is taken by a process we did not start")
            print(f"starting SecantusDB on 127.0.0.1:{self.mongo_port} ...", flush=True)
            self._record("secantusdb", mongo.start())
        if not os.environ.get("CRM_NOTIFY_SMTP_HOST") and not self._running("mail"):
            if port_open(MAIL_PORT):
                raise RuntimeError(f"port {MAIL_PORT} is taken by a process we did not start")
            print(f"starting the mail catcher on 127.0.0.1:{MAIL_PORT} ...", flush=True)
            self._record("mail", start_mail_catcher(self.root))
        created = provision_topics(self.bootstrap())
        if created:
            print(f"created topics: {', '.join(created)}", flush=True)
        for name, port in self.services.items():
            if self._running(name):
                continue
            own = first_process_env(name, self.replicas)
            env = service_env(name, port, self.bootstrap(), self.mongodb_url(), own)
            proc = start_service(name, env, self.root / "logs" / f"{name}.log")
            self._record(name, proc)
        for name, replica in self.replicas.items():
            if self._running(name):
                continue
            env = replica_env(replica, self.bootstrap(), self.mongodb_url())
            proc = start_service(replica.service, env, self.root / "logs" / f"{name}.log", name)
            self._record(name, proc)
        for name, port in self.ports().items():
            wait_for(functools.partial(service_ready, port), f"service {name}", 120)
        if not self._running("console"):
            if port_open(self.console_port):
                raise RuntimeError(
                    f"port {self.console_port} is taken by a process we did not start"
                )
            env = {**os.environ, **console_env(self.console_port, self.services)}
            self._record(
                "console", start_service("console", env, self.root / "logs" / "console.log")
            )
        wait_for(functools.partial(service_ready, self.console_port), "the console", 60)
        self._start_prometheus()
        self.print_urls()

    def _start_prometheus(self) -> None:
        if self._running("prometheus") or os.environ.get("CRM_LOCAL_PROMETHEUS") == "0":
            return
        binary = prometheus_binary()
        if binary is None:
            print(
                "Prometheus is not installed (and cannot be here): running without it", flush=True
            )
            return
        if port_open(PROMETHEUS_PORT):
            print(f"port {PROMETHEUS_PORT} is taken: running without our Prometheus", flush=True)
            return
        print(f"starting Prometheus on 127.0.0.1:{PROMETHEUS_PORT} ...", flush=True)
        node = PrometheusNode(self.root / "prometheus", self.scrape_targets(), binary=binary)
        self._record("prometheus", node.start())

    def print_urls(self) -> None:
        print("\nThe CRM suite is up.")
        print(f"  Kafka:       {self.bootstrap()}")
        print(f"  MongoDB:     {self.mongodb_url()}")
        for name, port in self.services.items():
            print(f"  {name:<12} http://127.0.0.1:{port}  (docs /docs, AsyncAPI /asyncapi)")
        for name, replica in self.replicas.items():
            topics = ", ".join(replica.topics)
            print(f"  {name:<12} http://127.0.0.1:{replica.port}  ({replica.service}: {topics})")
        print(f"  console      http://127.0.0.1:{self.console_port}  (sign in with a token below)")
        print(f"  dev token:   {DEV_TOKEN}   (curl -H 'Authorization: Bearer {DEV_TOKEN}' ...)")
        print("  demo users:  user       roles       token")
        for token, person in DEMO_USERS.items():
            if token != DEV_TOKEN:
                print(f"    {person['user']:<10} {', '.join(person['roles']):<11} {token}")
        if self._running("prometheus"):
            print(f"  Prometheus:  http://127.0.0.1:{PROMETHEUS_PORT}  (/alerts, /rules, /graph)")
        print(f"  mail:        {self.root / 'mail'}  (what notify sent, as a maildir)")
        print(f"  logs:        {self.root / 'logs'}")

    def down(self) -> None:
        for name in [
            "prometheus",
            "console",
            *self.replicas,
            *self.services,
            "mail",
            "secantusdb",
            "kafka",
        ]:
            pid = self._running(name)
            if pid:
                print(f"stopping {name} (pid {pid})", flush=True)
                stop_pid(pid, timeout=30 if name == "kafka" else 20)
                (self.pids / f"{name}.pid").unlink(missing_ok=True)

    def status(self) -> None:
        for name in [
            "kafka",
            "secantusdb",
            "mail",
            *self.services,
            *self.replicas,
            "console",
            "prometheus",
        ]:
            pid = self._running(name)
            print(f"{name:<12} {'running, pid ' + str(pid) if pid else 'stopped'}")


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "topics", "store"])
    args = parser.parse_args(list(argv) if argv is not None else None)
    stack = LocalStack()
    if args.command == "up":
        stack.up()
    elif args.command == "down":
        stack.down()
    elif args.command == "status":
        stack.status()
    elif args.command == "store":
        print(f"MongoDB-wire server: {store_server()}")
    else:
        print("\n".join(provision_topics(stack.bootstrap())) or "all topics exist")


if __name__ == "__main__":
    main()
