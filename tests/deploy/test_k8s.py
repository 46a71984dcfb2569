"""deploy/k8s/ renders with kustomize into valid Kubernetes resources that hold together.

No cluster runs on the machines that test LeafWatch. These tests render every variant with
`kubectl kustomize` (offline), validate each built-in resource against the pinned Kubernetes
version's schema with kubernetes-validate (strict: an unknown field fails), and check the
Prometheus Operator resources, which have no schema there, structurally and with promtool. The
rest checks what a schema cannot: probes, security, secrets, settings, volumes and the links
between the resources. A slow test runs the pods' commands for real with their rendered
environment and shows every file they write lies in a volume the pod mounts writable.
"""

import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import kubernetes_validate
import promql_parser
import pytest
import yaml
from typer.testing import CliRunner

from leafwatch.cli import app
from leafwatch.config import Settings
from leafwatch.stack.k8s import EXCLUDED_RULE_FILES, kubernetes_rule_files, render_prometheus_rules
from tests.conftest import _reset_postgres
from tests.servers import free_port, running

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
RULES_DIR = ROOT / "deploy" / "prometheus" / "rules"
PROMETHEUS_RULES = K8S / "components" / "monitoring" / "prometheus-rules.yaml"
DOCKERFILE = ROOT / "Dockerfile"

# The Kubernetes release the manifests must be valid for: a minor from 2025, so that clusters a
# year or more behind accept them (nothing newer may be used). They are checked against the newest
# release kubernetes-validate knows as well, which catches an API that has since been removed.
KUBERNETES_VERSION = "1.33.0"
NEWEST_KUBERNETES_VERSION = "1.37.0"
# Custom resources kubernetes-validate has no schema for; checked structurally below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
CUSTOM_KINDS |= {("monitoring.coreos.com/v1", "PrometheusRule")}
BASE_KINDS = {
    "ServiceAccount",
    "ConfigMap",
    "Service",
    "Deployment",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "Job",
    "CronJob",
}
PRODUCTION_KINDS = BASE_KINDS | {"Namespace", "ServiceMonitor", "PrometheusRule"}
# The drift variant is production with components/drift-cronjob added, as the docs tell.
VARIANTS = ("base", "production", "production-drift-cronjob")
WORKLOADS = ("Deployment", "Job", "CronJob")
SECRET_NAME = re.compile(
    r"(?i)password|passwd|secret|token|api_?key|routing_?key|webhook|credential|database_url"
)
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
KUBECTL_HELP = (
    "kubectl is missing: these tests render deploy/k8s/ with `kubectl kustomize` (offline, no "
    "cluster). Install kubectl 1.27 or later (kustomize v5) from https://kubernetes.io/docs/tasks/"
    "tools/ (Debian's kubernetes-client is 1.20, too old)."
)


# ---- rendering ---------------------------------------------------------------------------------


def kubectl() -> str:
    tool = shutil.which("kubectl")
    if tool is None:
        pytest.fail(KUBECTL_HELP)
    return tool


@cache
def kustomize_version() -> str:
    result = subprocess.run(
        [kubectl(), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return str(json.loads(result.stdout)["kustomizeVersion"])


def kustomize(directory: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every variant's resources, rendered once."""
    overlay = tmp_path_factory.mktemp("drift-cronjob")
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                # kustomize takes relative paths only
                "resources": [os.path.relpath(K8S / "overlays" / "production", overlay)],
                "components": [os.path.relpath(K8S / "components" / "drift-cronjob", overlay)],
            }
        )
    )
    return {
        "base": kustomize(K8S / "base"),
        "production": kustomize(K8S / "overlays" / "production"),
        "production-drift-cronjob": kustomize(overlay),
    }


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(workload["spec"]["template"]["spec"])


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    if workload["kind"] == "CronJob":
        return dict(workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"])
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def workloads(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in WORKLOADS]


def containers(docs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) for every container, init containers included."""
    for workload in workloads(docs):
        spec = pod_spec(workload)
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            yield workload, container


# ---- the image the manifests run (Dockerfile) -------------------------------------------------


def dockerfile_runtime() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile's last stage, continuation lines joined."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = [tuple(line.strip().split(None, 1)) for line in joined.splitlines() if line]
    last_from = max(i for i, parts in enumerate(instructions) if parts[0].upper() == "FROM")
    return [(parts[0].upper(), parts[1]) for parts in instructions[last_from:] if len(parts) == 2]


def image_env() -> dict[str, str]:
    env = {}
    for instruction, arguments in dockerfile_runtime():
        if instruction == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def image_instruction(name: str) -> str:
    return [args for instruction, args in dockerfile_runtime() if instruction == name][-1]


def image_user() -> int:
    return int(image_instruction("USER").split(":")[0])


def image_home() -> str:
    """The home directory of the image's user (useradd --home-dir): runtimes set HOME to it."""
    runs = " ".join(args for instruction, args in dockerfile_runtime() if instruction == "RUN")
    home = re.search(r"--home-dir\s+(\S+)", runs)
    assert home, "the Dockerfile's user has no --home-dir"
    return home.group(1)


def image_entrypoint() -> list[str]:
    return list(json.loads(image_instruction("ENTRYPOINT")))


# ---- what a container sees --------------------------------------------------------------------


@dataclass(frozen=True)
class Mount:
    path: str
    volume: dict[str, Any]
    read_only: bool


def mounts(workload: dict[str, Any], container: dict[str, Any]) -> list[Mount]:
    volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
    found = []
    for mount in container.get("volumeMounts", []):
        assert mount["name"] in volumes, f"{container['name']} mounts no volume {mount['name']}"
        found.append(
            Mount(mount["mountPath"], volumes[mount["name"]], mount.get("readOnly", False))
        )
    return found


def config_map(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    maps = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name]
    assert maps, f"envFrom names ConfigMap {name}, which is not rendered"
    return dict(maps[0].get("data", {}))


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, Any]:
    """The variables the container starts with: the image's, then envFrom, then env.

    A variable from a Secret is given as its secretKeyRef, since its value is not known here.
    """
    env: dict[str, Any] = dict(image_env())
    for source in container.get("envFrom", []):
        assert "configMapRef" in source, f"{container['name']}: envFrom only from ConfigMaps"
        env.update(config_map(docs, source["configMapRef"]["name"]))
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            env[variable["name"]] = variable["valueFrom"]
    return env


def settings_of(env: dict[str, Any]) -> Settings:
    """The Settings a container would build; a Secret's value stands in as a harmless one."""
    values = {}
    for name, value in env.items():
        if not name.startswith("LEAFWATCH_"):
            continue
        if isinstance(value, dict):
            value = "postgresql+psycopg://leafwatch@database/leafwatch"
        values[name.removeprefix("LEAFWATCH_").lower()] = value
    return Settings.model_validate(values)


def writable_mount(
    workload: dict[str, Any], container: dict[str, Any], path: PurePosixPath
) -> Mount | None:
    for mount in mounts(workload, container):
        volume = mount.volume
        local = "emptyDir" in volume or "persistentVolumeClaim" in volume or "ephemeral" in volume
        if local and not mount.read_only and path.is_relative_to(mount.path):
            return mount
    return None


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (250m, 2, 768Mi, 1Gi) as a number of cores or bytes."""
    text = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix, factor in suffixes.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


# ---- validity ---------------------------------------------------------------------------------


def test_kubectl_renders_with_kustomize_v5() -> None:
    version = kustomize_version()
    major = re.match(r"v?(\d+)\.", version)
    assert major, f"kustomize version {version!r}"
    assert int(major.group(1)) >= 5, (
        f"kustomize {version}: the manifests use v5 syntax (labels, patches, components)"
    )


@pytest.mark.parametrize("version", [KUBERNETES_VERSION, NEWEST_KUBERNETES_VERSION])
@pytest.mark.parametrize("variant", VARIANTS)
def test_every_resource_is_valid_for_the_pinned_kubernetes_versions(
    rendered: dict[str, list[dict[str, Any]]], variant: str, version: str
) -> None:
    docs = rendered[variant]
    kinds = {doc["kind"] for doc in docs}
    assert kinds == (BASE_KINDS if variant == "base" else PRODUCTION_KINDS)
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{variant} {name} at {list(exc.path)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{variant} {name}: {doc['apiVersion']} is not in Kubernetes {version}")


def test_strict_validation_refuses_an_unknown_field(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """The validation above can fail: a misspelt field is an error, not ignored."""
    deployment = one(rendered["base"], "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomizations_use_current_fields_only() -> None:
    deprecated = {"bases", "commonLabels", "patchesStrategicMerge", "patchesJson6902", "vars"}
    deprecated |= {"imageTags", "patchesJson6902"}
    files = sorted(K8S.rglob("kustomization.yaml"))
    assert len(files) == 4
    for path in files:
        used = set(yaml.safe_load(path.read_text())) & deprecated
        assert not used, f"{path.relative_to(ROOT)} uses deprecated {sorted(used)}"


# ---- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_no_secret_value_is_in_the_manifests(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    assert not [doc for doc in docs if doc["kind"] == "Secret"], "Secrets are created by hand"
    for doc in docs:
        if doc["kind"] != "ConfigMap":
            continue
        for key, value in doc.get("data", {}).items():
            assert not (SECRET_NAME.search(key) and not key.endswith("_FILE")), (
                f"{key} is a secret: a Secret reference or a _FILE path, not the ConfigMap"
            )
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"{key} holds a password"
    for path in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), path


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_secret_variable_comes_from_a_secret(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    for workload, container in containers(docs):
        where = f"{workload['metadata']['name']}/{container['name']}"
        for name, value in container_env(docs, container).items():
            if not SECRET_NAME.search(name):
                continue
            if name.endswith("_FILE"):
                assert_mounted_from_a_secret(workload, container, PurePosixPath(value), name)
            else:
                assert isinstance(value, dict), f"{where}: {name} must come from a Secret"
                assert "secretKeyRef" in value, f"{where}: {name} must come from a secretKeyRef"


def assert_mounted_from_a_secret(
    workload: dict[str, Any], container: dict[str, Any], path: PurePosixPath, variable: str
) -> None:
    """The file is a key of a Secret, mounted read-only where the variable points."""
    for mount in mounts(workload, container):
        if not path.is_relative_to(mount.path):
            continue
        relative = str(path.relative_to(mount.path))
        volume = mount.volume
        sources = [volume] if "secret" in volume else volume.get("projected", {}).get("sources", [])
        items = [item for source in sources for item in source.get("secret", {}).get("items", [])]
        assert mount.read_only, f"{variable}: {mount.path} should be mounted read-only"
        assert relative in {item["path"] for item in items}, (
            f"{variable}={path}: no Secret key is projected to {relative} under {mount.path}"
        )
        return
    pytest.fail(f"{workload['metadata']['name']}: {variable}={path} is in no mounted volume")


def test_the_database_url_and_tokens_are_secret_references(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["production"]
    for workload, container in containers(docs):
        url = container_env(docs, container)["LEAFWATCH_DATABASE_URL"]
        assert url == {"secretKeyRef": {"name": "leafwatch-database", "key": "url"}}, workload
    api = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = container_env(docs, api)
    assert {"LEAFWATCH_ADMIN_TOKEN_FILE", "LEAFWATCH_METRICS_TOKEN_FILE"} <= set(env)


# ---- the API pods -----------------------------------------------------------------------------


def api(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = one(docs, "Deployment")
    assert deployment["metadata"]["name"] == "leafwatch"
    (container,) = pod_spec(deployment)["containers"]
    return deployment, container


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_api_is_probed_on_health_and_ready_at_its_port(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    _, container = api(docs)
    settings = settings_of(container_env(docs, container))
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == settings.port
    assert settings.metrics_port is not None, "the ServiceMonitor scrapes a port of its own"
    assert ports["metrics"] == settings.metrics_port
    # The kubelet and Prometheus reach the pod on its IP, never on its loopback.
    assert settings.host not in LOOPBACK
    assert (settings.metrics_host or settings.host) not in LOOPBACK
    expected = {"startupProbe": "/health", "livenessProbe": "/health", "readinessProbe": "/ready"}
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    # Liveness must not fail before readiness does: a slow database is not a dead process.
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["timeoutSeconds"] >= readiness["timeoutSeconds"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_deployment_rolls_without_losing_capacity_and_the_hpa_owns_scaling(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    deployment, _ = api(docs)
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] in (0, 1)
    surge = str(strategy["rollingUpdate"]["maxSurge"])
    assert (float(surge.removesuffix("%")) if surge.endswith("%") else int(surge)) > 0
    hpa = one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert deployment["spec"]["replicas"] == hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_service_selects_the_api_pods_only(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    deployment, container = api(docs)
    service = one(docs, "Service")
    # The alert rules and dashboards select job="leafwatch" (ServiceMonitor: see below).
    assert service["metadata"]["name"] == "leafwatch"
    selector = service["spec"]["selector"]
    for workload in workloads(docs):
        labels = pod_labels(workload)
        selected = all(labels.get(key) == value for key, value in selector.items())
        assert selected == (workload is deployment), workload["metadata"]["name"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels(deployment).items()
    names = {port["name"] for port in container["ports"]}
    assert {port["name"] for port in service["spec"]["ports"]} == {"http", "metrics"}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in names


# ---- every pod --------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_container_has_requests_and_limits(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    for workload, container in containers(rendered[variant]):
        resources = container.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            assert request, f"{workload['metadata']['name']}: no {resource} request"
            assert limit, f"{workload['metadata']['name']}: no {resource} limit"
            assert quantity(request) <= quantity(limit), f"{resource}: request above limit"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_pod_runs_unprivileged_on_a_read_only_root(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    for workload, container in containers(rendered[variant]):
        where = workload["metadata"]["name"]
        pod = pod_spec(workload)
        pod_context = pod.get("securityContext", {})
        context = {**pod_context, **container.get("securityContext", {})}
        assert context["runAsNonRoot"] is True, where
        assert context["runAsUser"] == image_user(), f"{where}: the Dockerfile's uid"
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["readOnlyRootFilesystem"] is True, where
        assert context["capabilities"] == {"drop": ["ALL"]}, where
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        # Service links would set LEAFWATCH_PORT=tcp://... from the Service named leafwatch.
        assert pod["enableServiceLinks"] is False, where
        for volume in pod.get("volumes", []):
            assert "hostPath" not in volume, where


def test_service_links_would_break_the_settings() -> None:
    """Why enableServiceLinks is false: the variable Kubernetes would set is not a port."""
    with pytest.raises(ValueError, match="port"):
        Settings.model_validate({"port": "tcp://10.0.0.1:8000"})


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_image_is_pinned_to_a_release(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for workload, container in containers(rendered[variant]):
        image = container["image"]
        name, _, tag = image.rpartition(":")
        assert name, f"{workload['metadata']['name']}: {image} has no tag"
        assert "/" not in tag, f"{workload['metadata']['name']}: {image} has no tag"
        assert tag != "latest"
        assert tag == version, f"{image}: the image the Dockerfile builds is {version}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_setting_is_real_and_valid(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    fields = {f"LEAFWATCH_{name.upper()}" for name in Settings.model_fields}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            unknown = set(doc.get("data", {})) - fields
            assert not unknown, f"not settings: {sorted(unknown)}"
    for workload, container in containers(docs):
        env = container_env(docs, container)
        unknown = {name for name in env if name.startswith("LEAFWATCH_")} - fields
        assert not unknown, f"{workload['metadata']['name']}: not settings: {sorted(unknown)}"
        settings_of(env)


def test_settings_in_comments_are_real_too() -> None:
    """A commented-out example is copied into a deployment one day: it must name a setting."""
    fields = {f"LEAFWATCH_{name.upper()}" for name in Settings.model_fields}
    commented = set()
    for path in K8S.rglob("*.env"):
        commented |= set(re.findall(r"^#\s*(LEAFWATCH_[A-Z0-9_]+)=", path.read_text(), re.M))
    assert commented, "the production overlay shows the S3 settings, commented out"
    assert commented <= fields, f"not settings: {sorted(commented - fields)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_directories_leafwatch_writes_are_writable_volumes(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    for workload, container in containers(docs):
        if workload["kind"] == "Job":
            continue  # migrations write nothing to disk; the slow test below shows it
        settings = settings_of(container_env(docs, container))
        places = {
            "var_dir": settings.var_dir,
            "spool": settings.resolved_spool_dir(),
            "images": settings.resolved_image_dir(),
            "models": settings.resolved_model_dir(),
            "metrics_dir": settings.resolved_metrics_dir(),
            "home": Path(image_home()),
            "working dir": Path(image_instruction("WORKDIR")),
        }
        if settings.log_file:
            places["log file"] = Path(settings.log_file).parent
        for what, path in places.items():
            where = f"{workload['metadata']['name']}: {what} {path}"
            assert path.is_absolute(), f"{where} depends on the working directory"
            assert writable_mount(workload, container, PurePosixPath(path)), (
                f"{where} is on the read-only root file system"
            )


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_jobs_run_commands_the_cli_has(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    entrypoint = image_entrypoint()
    assert entrypoint == ["leafwatch"]
    commands = {}
    for workload, container in containers(rendered[variant]):
        assert "command" not in container, "the image's entrypoint is `leafwatch`"
        commands[workload["kind"]] = container["args"]
        result = CliRunner().invoke(app, [*container["args"], "--help"])
        assert result.exit_code == 0, f"leafwatch {' '.join(container['args'])}: {result.output}"
    assert commands == {"Deployment": ["serve"], "Job": ["db", "upgrade"], "CronJob": ["drift"]}


@pytest.mark.parametrize("variant", VARIANTS)
def test_drift_runs_either_in_the_service_or_from_the_cronjob_never_both(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    cronjob = one(docs, "CronJob")
    _, container = api(docs)
    in_service = settings_of(container_env(docs, container)).drift_interval_seconds > 0
    scheduled = not cronjob["spec"].get("suspend", False)
    assert in_service != scheduled
    assert scheduled == (variant == "production-drift-cronjob")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"


def test_production_changes_what_a_production_deployment_needs(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    base, production = rendered["base"], rendered["production"]
    (base_deployment, base_api), (deployment, container) = api(base), api(production)
    assert deployment["spec"]["replicas"] > base_deployment["spec"]["replicas"]
    base_hpa, hpa = one(base, "HorizontalPodAutoscaler"), one(production, "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] > base_hpa["spec"]["minReplicas"]
    assert hpa["spec"]["maxReplicas"] > base_hpa["spec"]["maxReplicas"]
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert quantity(container["resources"][kind][resource]) >= quantity(
                base_api["resources"][kind][resource]
            ), f"{kind}.{resource}"
    assert quantity(container["resources"]["requests"]["cpu"]) > quantity(
        base_api["resources"]["requests"]["cpu"]
    )
    assert settings_of(container_env(production, container)).profile == "production"
    assert settings_of(container_env(base, base_api)).profile == "embedded"
    assert "/" in container["image"], "production pulls from a registry"
    namespace = one(production, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {
        doc["metadata"].get("namespace") for doc in production if doc["kind"] != "Namespace"
    } == {namespace["metadata"]["name"]}


# The PostgreSQL connections the API pods may hold at the HPA's maximum: a managed server's usual
# max_connections (200 and up) less room for the migration Job, the drift CronJob and people.
CONNECTION_BUDGET = 190


@pytest.mark.parametrize("variant", VARIANTS)
def test_the_pods_at_their_maximum_stay_within_the_database_connections(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    _deployment, container = api(docs)
    settings = settings_of(container_env(docs, container))
    per_process = settings.database_pool_size + settings.database_max_overflow
    most = one(docs, "HorizontalPodAutoscaler")["spec"]["maxReplicas"] * settings.workers
    assert most * per_process <= CONNECTION_BUDGET, (most, per_process)


# ---- Prometheus Operator resources ------------------------------------------------------------


@pytest.mark.parametrize("variant", ["production", "production-drift-cronjob"])
def test_the_service_monitor_scrapes_the_service_as_job_leafwatch(
    rendered: dict[str, list[dict[str, Any]]], variant: str
) -> None:
    docs = rendered[variant]
    monitor, service = one(docs, "ServiceMonitor"), one(docs, "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    labels = service["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    # The job label is the Service label jobLabel names, else the Service's name.
    job = labels[spec["jobLabel"]] if "jobLabel" in spec else service["metadata"]["name"]
    assert job == "leafwatch", 'deploy/prometheus/rules select job="leafwatch"'
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert re.fullmatch(r"\d+s", endpoint["interval"])
    # LeafWatch asks for a token on /metrics: Prometheus must send the same Secret's key.
    _, container = api(docs)
    env = container_env(docs, container)
    assert "LEAFWATCH_METRICS_TOKEN_FILE" in env
    credentials = endpoint["authorization"]["credentials"]
    assert endpoint["authorization"]["type"] == "Bearer"
    deployment = one(docs, "Deployment")
    path = PurePosixPath(env["LEAFWATCH_METRICS_TOKEN_FILE"])
    (mount,) = [m for m in mounts(deployment, container) if path.is_relative_to(m.path)]
    projected = [
        (source["secret"]["name"], item["key"])
        for source in mount.volume["projected"]["sources"]
        for item in source["secret"]["items"]
        if item["path"] == str(path.relative_to(mount.path))
    ]
    assert projected == [(credentials["name"], credentials["key"])]


def test_the_committed_prometheus_rules_are_the_rule_files_today() -> None:
    files = kubernetes_rule_files(RULES_DIR)
    expected = render_prometheus_rules(files, source_dir="deploy/prometheus/rules")
    assert PROMETHEUS_RULES.read_text() == expected, (
        "deploy/prometheus/rules changed: run `leafwatch stack prometheus-rules --output "
        f"{PROMETHEUS_RULES.relative_to(ROOT)}` (docs/kubernetes.md)"
    )
    # Read back, not just compared as text: each file's groups, whole and in order.
    committed = [doc for doc in yaml.safe_load_all(PROMETHEUS_RULES.read_text()) if doc]
    assert [doc["spec"]["groups"] for doc in committed] == [
        yaml.safe_load(path.read_text())["groups"] for path in files
    ]
    every = {path.name for path in RULES_DIR.glob("*.yml")}
    assert {path.name for path in files} == every - EXCLUDED_RULE_FILES
    assert every >= EXCLUDED_RULE_FILES


def test_the_rules_left_out_are_about_nodes_only() -> None:
    """host.yml stays out of the cluster: it must hold node-exporter alerts and nothing else."""
    for name in EXCLUDED_RULE_FILES:
        for group in yaml.safe_load((RULES_DIR / name).read_text())["groups"]:
            for rule in group["rules"]:
                metrics: set[str] = set()

                def collect(node: promql_parser.Expr, found: set[str] = metrics) -> None:
                    if isinstance(node, promql_parser.VectorSelector):
                        found.add(str(node.name))

                promql_parser.walk(promql_parser.parse(rule["expr"]), collect)
                assert metrics, rule
                assert all(m.startswith("node_") for m in metrics), (rule.get("alert"), metrics)


def test_the_rendered_prometheus_rules_pass_promtool(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs it (Debian package prometheus)"
    rules = [doc for doc in rendered["production"] if doc["kind"] == "PrometheusRule"]
    assert {doc["metadata"]["name"] for doc in rules} == {
        f"leafwatch-{path.stem.removeprefix('leafwatch-')}"
        for path in kubernetes_rule_files(RULES_DIR)
    }
    files = []
    for doc in rules:
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
        assert set(doc["spec"]) == {"groups"}
        path = tmp_path / f"{doc['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump({"groups": doc["spec"]["groups"]}))
        files.append(str(path))
    result = subprocess.run(
        [promtool, "check", "rules", *files], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {
        rule["alert"]
        for doc in rules
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert {"APIDown", "HighErrorRate", "ModelNotLoaded", "SpoolNotDraining"} <= alerts


# ---- the pods' commands, run for real ---------------------------------------------------------

# Always writable in a container: devices (/dev/null, /dev/shm) and the process's own files.
ALWAYS_WRITABLE = (PurePosixPath("/dev"), PurePosixPath("/proc"))
WRITE_SYSCALLS = (
    "open,openat,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat,rmdir,"
    "symlink,symlinkat,link,linkat,truncate"
)
WRITE_FLAGS = re.compile(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC")
TRACED_CALL = re.compile(r"^(?:\d+\s+)?(\w+)\((.*)")
# A path argument, after its directory descriptor in the *at calls (-y prints the descriptor's
# path: `3</dir>`, `AT_FDCWD</cwd>`); a relative one without is relative to the working directory.
PATH_ARGUMENT = re.compile(r'(?:(?:-?\d+|AT_FDCWD)(?:<([^>]*)>)?, )?"((?:[^"\\]|\\.)*)"')


@dataclass
class Pod:
    """A workload's container run on this machine: its file system mapped to directories here."""

    workload: dict[str, Any]
    container: dict[str, Any]
    mapping: dict[PurePosixPath, Path]  # mount path -> directory here
    writable: list[Path]
    rootfs: Path  # the image's read-only root: whatever no volume covers lands here

    def here(self, path: str) -> Path:
        """The path on this machine for a path inside the container."""
        inside = PurePosixPath(path)
        for mount, directory in self.mapping.items():
            if inside.is_relative_to(mount):
                return directory / inside.relative_to(mount)
        return self.rootfs / inside.relative_to("/")

    @property
    def workdir(self) -> Path:
        return self.here(image_instruction("WORKDIR"))


def pod(
    docs: list[dict[str, Any]],
    kind: str,
    root: Path,
    *,
    database_url: str,
    secret_values: dict[tuple[str, str], str],
) -> tuple[Pod, dict[str, str]]:
    """The workload's container mapped under `root`, and the variables it would start with."""
    workload = one(docs, kind)
    (container,) = pod_spec(workload)["containers"]
    result = Pod(workload, container, {}, [], root / kind.lower() / "rootfs")
    for index, mount in enumerate(mounts(workload, container)):
        directory = root / kind.lower() / f"{index}-{mount.volume['name']}"
        directory.mkdir(parents=True)
        result.mapping[PurePosixPath(mount.path)] = directory
        if not mount.read_only:
            result.writable.append(directory)
            continue
        for source in mount.volume["projected"]["sources"]:
            for item in source["secret"]["items"]:
                value = secret_values[(source["secret"]["name"], item["key"])]
                (directory / item["path"]).write_text(value)
    # Directories the image has, read-only unless a volume covers them.
    for directory in (image_instruction("WORKDIR"), image_home(), "/tmp"):
        result.here(directory).mkdir(parents=True, exist_ok=True)
    env = {}
    for name, value in container_env(docs, container).items():
        if isinstance(value, dict):
            ref = value["secretKeyRef"]
            key = (ref["name"], ref["key"])
            value = database_url if ref["name"] == "leafwatch-database" else secret_values[key]
        elif name.startswith("LEAFWATCH_") and value.startswith("/"):
            value = str(result.here(value))
        env[name] = value
    env["HOME"] = str(result.here(image_home()))
    env["TMPDIR"] = str(result.here("/tmp"))
    return result, env


def traced(trace: Path, args: list[str]) -> list[str]:
    """`leafwatch ARGS` under strace: every process followed, the calls that write recorded."""
    return [
        "strace", "-f", "-qq", "--seccomp-bpf", "-y", "-e", f"trace={WRITE_SYSCALLS}",
        "-o", str(trace), sys.executable, "-m", "leafwatch", *args,
    ]  # fmt: skip


def run_env(pod_env: dict[str, str], **overrides: str) -> dict[str, str]:
    """The pod's variables, on top of this machine's non-LeafWatch ones (PATH and so on)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LEAFWATCH_", "PROMETHEUS_MULTIPROC"))
    }
    return {**env, **pod_env, **overrides}


def written_paths(trace: Path, cwd: Path) -> set[Path]:
    """The paths the traced processes opened for writing, created, renamed or removed."""
    paths = set()
    for line in trace.read_text().splitlines():
        call = TRACED_CALL.match(line)
        if not call:
            continue  # signals, exits, resumed calls
        name, arguments = call.groups()
        if name in {"open", "openat"} and not WRITE_FLAGS.search(arguments):
            continue
        for directory, path in PATH_ARGUMENT.findall(arguments):
            base = Path(directory) if directory else cwd
            paths.add(Path(os.path.normpath(base / path)))
    return paths


def assert_writes_inside(trace: Path, pod_: Pod) -> set[Path]:
    """Every path written lies in a writable volume (or /dev, /proc); returns them."""
    written = written_paths(trace, pod_.workdir)
    allowed = [*pod_.writable, *map(Path, ALWAYS_WRITABLE)]
    outside = {path for path in written if not any(path.is_relative_to(place) for place in allowed)}
    kind = pod_.workload["kind"]
    assert not outside, f"{kind} writes outside its writable volumes: {sorted(outside)[:10]}"
    return written


def run_traced(
    trace: Path, pod_: Pod, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        traced(trace, list(args)),
        env=run_env(env),
        cwd=pod_.workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"leafwatch {' '.join(args)}: {result.stdout}{result.stderr}"
    assert_writes_inside(trace, pod_)
    return result


@pytest.mark.slow
def test_the_pods_commands_run_with_their_environment_and_write_only_to_their_volumes(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path, postgres_database: str
) -> None:
    """The production pods' commands, run as rendered: migrate, serve under traffic, drift.

    What a container would give them is mapped here: each mount to a directory of its own
    (Secret keys written as files), the Secret references to values made for the test, and the
    ports to free ones on 127.0.0.1. strace records every file they write; a read-only root file
    system refuses anything outside the writable volumes, so nothing may land there.
    """
    if shutil.which("strace") is None:
        pytest.fail("strace is missing: `make tools` installs it (Debian package strace)")
    docs = rendered["production-drift-cronjob"]
    values = {
        ("leafwatch-admin-token", "token"): secrets.token_hex(16),
        ("leafwatch-metrics-token", "token"): secrets.token_hex(16),
    }
    (migrate, migrate_env), (serve, serve_env), (drift, drift_env) = (
        pod(docs, kind, tmp_path, database_url=postgres_database, secret_values=values)
        for kind in ("Job", "Deployment", "CronJob")
    )
    _reset_postgres(postgres_database)  # a schema other tests left could hide the Job's work

    # The migration Job, then an API key made in the API container (`kubectl exec`).
    run_traced(tmp_path / "migrate.trace", migrate, migrate_env, *migrate.container["args"])
    created = run_traced(tmp_path / "keys.trace", serve, serve_env, "keys", "create", "k8s")
    key = created.stdout.strip().splitlines()[-1]

    port, metrics_port = free_port(), free_port()
    env = run_env(
        serve_env,
        LEAFWATCH_HOST="127.0.0.1",
        LEAFWATCH_PORT=str(port),
        LEAFWATCH_METRICS_PORT=str(metrics_port),
    )
    url = f"http://127.0.0.1:{port}"
    with running(
        traced(tmp_path / "serve.trace", serve.container["args"]),
        ready_url=f"{url}{serve.container['readinessProbe']['httpGet']['path']}",
        log=tmp_path / "serve.log",
        env=env,
        cwd=serve.workdir,
        timeout=180,
    ) as process:
        # strace's child is the server: signals go to it, as the kubelet's would (a signal to
        # strace would detach it and leave the server running).
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
        (server,) = map(int, children.split())
        try:
            exercise(serve, url, metrics_port, key=key, values=values)
        finally:
            os.kill(server, signal.SIGTERM)
            # strace exits with its child's status once the server and its workers have.
            assert process.wait(timeout=60) == 0
    assert '"event"' in (tmp_path / "serve.log").read_text(), "JSON lines on stdout"
    written = assert_writes_inside(tmp_path / "serve.trace", serve)
    # The trace saw the writes that had to happen: the image stored, the workers' metrics files.
    settings = settings_of(container_env(docs, serve.container))
    for directory in (settings.resolved_image_dir(), settings.resolved_metrics_dir()):
        here = serve.here(str(directory))
        assert any(path.is_relative_to(here) and path != here for path in written), directory

    ran = run_traced(tmp_path / "drift.trace", drift, drift_env, *drift.container["args"])
    assert "not_enough_data" in ran.stdout, ran.stdout


def exercise(
    serve: Pod, url: str, metrics_port: int, *, key: str, values: dict[tuple[str, str], str]
) -> None:
    """Probes, a prediction, a scrape with and without the token, and an admin call."""
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        path = serve.container[probe]["httpGet"]["path"]
        assert httpx.get(f"{url}{path}", timeout=10).status_code == 200, probe
    with (ROOT / "examples" / "leaf.jpg").open("rb") as image:
        answer = httpx.post(
            f"{url}/api/v1/predict",
            files={"file": ("leaf.jpg", image, "image/jpeg")},
            data={"user_id": "farmer-1"},
            headers={"X-API-Key": key},
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    metrics = f"http://127.0.0.1:{metrics_port}/metrics"
    assert httpx.get(metrics, timeout=10).status_code == 401
    token = values[("leafwatch-metrics-token", "token")]
    scraped = httpx.get(metrics, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert scraped.status_code == 200
    assert "api_requests_total" in scraped.text
    assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404, "not on the API port"
    admin = values[("leafwatch-admin-token", "token")]
    reload = httpx.post(
        f"{url}/api/v1/admin/model/reload",
        headers={"Authorization": f"Bearer {admin}"},
        timeout=30,
    )
    assert reload.status_code == 200, reload.text
