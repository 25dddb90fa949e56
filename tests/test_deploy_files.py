"""The deployment files (`infra/compose.yaml`, `infra/k8s/`, `infra/Dockerfile`),
checked for what can be checked without a container engine or a cluster.

They are not started here (this machine has no Docker engine and no cluster). What
is checked: the YAML parses; every variable handed to a Journeys process is one its
settings class reads, and the required ones are there; the commands are real
`journeys` commands with arguments the CLI accepts; the probe and health-check paths
are routes of the API; the search-attribute script registers exactly
`SEARCH_ATTRIBUTE_TYPES` (and, run against a dev server, does so, twice without harm);
every image tag is pinned; no secret value is committed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from journeys.devstack import TemporalDevServer, find_binary, free_port
from journeys.models import SEARCH_ATTRIBUTE_TYPES
from journeys.settings import ApiSettings, DatabaseSettings, Settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
COMPOSE = INFRA / "compose.yaml"
DOCKERFILE = INFRA / "Dockerfile"
SCRIPT = K8S / "register-search-attributes.sh"

# The settings class each `journeys` command reads (journeys/cli.py).
PROCESS_SETTINGS: dict[str, type[BaseSettings]] = {
    "api": ApiSettings,
    "worker": Settings,
    "migrate": DatabaseSettings,
}
JOURNEYS_IMAGE = "journeys"
SECRET_NAME = re.compile(r"KEY|SECRET|PASSWORD|PWD|TOKEN")
CREDENTIAL_URLS = {"DATABASE_URL", "SMTP_URL", "SMS_URL"}
# scheme://user:password@ (placeholders such as <auth token> may hold spaces)
URL_WITH_PASSWORD = re.compile(
    r"[a-z][a-z0-9+.-]*://(?:<[^<>]*>|[^/\s:@\"'<>]+):(<[^<>]*>|\$\{[^}]*\}|[^@\s\"'<>]+)@"
)
PLACEHOLDER = re.compile(r"<[^<>]+>")


# --- helpers ---------------------------------------------------------------------------


def variables(cls: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads."""
    names: set[str] = set()
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(choice for choice in alias.choices if isinstance(choice, str))
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(name.upper())
    return names


def required_variables(cls: type[BaseSettings]) -> list[set[str]]:
    """For each required field, the variables any one of which provides it."""
    required = []
    for info in cls.model_fields.values():
        if info.is_required():
            alias = info.validation_alias
            assert isinstance(alias, AliasChoices)
            required.append({c for c in alias.choices if isinstance(c, str)})
    return required


ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def env_file(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """(active assignments, commented-out ones) of a KEY=VALUE file."""
    active: dict[str, str] = {}
    commented: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            (commented if match.group(1) else active)[match.group(2)] = match.group(3)
    return active, commented


def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def kustomization() -> dict[str, Any]:
    loaded = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document.get("kind") in ("Deployment", "Job"):
        spec: dict[str, Any] = document["spec"]["template"]["spec"]
        return spec
    return None


def k8s_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(workload name, its pod spec, a container) for every container."""
    for _, document in k8s_documents():
        spec = pod_spec(document)
        if spec is not None:
            for container in spec["containers"]:
                yield document["metadata"]["name"], spec, container


class _Parsed(BaseException):
    """Stops `journeys.cli.main` once it parsed its arguments, before the command runs."""

    def __init__(self, parsed: SimpleNamespace) -> None:
        self.parsed = parsed


def cli_parse(args: list[str], monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """`journeys <args>` parsed by the real CLI (a bad one exits): the command's name
    (`command`) and the arguments each command hands to its body (`host`, `port`...)."""
    from journeys import cli

    def parsed_then_stop(command: str, body: Any, **params: Any) -> None:
        raise _Parsed(SimpleNamespace(command=command, **params))

    with monkeypatch.context() as patch:
        patch.setattr(cli, "_run", parsed_then_stop)
        try:
            cli.main(list(args))
        except _Parsed as parsed:
            return parsed.parsed
        except SystemExit as exit_:
            raise AssertionError(
                f"journeys {' '.join(args)}: refused (exit {exit_.code})"
            ) from None
    raise AssertionError(f"journeys {' '.join(args)} was not parsed")


def api_routes() -> set[str]:
    from api.main import create_app

    app = create_app(ApiSettings(secret="s", api_key="k"))
    assert app.openapi_url
    return {*app.openapi()["paths"], app.openapi_url}


def journeys_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if str(service.get("image", "")).split(":")[0] == JOURNEYS_IMAGE
    }


# --- the files parse -------------------------------------------------------------------


def test_yaml_parses() -> None:
    assert set(compose()["services"]) >= {
        "temporal-db",
        "temporal-schema",
        "temporal",
        "temporal-setup",
        "temporal-ui",
        "db",
        "migrate",
        "api",
        "worker",
        "http",
    }
    kinds = sorted(document["kind"] for _, document in k8s_documents())
    assert kinds == sorted(
        ["Kustomization", "Namespace", "Deployment", "Service", "Deployment", "Job", "Job"]
    )


def test_kustomization_lists_every_manifest_and_file() -> None:
    spec = kustomization()
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(spec["resources"]) == manifests
    generated = [
        entry
        for generator in ("configMapGenerator", "secretGenerator")
        for entry in spec[generator]
    ]
    for entry in generated:
        for name in [*entry.get("envs", []), *entry.get("files", [])]:
            # secrets.env is made by the user from its committed example
            path = K8S / name
            assert path.exists() or path.with_name(path.name + ".example").exists(), name


# --- commands --------------------------------------------------------------------------


def test_compose_commands_are_journeys_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    services = journeys_services()
    assert set(services) == set(PROCESS_SETTINGS)
    for name, service in services.items():
        assert service["build"]["dockerfile"] == "infra/Dockerfile"
        parsed = cli_parse(service["command"], monkeypatch)
        assert parsed.command == name
    api = cli_parse(services["api"]["command"], monkeypatch)
    assert (api.host, api.port) == ("0.0.0.0", 8000)


def test_k8s_commands_are_journeys_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = set()
    for workload, _, container in k8s_containers():
        if container["image"].split(":")[0] != JOURNEYS_IMAGE:
            continue
        assert "command" not in container, f"{workload}: the image's entrypoint is journeys"
        parsed = cli_parse(container["args"], monkeypatch)
        seen.add(parsed.command)
        if parsed.command == "api":
            ports = {p["name"]: p["containerPort"] for p in container["ports"]}
            assert ports["http"] == parsed.port == 8000
    assert seen == set(PROCESS_SETTINGS)


def test_dockerfile_runs_journeys_as_a_user() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r'^ENTRYPOINT \["journeys"\]$', text, re.M)
    assert 'journeys = "journeys.cli:main"' in (ROOT / "pyproject.toml").read_text()
    user = re.search(r"^USER (\d+)(?::(\d+))?$", text, re.M)
    assert user and int(user.group(1)) != 0
    for _, spec, _ in k8s_containers():
        assert spec["securityContext"]["runAsNonRoot"] is True
    uids = {
        spec["securityContext"]["runAsUser"]
        for _, spec, container in k8s_containers()
        if container["image"] == JOURNEYS_IMAGE
    }
    assert uids == {int(user.group(1))}
    # The migrations are package data: a plain install carries them.
    assert "pip install . " in text or "pip install .\n" in text


def test_dockerignore_lets_through_what_the_dockerfile_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY "):
            sources = line.split()[1:-1]
            for source in sources:
                assert source.rstrip("/") in allowed, source


# --- environment -----------------------------------------------------------------------


def test_compose_passes_only_variables_the_settings_read() -> None:
    example_active, example_commented = env_file(INFRA / "journeys.env.example")
    from_file = set(example_active) | set(example_commented)
    unknown = from_file - variables(ApiSettings)
    assert not unknown, f"infra/journeys.env.example: no setting reads {sorted(unknown)}"
    for name, service in journeys_services().items():
        cls = PROCESS_SETTINGS[name]
        given = set(service.get("environment", {}))
        unknown = given - variables(cls)
        assert not unknown, f"compose {name}: {cls.__name__} reads no {sorted(unknown)}"
        files = service.get("env_file", [])
        assert files in ([], ["journeys.env"]), name
        provided = given | (set(example_active) if files else set())
        for choices in required_variables(cls):
            assert choices & provided, f"compose {name} lacks {sorted(choices)}"


def test_compose_interpolations_are_in_the_env_example() -> None:
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    active, _ = env_file(INFRA / ".env.example")
    assert used == set(active), (
        f"only in compose.yaml: {sorted(used - set(active))}; "
        f"only in .env.example: {sorted(set(active) - used)}"
    )


def test_k8s_passes_only_variables_the_settings_read() -> None:
    config_active, config_commented = env_file(K8S / "config.env")
    secret_active, secret_commented = env_file(K8S / "secrets.env.example")
    config = set(config_active) | set(config_commented)
    unknown = config - variables(ApiSettings)
    assert not unknown, f"config.env: no setting reads {sorted(unknown)}"
    secrets = set(secret_active) | set(secret_commented)
    unknown = secrets - variables(ApiSettings)
    assert not unknown, f"secrets.env.example: no setting reads {sorted(unknown)}"
    for workload, _, container in k8s_containers():
        journeys = container["image"].split(":")[0] == JOURNEYS_IMAGE
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "journeys-secrets"
                assert ref["key"] == entry["name"]
                keys = secrets if ref.get("optional") else set(secret_active)
                assert ref["key"] in keys, f"{workload}: {ref['key']} not in secrets.env.example"
        if not journeys:
            continue
        command = container["args"][0]
        cls = PROCESS_SETTINGS[command]
        given = {entry["name"] for entry in container.get("env", [])}
        unknown = given - variables(cls)
        assert not unknown, f"{workload}: {cls.__name__} reads no {sorted(unknown)}"
        from_config = {source["configMapRef"]["name"] for source in container.get("envFrom", [])}
        assert from_config <= {"journeys-config"}
        provided = given | (set(config_active) if from_config else set())
        for choices in required_variables(cls):
            assert choices & provided, f"{workload} lacks {sorted(choices)}"


def test_each_k8s_process_gets_only_the_secrets_it_uses() -> None:
    secrets = {
        container["args"][0]: {
            entry["name"] for entry in container.get("env", []) if "valueFrom" in entry
        }
        for _, _, container in k8s_containers()
        if container["image"] == JOURNEYS_IMAGE
    }
    assert secrets["migrate"] == {"DATABASE_URL"}
    assert "JOURNEYS_API_KEY" not in secrets["worker"]
    assert "SMTP_URL" not in secrets["api"]


# --- health checks and probes ----------------------------------------------------------


def test_health_checks_ask_routes_the_api_has() -> None:
    routes = api_routes()
    api = compose()["services"]["api"]
    check = " ".join(api["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/[\w/]+)", check)
    assert path and path.group(1) == "/healthz" and "/healthz" in routes
    http = compose()["services"]["http"]
    assert http["command"][-2:] == ["--to", "api:8000"]
    probes = 0
    # The worker answers its probes on its metrics port (journeys/worker_health.py).
    worker_paths = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for name, _, container in k8s_containers():
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe not in container:
                continue
            asked = container[probe]["httpGet"]
            if name == "journeys-worker":
                assert asked == {"path": worker_paths[probe], "port": "metrics"}
                assert container["ports"] == [{"name": "metrics", "containerPort": 9464}]
            else:
                assert asked["path"] in routes
            probes += 1
    assert probes == 5


# --- search attributes -----------------------------------------------------------------


def script_attributes() -> dict[str, str]:
    """name -> type, as the script registers them."""
    match = re.search(r'^ATTRIBUTES="([^"]*)"$', SCRIPT.read_text(), re.M)
    assert match, "ATTRIBUTES=... in register-search-attributes.sh"
    pairs = [pair.split(":") for pair in match.group(1).split()]
    assert len({name for name, _ in pairs}) == len(pairs)
    return dict(pairs)


def test_the_setup_jobs_register_the_search_attributes() -> None:
    assert script_attributes() == SEARCH_ATTRIBUTE_TYPES
    # compose runs the script...
    setup = compose()["services"]["temporal-setup"]
    assert (
        "./k8s/register-search-attributes.sh:/setup/register-search-attributes.sh:ro"
        in (setup["volumes"])
    )
    assert setup["entrypoint"] == ["/bin/sh", "/setup/register-search-attributes.sh"]
    assert setup["environment"]["SETUP_CREATE_NAMESPACE"] == "true"
    # ... and so does the Kubernetes Job, from a generated ConfigMap.
    generated = {
        entry["name"]: entry.get("files", []) for entry in kustomization()["configMapGenerator"]
    }
    assert generated["journeys-temporal-setup"] == ["register-search-attributes.sh"]
    jobs = [
        (spec, container)
        for name, spec, container in k8s_containers()
        if name == "journeys-search-attributes"
    ]
    assert len(jobs) == 1
    spec, container = jobs[0]
    assert container["command"] == ["/bin/sh", "/setup/register-search-attributes.sh"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/setup"]]["configMap"]["name"] == "journeys-temporal-setup"


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
async def test_the_script_registers_them_on_a_real_server(tmp_path: Path) -> None:
    """The script against a dev server (its `temporal` CLI stands in for the one in
    the admin-tools image, of another version): a new namespace and the attributes,
    then a second run that finds everything in place, then a missing namespace."""
    server = TemporalDevServer(tmp_path / "temporal.db", port=free_port(), ui_port=None)
    await server.start()
    try:
        temporal = find_binary("temporal")
        env = {
            **os.environ,
            "PATH": f"{Path(temporal).parent}{os.pathsep}{os.environ['PATH']}",
            "TEMPORAL_ADDRESS": server.address,
            "TEMPORAL_NAMESPACE": "deploy-test",
            "SETUP_CREATE_NAMESPACE": "true",
        }
        first = await asyncio.to_thread(_run, ["sh", str(SCRIPT)], env)
        assert first.returncode == 0, first.stderr
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
            assert f"{name}: registered ({kind})" in first.stdout
        listed = await asyncio.to_thread(
            _run, [temporal, "operator", "search-attribute", "list", "-n", "deploy-test"], env
        )
        rows = [line.split() for line in listed.stdout.splitlines()[1:]]
        types = {row[0]: row[1] for row in rows if len(row) >= 2}
        assert all(types.get(n) == k for n, k in SEARCH_ATTRIBUTE_TYPES.items()), listed.stdout
        second = await asyncio.to_thread(_run, ["sh", str(SCRIPT)], env)
        assert second.returncode == 0, second.stderr
        assert second.stdout.count("already registered") == len(SEARCH_ATTRIBUTE_TYPES)
        absent = {**env, "TEMPORAL_NAMESPACE": "absent", "SETUP_CREATE_NAMESPACE": "false"}
        missing = await asyncio.to_thread(_run, ["sh", str(SCRIPT)], absent)
        assert missing.returncode == 1 and "namespace absent does not exist" in missing.stderr
    finally:
        server.stop()


# --- images ----------------------------------------------------------------------------


def test_every_image_tag_is_pinned() -> None:
    def pinned(image: str) -> bool:
        name, _, tag = image.rpartition(":")
        return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)

    for name, service in compose()["services"].items():
        assert pinned(service["image"]), f"compose {name}: {service['image']}"
    tags = {entry["name"]: entry.get("newTag") for entry in kustomization()["images"]}
    for workload, _, container in k8s_containers():
        image = container["image"]
        if ":" not in image:
            assert image in tags, f"{workload}: {image} has no tag and none in kustomization"
            image = f"{image}:{tags[image]}"
        assert pinned(image), f"{workload}: {image}"
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("FROM "):
            assert pinned(line.split()[1]), line
    # the image compose builds and the one kustomize deploys are the same version
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert version and tags[JOURNEYS_IMAGE] == version.group(1)
    assert all(s["image"] == f"journeys:{version.group(1)}" for s in journeys_services().values())


# --- no secrets ------------------------------------------------------------------------

DEPLOY_FILES = [
    COMPOSE,
    INFRA / ".env.example",
    INFRA / "journeys.env.example",
    DOCKERFILE,
    *sorted(K8S.iterdir()),
]


def test_no_secret_value_is_committed() -> None:
    for path in [
        INFRA / ".env.example",
        INFRA / "journeys.env.example",
        K8S / "secrets.env.example",
    ]:
        active, commented = env_file(path)
        for key, value in active.items():
            if SECRET_NAME.search(key) or key in CREDENTIAL_URLS:
                assert value == "", f"{path.name}: {key} must be left empty in the example"
        for key, value in commented.items():
            if SECRET_NAME.search(key):
                without = PLACEHOLDER.sub("", value)
                assert not re.search(r"[A-Za-z0-9+/]{16,}", without), f"{path.name}: {key}"
    for path in DEPLOY_FILES:
        text = path.read_text()
        assert "PRIVATE KEY-----" not in text, path
        for password in URL_WITH_PASSWORD.findall(text):
            assert PLACEHOLDER.fullmatch(password) or password.startswith("${"), (
                f"{path.name}: a URL with a password"
            )
    # compose takes every secret from infra/.env, which git ignores
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${") and ":?" in str(value), f"{name}: {key}"
    # Kubernetes: no Secret in the manifests, only the generator fed by secrets.env
    assert all(document["kind"] != "Secret" for _, document in k8s_documents())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_ignores_the_filled_in_copies() -> None:
    for path in ("infra/.env", "infra/journeys.env", "infra/k8s/secrets.env"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
        assert ignored.returncode == 0, f"{path} is not ignored by git"
