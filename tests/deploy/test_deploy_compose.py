"""deploy/compose.yaml: valid for Compose, and wired as the suite needs.

Compose validates without a Docker engine (`config`); the secrets it needs (a keys file and the
API token hashes) are made here, as the file's header tells a person to.
"""

import hashlib
import json
import os
import re
import subprocess
from typing import Any

import pytest
import yaml
from tooling import PORTS, ROOT
from tooling.compose import compose_command

from crm_contracts.topics import ALL_TOPICS
from crm_runtime.crypto import new_key_file_content

COMPOSE = ROOT / "deploy" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def secrets_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    keys = tmp_path_factory.mktemp("compose") / "master-keys.json"
    keys.write_text(json.dumps(new_key_file_content()))
    token_hash = hashlib.sha256(b"a-test-token").hexdigest()
    return {
        "CRM_COMPOSE_MASTER_KEYS": str(keys),
        "CRM_API_TOKEN_HASHES": json.dumps({token_hash: ["agent", "ops"]}),
    }


def run_compose(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "COMPOSE_"))}
    return subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), *args],
        capture_output=True,
        text=True,
        env={**clean, **env},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_compose_config_is_valid(secrets_env: dict[str, str]) -> None:
    done = run_compose(secrets_env, "config", "-q")
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_run_without_token_hashes(secrets_env: dict[str, str]) -> None:
    """No API token is baked in: without CRM_API_TOKEN_HASHES the file does not resolve."""
    env = {k: v for k, v in secrets_env.items() if k != "CRM_API_TOKEN_HASHES"}
    done = run_compose(env, "config", "-q")
    assert done.returncode != 0
    assert "CRM_API_TOKEN_HASHES" in done.stderr + done.stdout


def test_compose_has_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    wanted = {"kafka", "topics", "mongo", "prometheus", "grafana", *PORTS}
    assert wanted <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    kafka_env = services["kafka"]["environment"]
    assert set(kafka_env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "healthcheck" in services["kafka"]
    assert services["mongo"]["image"].startswith("mongo:8")
    assert "--replSet" in services["mongo"]["command"], "transactions need a replica set"
    assert "healthcheck" in services["mongo"]
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    prometheus_mounts = [v.split(":")[0] for v in services["prometheus"]["volumes"]]
    assert {"./prometheus/prometheus.yml", "./prometheus/rules.yml"} <= set(prometheus_mounts)
    assert services["grafana"]["image"].startswith("grafana/grafana")
    grafana_mounts = {v.split(":")[0]: v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert grafana_mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert grafana_mounts["./grafana/dashboards"] == "/var/lib/grafana/dashboards"


def test_topic_init_creates_the_registry_topics(compose: dict[str, Any]) -> None:
    init = compose["services"]["topics"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    specs = init["environment"]["TOPICS"].split()
    declared = {}
    for spec in specs:
        name, partitions, retention = spec.split(":")
        declared[name] = (int(partitions), int(retention))
    assert declared == {t.name: (t.partitions, t.retention_ms) for t in ALL_TOPICS}
    assert "$$TOPICS" in init["command"][0]


@pytest.mark.parametrize("service", sorted(PORTS))
def test_service_is_built_and_wired(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    build = spec["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert build["dockerfile"] == f"services/{service}/Dockerfile"
    depends = spec["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["mongo"]["condition"] == "service_healthy"
    assert depends["topics"]["condition"] == "service_completed_successfully"
    assert "/readyz" in " ".join(spec["healthcheck"]["test"])
    env = spec["environment"]
    prefix = f"CRM_{service.upper()}_"
    assert env[f"{prefix}HTTP_PORT"] == str(PORTS[service])  # Prometheus scrapes <name>:<port>
    assert env[f"{prefix}HTTP_HOST"] == "0.0.0.0"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["MONGODB_URL"].startswith("mongodb://mongo:27017/")
    # Secrets: the keys file is a Compose secret, the tokens only hashes from the environment.
    secret_targets = {s["source"]: s["target"] for s in spec["secrets"]}
    assert env["CRM_MASTER_KEYS_FILE"] == f"/run/secrets/{secret_targets['crm_master_keys']}"
    assert env["CRM_API_TOKEN_HASHES"].startswith("${CRM_API_TOKEN_HASHES:?")
    for plaintext in ("CRM_MASTER_KEYS", "CRM_INDEX_KEY", "CRM_API_TOKENS"):
        assert plaintext not in env


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    keys = compose["secrets"]["crm_master_keys"]
    assert keys["file"].startswith("${CRM_COMPOSE_MASTER_KEYS:-../.local/"), "a path, not a key"
    # No key material: nothing that looks like the base64 of 32 bytes.
    assert not re.search(r"[A-Za-z0-9+/]{43}=", COMPOSE.read_text())
