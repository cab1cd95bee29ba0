"""deploy/k8s: every overlay renders, and what it renders is safe and scales on Kafka lag.

The issue asks for `kubectl kustomize`; kubectl is not on these machines, so the tests run
kustomize itself (the same renderer: kubectl embeds it), installed by `tooling.kustomize`.
"""

import shutil
import subprocess
from functools import cache
from typing import Any

import pytest
import yaml
from tooling import PORTS, ROOT
from tooling.kustomize import kustomize

from crm_contracts.topics import SERVICES, consumed_by, topic

K8S = ROOT / "deploy" / "k8s"
CONSUMED: dict[str, tuple[str, ...]] = {
    service: tuple(t.name for t in consumed_by(service)) for service in SERVICES
}
"""What each service subscribes to: the runtime takes it from the topic registry."""
OVERLAYS = {"dev": "crm-dev", "prod": "crm-prod"}
CONSOLE = "console"
"""The web console: a Deployment, Service and PDB like the services; no ScaledObject (it consumes
nothing), no keys (it holds no data)."""
HTTP_PORTS = {**PORTS, CONSOLE: 8080}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

Doc = dict[str, Any]


@cache
def render(target: str) -> tuple[Doc, ...]:
    done = subprocess.run(
        [str(kustomize()), "build", str(K8S / target)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return tuple(d for d in yaml.safe_load_all(done.stdout) if d)


def of_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def shared_config(docs: tuple[Doc, ...]) -> dict[str, str]:
    found = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("crm-shared")
    ]
    assert len(found) == 1
    data: dict[str, str] = found[0]["data"]
    return data


def cpu(quantity: str) -> float:
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def memory_mi(quantity: str) -> float:
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


@pytest.mark.parametrize("target", ["base", "overlays/dev", "overlays/prod"])
def test_renders_every_service(target: str) -> None:
    docs = render(target)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert set(of_kind(docs, kind)) == set(HTTP_PORTS), kind
    assert set(of_kind(docs, "ScaledObject")) == set(PORTS)
    assert not of_kind(docs, "Secret"), "secrets are referenced by name, never rendered"


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_overlay_namespace_is_applied(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    namespace = OVERLAYS[overlay]
    assert namespace in of_kind(docs, "Namespace")
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == namespace, doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_deployments_are_probed_limited_and_non_root(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    config_maps = set(of_kind(docs, "ConfigMap"))
    for name, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod.get("automountServiceAccountToken") is False
        (container,) = pod["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["http"] == HTTP_PORTS[name]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        for bound in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][bound]), (name, bound)
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["seccompProfile"]["type"] == "RuntimeDefault"
        # Configuration from ConfigMaps that exist; secrets by reference only.
        refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert refs
        assert set(refs) <= config_maps
        for variable in container.get("env", []):
            assert "value" not in variable, f"{name}: {variable['name']} has a literal value"
            assert "secretKeyRef" in variable["valueFrom"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        if name == CONSOLE:
            assert "master-keys" not in volumes, "the console holds no data: no keys"
            continue
        assert volumes["master-keys"]["secret"]["secretName"] == "crm-master-keys"
        keys_file = shared_config(docs)["CRM_MASTER_KEYS_FILE"]
        assert keys_file.startswith(mounts["master-keys"] + "/")


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_a_pdb_per_service_selects_its_pods(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    deployments = of_kind(docs, "Deployment")
    for name, pdb in of_kind(docs, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert selector, "an empty selector would cover every pod of the namespace"
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_scaled_objects_follow_each_consumer_group(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    deployments = of_kind(docs, "Deployment")
    bootstrap = shared_config(docs)["KAFKA_BOOTSTRAP_SERVERS"]
    for name, scaled in of_kind(docs, "ScaledObject").items():
        assert scaled["apiVersion"] == "keda.sh/v1alpha1"
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]
        assert target["name"] == name
        assert target.get("kind", "Deployment") == "Deployment"
        assert name in deployments
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {name}
        topics = [t["metadata"]["topic"] for t in triggers]
        assert sorted(topics) == sorted(CONSUMED[name]), "one trigger per consumed topic"
        for trigger in triggers:
            assert int(trigger["metadata"]["lagThreshold"]) > 0
            assert trigger["metadata"]["bootstrapServers"] == bootstrap
        partitions = min(topic(t).partitions for t in topics)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions


def test_dev_runs_one_small_replica() -> None:
    docs = render("overlays/dev")
    for deployment in of_kind(docs, "Deployment").values():
        assert "replicas" not in deployment["spec"], "KEDA owns the count: an apply must not"
    for scaled in of_kind(docs, "ScaledObject").values():
        assert scaled["spec"]["minReplicaCount"] == scaled["spec"]["maxReplicaCount"] == 1


def test_prod_is_bigger_pinned_and_authenticated() -> None:
    dev, prod = render("overlays/dev"), render("overlays/prod")
    dev_scaled, prod_scaled = of_kind(dev, "ScaledObject"), of_kind(prod, "ScaledObject")
    dev_deployments, prod_deployments = of_kind(dev, "Deployment"), of_kind(prod, "Deployment")
    auths = of_kind(prod, "TriggerAuthentication")
    for name in PORTS:
        minimum = prod_scaled[name]["spec"]["minReplicaCount"]
        assert minimum >= 2
        assert minimum > dev_scaled[name]["spec"]["minReplicaCount"]
        small = dev_deployments[name]["spec"]["template"]["spec"]["containers"][0]
        big = prod_deployments[name]["spec"]["template"]["spec"]["containers"][0]
        for bound in ("requests", "limits"):
            assert cpu(big["resources"][bound]["cpu"]) > cpu(small["resources"][bound]["cpu"])
            assert memory_mi(big["resources"][bound]["memory"]) > memory_mi(
                small["resources"][bound]["memory"]
            )
        image = big["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{image} has no tag"
        assert not image.endswith((":latest", ":dev"))
        for trigger in prod_scaled[name]["spec"]["triggers"]:
            assert trigger["authenticationRef"]["name"] in auths
            assert trigger["metadata"]["sasl"] == "scram_sha512"
            assert trigger["metadata"]["tls"] == "enable"
    assert shared_config(prod)["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


def test_the_pod_monitor_labels_targets_as_the_rules_and_dashboards_select_them() -> None:
    for overlay in ("overlays/dev", "overlays/prod"):
        docs = render(overlay)
        [monitor] = of_kind(docs, "PodMonitor").values()
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["honorLabels"] is True
        relabel = {r["targetLabel"]: r for r in endpoint["relabelings"]}
        assert relabel["job"]["replacement"] == "crm"
        assert relabel["service"]["sourceLabels"] == [
            "__meta_kubernetes_pod_label_app_kubernetes_io_name"
        ]
        selector = monitor["spec"]["selector"]["matchLabels"]
        for deployment in of_kind(docs, "Deployment").values():
            pod = deployment["spec"]["template"]
            labels = pod["metadata"]["labels"]
            assert selector.items() <= labels.items()
            assert labels["app.kubernetes.io/name"] == deployment["metadata"]["name"]
            ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
            assert endpoint["port"] in ports


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_kubectl_kustomize_renders_each_overlay_as_kustomize_does(overlay: str) -> None:
    """`kubectl apply -k` renders with kubectl's built-in kustomize: the same objects. (kubectl
    is not on every machine of this kind; where it is missing, the renders above stand.)"""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed here")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert tuple(d for d in yaml.safe_load_all(done.stdout) if d) == render(f"overlays/{overlay}")
