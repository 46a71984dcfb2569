"""The production stack (Dockerfile, deploy/docker-compose.yml) holds together, checked offline.

No Docker engine runs on the machines that test LeafWatch, so the compose file is never started
here. These tests read it the way Compose would and check what can be checked without an engine:
pinned images, health checks, secrets, mounts, settings, and the links to the files beside it.
The wheel the image installs is built for real, and so is the log rotation it runs.
"""

import json
import logging.handlers
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from fnmatch import fnmatch
from functools import cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml

from leafwatch.config import Settings
from leafwatch.stack import free_port
from tests.servers import leafwatch_serve, listening_addresses

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOC = ROOT / "docs" / "deploy.md"

SERVICES = {
    "postgres",
    "leafwatch-migrate",
    "leafwatch",
    "leafwatch-logrotate",
    "prometheus",
    "victoriametrics",
    "alertmanager",
    "grafana",
    "loki",
    "alloy",
    "jaeger",
    "node-exporter",
}
SECRET_NAME = re.compile(
    r"(?i)password|passwd|secret|token|api_?key|routing_?key|webhook|credential"
)
# Gone in Prometheus 3.0 (its migration guide and changelog): the Debian 2.x binary still
# knows them, the pinned v3 image refuses to start with them.
PROMETHEUS_3_REMOVED_FLAGS = {
    "storage.tsdb.retention",
    "storage.tsdb.allow-overlapping-blocks",
    "alertmanager.timeout",
}
PROMETHEUS_3_REMOVED_FEATURES = {
    "promql-at-modifier",
    "promql-negative-offset",
    "remote-write-receiver",
    "new-service-discovery-manager",
    "expand-external-labels",
    "no-default-scrape-port",
    "agent",
    "auto-gomemlimit",
}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def interpolate(value: str) -> str:
    """The value as Compose would see it with no variable set: defaults, or <NAME> if required."""

    def replace(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if operator and operator.endswith("-"):
            return argument
        return f"<{name}>"

    return VARIABLE.sub(replace, value)


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(host path, container path, read-only) of the service's bind mounts; volumes left out."""
    mounts = []
    for entry in service.get("volumes", []):
        source, target, *mode = interpolate(entry).split(":")
        if source.startswith((".", "/", "<")):
            mounts.append((source, target, "ro" in ",".join(mode).split(",")))
    return mounts


def uses_leafwatch_image(service: dict[str, Any]) -> bool:
    return str(service.get("image", "")).startswith("leafwatch:")


def service_block(name: str) -> str:
    """The service's lines in the compose file, comments included (YAML drops them)."""
    text = COMPOSE.read_text()
    start = re.search(rf"^  {re.escape(name)}:\n", text, re.M)
    assert start, f"no service {name} in {COMPOSE}"
    end = re.search(r"^(  \S|\S)", text[start.end() :], re.M)
    return text[start.end() : start.end() + end.start() if end else None]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    lines = [
        line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in joined.splitlines()
        if line.strip()
    ]


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


# ---- the compose file ------------------------------------------------------------------------


def test_the_compose_file_parses_and_runs_the_whole_stack() -> None:
    assert compose()["name"] == "leafwatch"
    assert set(services()) == SERVICES
    for name, service in services().items():
        assert "container_name" not in service, f"{name}: a fixed name prevents scaling"


def test_every_image_is_pinned_to_a_release() -> None:
    for name, service in services().items():
        image = service["image"]
        assert "${" not in image, f"{name}: {image} is chosen at run time"
        assert ":" in image, f"{name}: {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest", f"{name}: {image}"
        assert re.fullmatch(r"v?\d+\.\d+(\.\d+)?([-.][a-z0-9.]+)?", tag), f"{name}: {image}"
        if "build" in service:
            # The image compose builds is tagged with the version of the package inside it.
            assert image == f"leafwatch:{project_version()}", name


def test_images_match_the_versions_the_logs_and_traces_setup_was_written_for() -> None:
    documented = dict(
        re.findall(
            r"`((?:grafana|jaegertracing)/[a-z]+):([^`]+)`",
            (DEPLOY / "logs-and-traces.md").read_text(),
        )
    )
    used = dict(service["image"].rsplit(":", 1) for service in services().values())
    for repository, tag in documented.items():
        assert used.get(repository) == tag, repository


def test_every_service_has_a_healthcheck_or_says_why_not() -> None:
    for name, service in services().items():
        check = service.get("healthcheck")
        if check and not check.get("disable"):
            test = check["test"]
            assert test[0] in {"CMD", "CMD-SHELL"}, name
            assert len(test) > 1, name
            continue
        comments = " ".join(re.findall(r"#\s*(.*)", service_block(name)))
        assert re.search(r"(?i)check|server", comments), f"{name}: no healthcheck and no reason"


def test_leafwatch_is_checked_for_readiness_and_its_image_for_liveness() -> None:
    test = " ".join(services()["leafwatch"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/ready" in test
    [(_, healthcheck)] = [(i, a) for i, a in dockerfile_instructions() if i == "HEALTHCHECK"]
    assert "http://127.0.0.1:8000/health" in healthcheck


def test_services_wait_for_what_they_need() -> None:
    for name, service in services().items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            assert isinstance(rule, dict), f"{name}: depends_on {dependency} needs a condition"
            other = services()[dependency]
            condition = rule["condition"]
            if condition == "service_healthy":
                assert not other.get("healthcheck", {}).get("disable"), (name, dependency)
                assert "healthcheck" in other, (name, dependency)
            elif condition == "service_completed_successfully":
                assert other.get("restart") == "no", f"{dependency} is not a one-shot job"
            else:
                assert condition == "service_started", (name, dependency)
    leafwatch = services()["leafwatch"]["depends_on"]
    assert leafwatch["postgres"]["condition"] == "service_healthy"
    assert leafwatch["leafwatch-migrate"]["condition"] == "service_completed_successfully"
    assert services()["leafwatch-migrate"]["command"] == ["db", "upgrade"]


def test_every_long_running_service_restarts_and_keeps_its_logs_bounded() -> None:
    for name, service in services().items():
        if name == "leafwatch-migrate":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["logging"]["options"]["max-size"], name


def test_leafwatch_runs_two_workers_on_postgresql_with_migrations_left_to_the_job() -> None:
    env = environment(services()["leafwatch"])
    assert env["LEAFWATCH_WORKERS"] == "2"
    assert env["LEAFWATCH_DATABASE_URL"].startswith("postgresql+psycopg://leafwatch:")
    assert interpolate(env["LEAFWATCH_DATABASE_URL"]).endswith("@postgres:5432/leafwatch")
    assert env["LEAFWATCH_MIGRATE_ON_START"] == "false"
    assert env["LEAFWATCH_FAULTS_ENABLED"] == "false"
    # Shared with the replicas' volumes, the metrics directory would be emptied by each start.
    metrics_dir = PurePosixPath(env["LEAFWATCH_METRICS_DIR"])
    assert any(metrics_dir.is_relative_to(path) for path in services()["leafwatch"]["tmpfs"])


def test_leafwatch_environment_names_are_real_settings() -> None:
    known = {f"LEAFWATCH_{name.upper()}" for name in Settings.model_fields}
    used = {
        name
        for service in services().values()
        if uses_leafwatch_image(service)
        for name in environment(service)
        if name.startswith("LEAFWATCH_")
    }
    for instruction, arguments in dockerfile_instructions():
        if instruction == "ENV":
            used |= set(re.findall(r"\b(LEAFWATCH_[A-Z_]+)=", arguments))
    assert used, "no LEAFWATCH_ setting found"
    assert used <= known, f"not settings: {sorted(used - known)}"


def test_no_secret_is_written_in_the_compose_file() -> None:
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and key.endswith("_FILE"):  # mounted from SECRETS_DIR
                assert value.startswith(("/run/secrets/", "/etc/alertmanager/secrets/")), key
            elif SECRET_NAME.search(key):
                assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), f"{name}: {key} is literal"
            # A password inside a URL must come from a required variable too.
            masked = VARIABLE.sub(lambda m: "<required>" if "?" in (m[2] or "") else "<x>", value)
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", masked):
                assert password == "<required>", f"{name}: {key} has a literal password"
    for name, secret in compose()["secrets"].items():
        assert secret["file"].startswith("${SECRETS_DIR:?"), name


def test_grafana_needs_an_admin_password_from_a_secret_and_allows_no_anonymous_access() -> None:
    grafana = services()["grafana"]
    env = environment(grafana)
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    target = env["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert target == f"/run/secrets/{target.rsplit('/', 1)[1]}"
    assert target.rsplit("/", 1)[1] in grafana["secrets"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert env["GF_USERS_ALLOW_SIGN_UP"] == "false"


def test_only_grafana_and_leafwatch_publish_ports_and_on_localhost_by_default() -> None:
    published = {
        name: service["ports"] for name, service in services().items() if "ports" in service
    }
    assert set(published) == {"grafana", "leafwatch"}
    for name, ports in published.items():
        for port in ports:
            assert interpolate(port).startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_variables_are_the_ones_the_env_example_lists() -> None:
    used = {name for name, _, _ in VARIABLE.findall(COMPOSE.read_text())}
    required = {
        name for name, operator, _ in VARIABLE.findall(COMPOSE.read_text()) if "?" in operator
    }
    example = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            example[name.strip()] = value.strip()
    assert set(example) == used
    assert required == {"POSTGRES_PASSWORD", "SECRETS_DIR"}
    for name, value in example.items():
        if name in required or SECRET_NAME.search(name):
            assert value == "", f"{name} has a value in {ENV_EXAMPLE.name}"


def test_mounted_repository_paths_exist() -> None:
    mounted = set()
    for name, service in services().items():
        for source, _target, read_only in bind_mounts(service):
            if source.startswith("."):
                path = (DEPLOY / source).resolve()
                assert path.is_relative_to(ROOT), f"{name}: {source} leaves the repository"
                assert path.exists(), f"{name}: {source} does not exist"
                assert read_only, f"{name}: {source} should be mounted read-only"
                mounted.add(path.relative_to(DEPLOY).as_posix())
            elif source.startswith("<"):
                assert source.startswith("<SECRETS_DIR>"), f"{name}: {source}"
                assert read_only, f"{name}: {source}"
            else:
                assert read_only, f"{name}: the host's {source} must be read-only"
    assert {
        "prometheus",
        "alertmanager/alertmanager.yml",
        "alertmanager/templates",
        "grafana/provisioning",
        "grafana/dashboards",
        "loki",
        "alloy",
    } <= mounted


def test_no_mount_needs_a_mount_point_inside_a_read_only_mount() -> None:
    # Docker cannot create the mount point of /a/b inside a read-only mount of /a.
    for name, service in services().items():
        mounts = bind_mounts(service)
        for source, target, read_only in mounts:
            if not read_only or not source.startswith("."):
                continue
            for _, inner, _ in mounts:
                inside = PurePosixPath(inner)
                if inner != target and inside.is_relative_to(target):
                    missing = DEPLOY / source / inside.relative_to(target)
                    assert missing.exists(), f"{name}: {inner} is nested in read-only {target}"


# ---- links to the configuration beside it ---------------------------------------------------


def test_leafwatch_writes_the_log_file_alloy_reads() -> None:
    alloy_config = (DEPLOY / "alloy" / "config.alloy").read_text()
    [default] = re.findall(
        r'coalesce\(sys\.env\("LEAFWATCH_LOG_FILE"\),\s*"([^"]+)"\)', alloy_config
    )
    log_file = environment(services()["leafwatch"])["LEAFWATCH_LOG_FILE"]
    assert environment(services()["alloy"]).get("LEAFWATCH_LOG_FILE", default) == log_file
    directory = str(PurePosixPath(log_file).parent)
    for name in ("leafwatch", "leafwatch-logrotate", "alloy"):
        volumes = [v for v in services()[name]["volumes"] if v.split(":")[1] == directory]
        assert [v.split(":")[0] for v in volumes] == ["leafwatch-logs"], name
    assert "leafwatch-logs:/var/log/leafwatch:ro" in services()["alloy"]["volumes"]
    logrotate = compose()["configs"]["leafwatch-logrotate"]["content"]
    assert logrotate.lstrip().startswith(f"{log_file} {{")


def hosts(urls: list[str]) -> set[str]:
    return {re.sub(r"^\w+://", "", url).split("/")[0].split(":")[0] for url in urls}


def test_grafana_datasources_reach_services_of_the_stack() -> None:
    config = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    assert hosts([source["url"] for source in config["datasources"]]) <= set(services())


def test_grafana_loads_dashboards_from_where_they_are_mounted() -> None:
    [(_, target, _)] = [
        m for m in bind_mounts(services()["grafana"]) if m[0] == "./grafana/dashboards"
    ]
    providers = [
        provider
        for path in sorted((DEPLOY / "grafana/provisioning/dashboards").glob("*.y*ml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert providers, "no dashboard provider in grafana/provisioning/dashboards"
    for provider in providers:
        assert PurePosixPath(provider["options"]["path"]).is_relative_to(target), provider["name"]
    assert list((DEPLOY / "grafana/dashboards").glob("*.json")), "no dashboard to load"


def test_prometheus_scrapes_services_of_the_stack_and_finds_its_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    targets += [
        target
        for group in config["alerting"]["alertmanagers"]
        for static in group["static_configs"]
        for target in static["targets"]
    ]
    names = [
        name
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    ]
    assert "leafwatch" in names  # every replica, through the service's DNS name
    assert hosts(targets + names) - {"localhost"} <= set(services())
    command = services()["prometheus"]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert "./prometheus:/etc/prometheus:ro" in services()["prometheus"]["volumes"]
    for pattern in config["rule_files"]:
        assert list((DEPLOY / "prometheus").glob(pattern)), f"no rule file matches {pattern}"


def compose_settings() -> Settings:
    """The Settings LeafWatch's compose service builds, required variables as placeholders."""
    env = environment(services()["leafwatch"])
    return Settings.model_validate(
        {
            name.removeprefix("LEAFWATCH_").lower(): interpolate(value)
            for name, value in env.items()
            if name.startswith("LEAFWATCH_")
        }
    )


def image_serve_options() -> dict[str, str]:
    """The options of the image's `serve` command (its CMD; the compose service keeps it)."""
    assert "command" not in services()["leafwatch"], "the service runs the image's CMD"
    [command] = [json.loads(a) for i, a in dockerfile_instructions() if i == "CMD"]
    assert command[0] == "serve", command
    return dict(zip(command[1::2], command[2::2], strict=True))


def container_ports(service: dict[str, Any]) -> set[int]:
    """The container ports a service publishes on the host, ranges expanded."""
    ports = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):  # the long syntax
            target = str(entry["target"])
        else:
            target = interpolate(str(entry)).rsplit(":", 1)[-1].split("/")[0]
        first, _, last = target.partition("-")
        ports |= set(range(int(first), int(last or first) + 1))
    return ports


def test_prometheus_scrapes_the_metrics_port_leafwatch_serves_which_is_not_published() -> None:
    settings = compose_settings()
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    [job] = [job for job in config["scrape_configs"] if job["job_name"] == "leafwatch"]
    [discovery] = job["dns_sd_configs"]
    assert settings.metrics_port is not None, "/metrics would be served on the published API port"
    assert discovery["port"] == settings.metrics_port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    api_port = int(image_serve_options()["--port"])
    assert api_port != settings.metrics_port
    published = container_ports(services()["leafwatch"])
    assert api_port in published
    assert settings.metrics_port not in published, "only Prometheus, inside the stack, needs it"
    # The metrics port binds to the settings' host, not to the command's --host (app.py): on a
    # loopback address Prometheus, in a container of its own, could not reach it.
    assert (settings.metrics_host or settings.host) in {"0.0.0.0", "::"}


@pytest.mark.slow
def test_the_image_command_with_the_compose_settings_serves_metrics_to_other_containers(
    tmp_path: Path,
) -> None:
    """`serve` as the image runs it, with the compose service's metrics settings, for real.

    Free ports stand in for 8000 and 8001, which other tests on this machine may hold.
    """
    env = environment(services()["leafwatch"])
    metrics_port = free_port()
    settings = {
        "LEAFWATCH_METRICS_PORT": str(metrics_port),
        "LEAFWATCH_METRICS_HOST": env["LEAFWATCH_METRICS_HOST"],
        "LEAFWATCH_WORKERS": env["LEAFWATCH_WORKERS"],
    }
    host = image_serve_options()["--host"]
    with leafwatch_serve(tmp_path, "--host", host, env=settings) as (url, _process):
        # Every interface, as the API port: Prometheus comes from another container's address.
        assert listening_addresses(metrics_port) in ({"0.0.0.0"}, {"::"})
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10)
        assert scraped.status_code == 200
        assert "api_requests_total" in scraped.text
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 404, "not on the API port"
        for probe in ("/health", "/ready"):  # the healthchecks stay on the API port
            assert httpx.get(f"{url}{probe}", timeout=10).status_code == 200, probe


def test_prometheus_keeps_exemplars() -> None:
    assert "--enable-feature=exemplar-storage" in services()["prometheus"]["command"]


@pytest.mark.parametrize(
    ("service", "binary"),
    [("prometheus", "prometheus"), ("alertmanager", "prometheus-alertmanager")],
)
def test_command_line_flags_exist(service: str, binary: str) -> None:
    # The Debian binaries (make tools installs them) are older than the pinned images: a flag
    # they know and that the newer major version did not remove is one the image accepts.
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed (make tools installs it)")
    result = subprocess.run(
        [binary, "--help"], capture_output=True, text=True, check=False, timeout=30
    )
    known = set(re.findall(r"--([a-z][a-z0-9.-]+)", result.stdout + result.stderr))
    for argument in services()[service]["command"]:
        flag, _, value = argument.removeprefix("--").partition("=")
        assert flag in known, f"{service}: {binary} has no --{flag}"
        assert flag not in PROMETHEUS_3_REMOVED_FLAGS, f"{service}: Prometheus 3 removed --{flag}"
        if flag == "enable-feature":
            features = set(value.split(","))
            assert not features & PROMETHEUS_3_REMOVED_FEATURES, f"{service}: {value}"


def test_prometheus_writes_to_the_victoriametrics_grafana_reads() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    [write] = config["remote_write"]
    assert write["url"] == "http://victoriametrics:8428/api/v1/write"
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    [source] = [s for s in sources["datasources"] if s["uid"] == "victoriametrics"]
    assert source["type"] == "prometheus"  # VictoriaMetrics answers Prometheus's query API
    assert source["url"] == "http://victoriametrics:8428"
    assert "victoriametrics" in services()["grafana"]["depends_on"]


def test_victoriametrics_keeps_its_data_in_a_volume_for_a_set_retention() -> None:
    service = services()["victoriametrics"]
    flags = dict(argument.removeprefix("-").split("=", 1) for argument in service["command"])
    assert flags["httpListenAddr"] == ":8428"
    assert re.fullmatch(r"\d+[hdwy]?", interpolate(flags["retentionPeriod"])), flags
    assert f"victoriametrics-data:{flags['storageDataPath']}" in service["volumes"]
    # The Debian binary the tests run is the pinned image's version: the flags are known to it.
    binary = shutil.which("victoria-metrics")
    if binary is None:
        pytest.fail("victoria-metrics is not installed (make tools installs it)")
    result = subprocess.run(
        [binary, "-help"], capture_output=True, text=True, check=False, timeout=30
    )
    known = set(re.findall(r"^  -([A-Za-z][\w.]*)", result.stdout + result.stderr, re.M))
    assert set(flags) <= known, set(flags) - known


def test_alertmanager_reads_its_secrets_from_the_mounted_secrets_directory() -> None:
    config = (DEPLOY / "alertmanager/alertmanager.yml").read_text()
    files = re.findall(r"_file:\s*(\S+)", config)
    assert files, "alertmanager.yml reads no secret file"
    volumes = [interpolate(v) for v in services()["alertmanager"]["volumes"]]
    assert "<SECRETS_DIR>/alertmanager:/etc/alertmanager/secrets:ro" in volumes
    credentials = environment(services()["alertmanager"])["AWS_SHARED_CREDENTIALS_FILE"]
    documented = DOC.read_text()
    for path in [*files, credentials]:
        assert path.startswith("/etc/alertmanager/secrets/"), path
        assert PurePosixPath(path).name in documented, f"docs/deploy.md does not name {path}"
    for pattern in yaml.safe_load(config)["templates"]:
        assert list((DEPLOY / "alertmanager").glob(pattern)), pattern


def test_the_documentation_names_every_secret_and_required_variable() -> None:
    documented = DOC.read_text()
    for name in compose()["secrets"]:
        assert name in documented, name
    for name in ("POSTGRES_PASSWORD", "SECRETS_DIR", "leafwatch stack up", "make stack"):
        assert name in documented, name
    assert "docker compose" in documented
    assert "--env-file" in documented


# ---- the Dockerfile and its build context ----------------------------------------------------


def test_the_base_image_is_a_pinned_python_3_11_slim() -> None:
    instructions = dockerfile_instructions()
    [base] = [
        a.split("=", 1)[1] for i, a in instructions if i == "ARG" and a.startswith("PYTHON_IMAGE=")
    ]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", base), base
    stages = [a for i, a in instructions if i == "FROM"]
    assert stages == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]


def test_the_image_runs_leafwatch_as_an_unprivileged_user() -> None:
    instructions = dockerfile_instructions()
    runtime = instructions[[i for i, (name, _) in enumerate(instructions) if name == "FROM"][-1] :]
    users = [a for i, a in runtime if i == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]
    assert re.search(rf"--uid {user}\b", " ".join(a for i, a in runtime if i == "RUN"))
    [entrypoint] = [a for i, a in runtime if i == "ENTRYPOINT"]
    [command] = [a for i, a in runtime if i == "CMD"]
    assert entrypoint == '["leafwatch"]'
    assert command == '["serve", "--host", "0.0.0.0", "--port", "8000"]'
    volumes = " ".join(a for i, a in runtime if i == "VOLUME")
    assert "/var/lib/leafwatch" in volumes
    assert "/var/log/leafwatch" in volumes


def build_context(destination: Path) -> list[str]:
    """Copy the files .dockerignore lets into the build context; return their paths."""
    rules = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # The subset of .dockerignore syntax this file uses: *, a trailing /, !, and **/ prefixes.
    assert all(re.fullmatch(r"!?(\*\*/)?[\w.*-]+(/[\w.*-]+)*/?", rule) for rule in rules), rules

    def excluded(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for rule in rules:
            pattern = rule.lstrip("!").rstrip("/")
            if pattern.startswith("**/"):
                hit = any(fnmatch(part, pattern[3:]) for part in parts)
            else:
                hit = any(fnmatch(prefix, pattern) for prefix in prefixes)
            if hit:
                verdict = not rule.startswith("!")
        return verdict

    copied = []
    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith((".git/", ".venv/")) or not path.is_file() or excluded(relative):
            continue
        (destination / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, destination / relative)
        copied.append(relative)
    return copied


def setuptools_builds_the_project() -> bool:
    """Whether this environment's setuptools meets pyproject's build requirement."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    [minimum] = [int(m[1]) for r in requires if (m := re.fullmatch(r"setuptools>=(\d+)", r))]
    try:
        return int(metadata.version("setuptools").split(".")[0]) >= minimum
    except metadata.PackageNotFoundError:
        return False


def test_the_build_context_holds_the_package_and_nothing_private() -> None:
    copies = [a.split() for i, a in dockerfile_instructions() if i == "COPY" and "--from" not in a]
    sources = {source for *sources, _ in copies for source in sources}
    assert sources == {"pyproject.toml", "README.md", "src"}


def test_the_build_stage_makes_a_wheel_with_the_bundled_model_and_migrations(
    tmp_path: Path,
) -> None:
    context = tmp_path / "context"
    files = build_context(context)
    assert "pyproject.toml" in files
    assert "README.md" in files
    assert not [
        f
        for f in files
        if f.startswith(("deploy/", "tests/", "var/", "logs/")) or "__pycache__" in f
    ]
    assert not [f for f in files if ".egg-info/" in f]
    # What `pip wheel .` does in the build stage. The test environment's setuptools (torch
    # needs it) spares the download of an isolated build environment when it is recent enough.
    isolation = ["--no-build-isolation"] if setuptools_builds_the_project() else []
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *isolation,
            "-w",
            str(wheels),
            str(context),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [wheel] = wheels.glob("leafwatch-*.whl")
    assert wheel.name.startswith(f"leafwatch-{project_version()}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for bundled in ("model.onnx", "card.json", "reference.npz"):
        assert f"leafwatch/model/bundled/{bundled}" in names, bundled
    assert any(n.startswith("leafwatch/storage/migrations/versions/0001_") for n in names)
    assert "leafwatch/storage/migrations/env.py" in names


# ---- log rotation ----------------------------------------------------------------------------


def run_logrotate(config: Path, state: Path) -> None:
    logrotate = shutil.which("logrotate") or "/usr/sbin/logrotate"
    if not Path(logrotate).exists():
        pytest.fail("logrotate is not installed (the image installs it; apt-get install logrotate)")
    command = [logrotate, "--state", str(state), str(config)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr


def test_logrotate_rotates_the_file_the_service_keeps_writing(tmp_path: Path) -> None:
    log, config, state = tmp_path / "app.log", tmp_path / "logrotate.conf", tmp_path / "status"
    content = compose()["configs"]["leafwatch-logrotate"]["content"]
    config.write_text(content.replace("/var/log/leafwatch/app.log", str(log)))
    # The handler LeafWatch's workers share the file with (observe/logs.py, workers > 1).
    handler = logging.handlers.WatchedFileHandler(log, encoding="utf-8")
    logger = logging.Logger("rotation-test")
    logger.addHandler(handler)
    try:
        logger.error("small")
        run_logrotate(config, state)
        assert sorted(p.name for p in tmp_path.glob("app.log*")) == ["app.log"]  # under 10M

        for _ in range(11 * 1024):  # 11 MiB
            logger.error("x" * 1023)
        run_logrotate(config, state)
        # Renamed, not compressed yet (Alloy may still be reading it), no new file made.
        assert sorted(p.name for p in tmp_path.glob("app.log*")) == ["app.log.1"]
        logger.error("after rotation")
        assert log.read_text() == "after rotation\n"  # the handler reopened the path
    finally:
        handler.close()
