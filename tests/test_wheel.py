"""The package installs from a wheel and runs from any folder.

Build the wheel, install it with the locked dependencies into a fresh virtual environment
(uv, offline from the local cache when it can), then run `student-risk demo` from an empty
folder: the shipped settings (`risk_model/examples`) and migrations must come from the
installed package, not from this checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # 1-4 minutes: a wheel, an install, the whole demo job

UV = Path(sys.executable).parent / "uv"


def sh(argv: list[str], cwd: Path, env: dict | None = None, timeout: float = 600) -> str:
    out = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(map(str, argv))} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def install(venv: Path, requirements: Path, wheel: Path, cwd: Path) -> None:
    """The locked versions and the wheel; offline from uv's cache first, the index only if that misses."""
    argv = [str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "-r", str(requirements)]
    offline = subprocess.run([*argv, "--offline", str(wheel)], cwd=cwd, capture_output=True, text=True, timeout=600)
    if offline.returncode != 0:
        sh([*argv, str(wheel)], cwd)


def test_the_wheel_installs_into_a_fresh_venv_and_the_demo_runs_from_an_empty_folder(tmp_path):
    if not UV.exists():
        pytest.fail(f"uv not found at {UV}: run `make setup`")
    sh([str(UV), "build", "--wheel", "-q", "--out-dir", str(tmp_path / "dist"), str(REPO)], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("student_risk-*.whl")
    requirements = tmp_path / "requirements.txt"
    sh(
        [str(UV), "export", "--project", str(REPO), "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"]
        + ["-q", "-o", str(requirements)],
        tmp_path,
    )
    venv = tmp_path / "venv"
    sh([str(UV), "venv", "-q", "--python", sys.executable, str(venv)], tmp_path)
    install(venv, requirements, wheel, tmp_path)

    here = tmp_path / "somewhere-else"
    here.mkdir()
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "STUDENT_RISK_", "PREFECT_", "VIRTUAL_ENV"))
    }
    env |= {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    where = sh([str(venv / "bin" / "python"), "-c", "import risk_model; print(risk_model.__file__)"], here, env)
    assert where.startswith(str(venv)), f"risk_model imported from {where}, not the installed wheel"

    out = sh([str(venv / "bin" / "student-risk"), "demo", "--students", "300"], here, env, timeout=900)
    assert "All reports: runtime/reports/index.html" in out, out[-2000:]
    assert (here / "runtime" / "reports" / "index.html").is_file()
    assert (here / "runtime" / "scores.db").is_file()  # the embedded store, migrated from the wheel's migrations
    assert (here / "runtime" / "demo" / "history.csv").is_file()  # output in the folder it was run from
