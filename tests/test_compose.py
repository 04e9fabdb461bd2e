"""docker-compose.yml, the Dockerfile and the configs they mount agree with each other.

Docker cannot run on CI, so these checks are static: every mounted path exists, every file a
container is told to read is inside a mount, and host names and ports agree between
docker-compose.yml, prometheus.yml, alertmanager.yml, Grafana provisioning and the Dockerfile.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
PROMETHEUS_YML = ROOT / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = ROOT / "alerting" / "alertmanager.yml"
DATASOURCES_YML = ROOT / "grafana" / "provisioning" / "datasources" / "datasources.yml"
DASHBOARDS_YML = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"
DOCS = ROOT / "docs" / "dashboards-and-alerts.md"

# Ports the upstream images listen on unless told otherwise.
DEFAULT_PORTS = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000, "mailpit": 8025}
MAILPIT_SMTP_PORT = 1025


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


COMPOSE_MODEL: dict[str, Any] = load(COMPOSE)
SERVICES: dict[str, Any] = COMPOSE_MODEL["services"]


def flag(service: str, name: str) -> str | None:
    """The value of a --name=value flag in a service's command."""
    for arg in SERVICES[service].get("command", []):
        if arg.startswith(f"--{name}="):
            return str(arg.split("=", 1)[1])
    return None


def bind_mounts(service: str) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) for each bind mount of a service."""
    mounts = []
    for spec in SERVICES[service].get("volumes", []):
        source, target = spec.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((ROOT / source).resolve(), PurePosixPath(target)))
    return mounts


def host_path(service: str, container_path: str) -> Path:
    """The host file behind a path inside a service's container (via its bind mounts)."""
    path = PurePosixPath(container_path)
    for source, target in bind_mounts(service):
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    raise AssertionError(f"{container_path} is not bind-mounted into {service}")


def container_ports(service: str) -> set[int]:
    return {int(str(spec).rsplit(":", 1)[1]) for spec in SERVICES[service].get("ports", [])}


def listen_port(service: str) -> int:
    """The port a service listens on inside its container."""
    if service == "exporter":
        command = SERVICES["exporter"]["command"]
        return int(command[command.index("--listen") + 1].rsplit(":", 1)[1])
    return DEFAULT_PORTS[service]


def assert_points_at_service(address: str, service: str, port: int | None = None) -> None:
    """A host:port or URL names a compose service and the port it listens on."""
    netloc = urlsplit(address).netloc if "//" in address else address
    host, _, port_text = netloc.partition(":")
    assert host == service, address
    assert host in SERVICES, f"{address}: no such compose service"
    assert int(port_text) == (port if port is not None else listen_port(service)), address


def test_expected_services_exist() -> None:
    """Compose runs the exporter, Prometheus, Alertmanager and Grafana (plus a mail catcher)."""
    assert {"exporter", "prometheus", "alertmanager", "grafana", "mailpit"} <= set(SERVICES)
    assert SERVICES["exporter"]["build"]["context"] == "."
    assert "REVISION" in SERVICES["exporter"]["build"]["args"]  # whale_exporter_build_info


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_bind_mount_source_exists(service: str) -> None:
    """Every host path mounted into a container exists in the repository."""
    for source, target in bind_mounts(service):
        assert source.exists(), f"{service}: {source} (mounted at {target}) is missing"
        assert ROOT in source.parents, f"{service}: {source} is outside the repository"


def test_named_volumes_are_declared() -> None:
    """Every named volume a service uses is declared at the top level."""
    declared = set(COMPOSE_MODEL.get("volumes") or {})
    for service in SERVICES.values():
        for spec in service.get("volumes", []):
            source = spec.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, source


def test_config_files_given_on_command_lines_are_mounted() -> None:
    """The config files Prometheus and Alertmanager are told to read are mounted from the repo."""
    prometheus_config = host_path("prometheus", flag("prometheus", "config.file") or "")
    assert prometheus_config == PROMETHEUS_YML
    alertmanager_config = host_path("alertmanager", flag("alertmanager", "config.file") or "")
    assert alertmanager_config == ALERTMANAGER_YML


def test_prometheus_rule_files_are_inside_the_mount() -> None:
    """Prometheus' rule_files resolve (relative to its config) to rule files in the mount."""
    for pattern in load(PROMETHEUS_YML)["rule_files"]:
        assert not pattern.startswith("/"), "keep rule_files relative to prometheus.yml"
        assert list(PROMETHEUS_YML.parent.glob(pattern)), pattern


def test_grafana_provisioning_and_dashboards_are_mounted() -> None:
    """Grafana sees the provisioning directory and the provider's dashboard path holds the JSON."""
    assert host_path("grafana", "/etc/grafana/provisioning/datasources/datasources.yml") == (
        DATASOURCES_YML
    )
    assert host_path("grafana", "/etc/grafana/provisioning/dashboards/dashboards.yml") == (
        DASHBOARDS_YML
    )
    (provider,) = load(DASHBOARDS_YML)["providers"]
    dashboards = host_path("grafana", provider["options"]["path"])
    assert sorted(dashboards.glob("*.json")), dashboards
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert host_path("grafana", home).is_file()


def test_grafana_installs_the_infinity_plugin() -> None:
    """GF_INSTALL_PLUGINS installs the plugin type the Infinity datasource needs."""
    plugins = SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    types = {ds["type"] for ds in load(DATASOURCES_YML)["datasources"]}
    assert "yesoreyeram-infinity-datasource" in types
    assert "yesoreyeram-infinity-datasource" in {p.split()[0] for p in plugins.split(",")}


@pytest.mark.parametrize("service", sorted(DEFAULT_PORTS.keys() | {"exporter"}))
def test_each_ui_port_is_published_on_the_port_the_service_listens_on(service: str) -> None:
    """Each service publishes the port it listens on, on the same host port of 127.0.0.1."""
    port = listen_port(service)
    assert f"127.0.0.1:{port}:{port}" in SERVICES[service]["ports"]


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_published_port_is_bound_to_loopback(service: str) -> None:
    """No port is published on every interface: each is bound to 127.0.0.1."""
    for spec in SERVICES[service].get("ports", []):
        assert isinstance(spec, str) and spec.startswith("127.0.0.1:"), f"{service}: {spec}"
        assert spec.count(":") == 2, f"{service}: {spec}"


ONE_SHOTS = sorted(name for name, config in SERVICES.items() if config.get("restart") == "no")


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_service_has_a_healthcheck_and_log_rotation(service: str) -> None:
    """Each long-running service checks its own health, and every service rotates its logs."""
    config = SERVICES[service]
    if service in ONE_SHOTS:
        assert "healthcheck" not in config and "ports" not in config, service
    else:
        test = config["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, service
    logging = config["logging"]
    assert logging["driver"] == "json-file", service
    assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 1


def test_dependencies_wait_for_healthy_services() -> None:
    """Every depends_on waits for a healthcheck to pass, or for a one-shot to have succeeded."""
    edges = 0
    for name, config in SERVICES.items():
        depends = config.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
        for dependency, condition in depends.items():
            if dependency in ONE_SHOTS:
                expected = {"condition": "service_completed_successfully"}
            else:
                expected = {"condition": "service_healthy"}
                assert "healthcheck" in SERVICES[dependency], dependency
            assert condition == expected, f"{name} -> {dependency}"
            edges += 1
    assert edges >= 3


def volume_path(service: str, volume: str) -> tuple[PurePosixPath, bool]:
    """Where a named volume is mounted in a service, and whether read-only."""
    for spec in SERVICES[service].get("volumes", []):
        source, target, *mode = spec.split(":")
        if source == volume:
            return PurePosixPath(target), mode == ["ro"]
    raise AssertionError(f"{service} does not mount {volume}")


def test_the_relay_token_reaches_the_exporter_and_alertmanager() -> None:
    """One generated token file is written by relay-token, read by both exporters and sent by
    Alertmanager, so the on-call relay works although the exporter listens on 0.0.0.0."""
    written, read_only = volume_path("relay-token", "relay-token")
    assert not read_only
    (command,) = SERVICES["relay-token"]["command"]
    token = PurePosixPath(command.rsplit("> ", 1)[1])
    assert token.parent == written and command.startswith(f"test -s {token} ||")
    for exporter in ("exporter", "exporter-demo"):
        mount, read_only = volume_path(exporter, "relay-token")
        assert read_only, exporter
        assert SERVICES[exporter]["command"][-1].startswith("0.0.0.0:"), exporter
        path = PurePosixPath(SERVICES[exporter]["environment"]["WHALE_ALERTMANAGER_TOKEN_FILE"])
        assert path == mount / token.name, exporter
        assert "relay-token" in SERVICES[exporter]["depends_on"], exporter
    mount, read_only = volume_path("alertmanager", "relay-token")
    receivers = {r["name"]: r for r in load(ALERTMANAGER_YML)["receivers"]}
    (relay,) = receivers["oncall"]["webhook_configs"]
    sent = PurePosixPath(relay["http_config"]["authorization"]["credentials_file"])
    assert read_only and sent == mount / token.name
    # The image owns the mount point, so a fresh volume is writable by the image's user.
    owned = [args for op, args in dockerfile_instructions() if op == "RUN" and str(written) in args]
    assert owned and "-o whale" in owned[0], owned


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_images_are_pinned_to_a_patch_release(service: str) -> None:
    """Upstream images name an exact x.y.z tag (never latest or a floating minor)."""
    image = SERVICES[service]["image"]
    if "build" in SERVICES[service]:
        assert image.endswith(":local"), image
        return
    assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+\.\d+", image), image


def test_grafana_plugin_is_pinned_to_a_version() -> None:
    """GF_INSTALL_PLUGINS installs Infinity at an exact version."""
    plugins = SERVICES["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    pins = dict(p.split() for p in plugins.split(","))
    assert re.fullmatch(r"\d+\.\d+\.\d+", pins["yesoreyeram-infinity-datasource"])


def test_demo_profile_replaces_the_live_exporter() -> None:
    """`live` (the .env default) runs the real exporter; `demo` runs the simulator as `exporter`."""
    live, demo = SERVICES["exporter"], SERVICES["exporter-demo"]
    assert live["profiles"] == ["live"] and live["command"][0] == "run"
    assert demo["profiles"] == ["demo"] and demo["command"][0] == "demo"
    assert "exporter" in demo["networks"]["default"]["aliases"]
    assert demo["ports"] == live["ports"] and demo["image"] == live["image"]
    env = dict(
        line.split("=", 1)
        for line in (ROOT / ".env").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    )
    assert env["COMPOSE_PROFILES"] == "live"
    unprofiled = [name for name, config in SERVICES.items() if "profiles" not in config]
    assert "exporter" not in unprofiled and "exporter-demo" not in unprofiled


def test_prometheus_keeps_exemplars() -> None:
    """Prometheus runs with exemplar storage, so whale spikes link to their txid."""
    assert "--enable-feature=exemplar-storage" in SERVICES["prometheus"]["command"]


def test_prometheus_targets_agree_with_compose() -> None:
    """Prometheus scrapes the exporter and sends alerts to Alertmanager at their compose ports."""
    config = load(PROMETHEUS_YML)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (exporter_target,) = jobs["whale-exporter"]["static_configs"][0]["targets"]
    assert_points_at_service(exporter_target, "exporter")
    (alertmanager_target,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert_points_at_service(alertmanager_target, "alertmanager")
    (am_scrape,) = jobs["alertmanager"]["static_configs"][0]["targets"]
    assert_points_at_service(am_scrape, "alertmanager")


def test_alertmanager_urls_agree_with_compose() -> None:
    """The on-call webhook hits the exporter's relay; email goes to the mail catcher."""
    config = load(ALERTMANAGER_YML)
    receivers = {r["name"]: r for r in config["receivers"]}
    (relay,) = receivers["oncall"]["webhook_configs"]
    assert_points_at_service(relay["url"], "exporter")
    assert urlsplit(relay["url"]).path == "/alertmanager"
    assert_points_at_service(config["global"]["smtp_smarthost"], "mailpit", MAILPIT_SMTP_PORT)


def test_grafana_datasource_urls_agree_with_compose() -> None:
    """Grafana's datasources point at the Prometheus and exporter services."""
    by_uid = {ds["uid"]: ds for ds in load(DATASOURCES_YML)["datasources"]}
    assert_points_at_service(by_uid["prometheus"]["url"], "prometheus")
    assert_points_at_service(by_uid["whale-api"]["url"], "exporter")


def test_grafana_rate_interval_matches_the_scrape_interval() -> None:
    """The Prometheus datasource's timeInterval equals the scrape interval ($__rate_interval)."""
    by_uid = {ds["uid"]: ds for ds in load(DATASOURCES_YML)["datasources"]}
    scrape_interval = load(PROMETHEUS_YML)["global"]["scrape_interval"]
    assert by_uid["prometheus"]["jsonData"]["timeInterval"] == scrape_interval


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_builds_from_python_slim_as_non_root() -> None:
    """The image is python:3.11-slim, installs the lock with hashes, then the package alone."""
    instructions = dockerfile_instructions()
    bases = [arg.split()[0] for op, arg in instructions if op == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)
    runs = " ".join(arg for op, arg in instructions if op == "RUN")
    assert re.search(r"pip install --require-hashes .*-r requirements\.lock", runs)
    assert re.search(r"pip install --no-deps \.(\s|$)", runs)
    users = [arg for op, arg in instructions if op == "USER"]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_the_exporter_healthchecks_use_the_healthcheck_command() -> None:
    """The image and both compose exporters check health with `healthcheck`, which follows the
    web config (TLS, basic auth), on the port they listen on."""
    (check,) = [args for op, args in dockerfile_instructions() if op == "HEALTHCHECK"]
    assert check.endswith('CMD ["mempool-whale-exporter", "healthcheck"]'), check
    for exporter in ("exporter", "exporter-demo"):
        assert SERVICES[exporter]["healthcheck"]["test"] == [
            "CMD", "mempool-whale-exporter", "healthcheck",
        ]  # fmt: skip
        assert SERVICES[exporter]["command"][-1].endswith(":9743")  # healthcheck's default port


def test_dockerfile_port_and_command_agree_with_compose() -> None:
    """The Dockerfile exposes and listens on the exporter port compose publishes."""
    instructions = dockerfile_instructions()
    exposed = {int(arg) for op, arg in instructions if op == "EXPOSE"}
    assert exposed == {listen_port("exporter")}
    (cmd,) = [arg for op, arg in instructions if op == "CMD"]
    assert yaml.safe_load(cmd) == SERVICES["exporter"]["command"]


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    """Every path the Dockerfile copies from the context is re-included by .dockerignore."""
    kept = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    for op, arg in dockerfile_instructions():
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert source.rstrip("/") in kept, source


def test_docs_document_every_published_port() -> None:
    """The README section names the URL of every port compose publishes."""
    text = DOCS.read_text(encoding="utf-8")
    for name, service in SERVICES.items():
        for spec in service.get("ports", []):
            host_port = str(spec).split(":")[-2]
            assert f"localhost:{host_port}" in text, f"{name}: port {host_port} undocumented"


def lock_pins() -> dict[str, tuple[str, int]]:
    """name -> (pinned version, number of hashes) from requirements.lock."""
    pins: dict[str, tuple[str, int]] = {}
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    for block in re.split(r"\n(?=[a-z0-9])", text):
        match = re.match(r"([a-z0-9][a-z0-9._-]*)==([^\s\\]+)", block)
        if match:
            hashes = block.count("--hash=sha256:")
            pins[canonicalize_name(match.group(1))] = (match.group(2), hashes)
    return pins


def test_lock_file_pins_every_dependency_with_hashes() -> None:
    """requirements.lock pins each pyproject dependency (in range) and hashes every pin."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = lock_pins()
    assert len(pins) >= len(project["dependencies"])
    for name, (_, hashes) in pins.items():
        assert hashes >= 1, f"{name} has no hash"
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        version, _ = pins[canonicalize_name(requirement.name)]
        assert requirement.specifier.contains(version), f"{requirement} but locked {version}"
