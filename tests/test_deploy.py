"""The deployed topology as processes on loopback: what docker/compose.yaml runs, without Docker.

A real `prefect server start` on the PostgreSQL (a database made for this test and dropped
after) behind its auth string, `student-risk db upgrade`, `student-risk deploy` with a
notification block, `student-risk worker`, `student-risk serve` (migrating too, as compose
starts it). The Prefect API refuses a request without the auth string (401), and even an
authenticated client cannot make a run override the worker's command, environment or working
folder (422: the marker file such a command would write never appears) or write outside the
runtime folder. The yearly deployment runs on generated demo data: its intake
drifted on purpose, so the run must end Failed with the drift in its message once scores
and reports are written; the scores are then read through the API with a read key. A
`score` run on a file that breaks the contract must fail at validation. Both failures
must reach the notification webhook. Free ports, bounded waits, every process killed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from risk_model.demo import make_demo
from tests.conftest import PG_URL, REPO

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

BIN = Path(sys.executable).parent
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
FAST_TRAINING = """[training]
max_trees = 300
early_stopping_rounds = 20
learning_rate = 0.1
reference_sample = 2000
param_grid = [{num_leaves = 4, min_data_in_leaf = 40, lambda_l2 = 5.0}, {num_leaves = 15, min_data_in_leaf = 20, lambda_l2 = 1.0}]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A background command in its own session, logged to a file, killed with its children."""

    def __init__(self, name: str, argv: list[str], env: dict, logs: Path) -> None:
        self.name, self.log = name, logs / f"{name}.log"
        self.p = subprocess.Popen(
            argv,
            env=env,
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            if self.p.poll() is not None:
                break
            try:
                os.killpg(self.p.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.p.wait(wait)
            except subprocess.TimeoutExpired:
                continue


def wait_until(what: str, check, timeout: float, procs: list[Proc] = (), every: float = 0.5):
    """Poll `check()` until it returns something truthy; fail naming `what`, with the logs of dead processes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.p.poll() is not None:
                pytest.fail(f"{p.name} exited ({p.p.returncode}) while waiting for {what}:\n{p.tail()}")
        try:
            got = check()
        except (httpx.HTTPError, OSError):
            got = None
        if got:
            return got
        time.sleep(every)
    logs = "\n\n".join(f"--- {p.name}\n{p.tail()}" for p in procs)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


class Webhook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Webhook.received.append(json.loads(body or b"{}"))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def run(argv: list[str], env: dict, timeout: float = 120) -> str:
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, f"{' '.join(argv)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture(scope="module")
def databases():
    """Two fresh databases on the test PostgreSQL, as in compose: Prefect's and the score store's."""
    base = f"sr_deploy_{uuid.uuid4().hex[:10]}"
    names = {"prefect": f"{base}_prefect", "scores": f"{base}_scores"}
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            for db in names.values():
                conn.execute(text(f'CREATE DATABASE "{db}"'))
    except Exception as exc:  # pragma: no cover - CI must have PostgreSQL
        pytest.fail(f"PostgreSQL at {PG_URL} is not usable ({exc}); start it, or set STUDENT_RISK_TEST_PG_URL")
    url = make_url(PG_URL)
    yield {
        "prefect": url.set(drivername="postgresql+asyncpg", database=names["prefect"]).render_as_string(
            hide_password=False
        ),
        "scores": url.set(database=names["scores"]).render_as_string(hide_password=False),
    }
    with admin.connect() as conn:
        for db in names.values():
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    admin.dispose()


def test_yearly_deployment_runs_on_a_worker_and_its_scores_reach_the_api(tmp_path, databases):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    started = time.monotonic()
    logs = tmp_path / "logs"
    logs.mkdir()
    prefect_port, api_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{prefect_port}/api"
    auth = f"admin:{uuid.uuid4().hex}"
    prefect_settings = {PREFECT_API_URL: api_url, PREFECT_API_AUTH_STRING: auth}
    marker = tmp_path / "command-ran"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_API_DATABASE_CONNECTION_URL": databases["prefect"],
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "STUDENT_RISK_HOME": str(tmp_path / "runtime"),
        "STUDENT_RISK_STORE_URL": databases["scores"],
        "PREFECT_SERVER_API_AUTH_STRING": auth,  # the server's; clients send PREFECT_API_AUTH_STRING
        "PREFECT_API_AUTH_STRING": auth,
    }
    procs: list[Proc] = []
    hook = HTTPServer(("127.0.0.1", 0), Webhook)
    Webhook.received = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        procs.append(
            Proc(
                "prefect-server",
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(prefect_port)],
                env,
                logs,
            )
        )
        procs.append(
            Proc(
                "api",
                [str(BIN / "student-risk"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
                {**env, "STUDENT_RISK_API_MIGRATE": "true"},
                logs,
            )
        )

        # while the server migrates its database: data, settings file
        demo = make_demo(n_per_cohort=800, n_past=4, seed=1)
        data = tmp_path / "data"
        data.mkdir()
        demo.history.to_csv(data / "history.csv", index=False)
        demo.intake.to_csv(data / "intake.csv", index=False)
        demo.intake.drop(columns=["prior_gpa"]).to_csv(data / "broken-intake.csv", index=False)
        config = tmp_path / "settings.toml"
        config.write_text(
            (REPO / "risk_model" / "examples" / "demo.toml").read_text().replace("[training]\n", FAST_TRAINING, 1)
        )

        wait_until(
            "the Prefect server's /api/health", lambda: httpx.get(f"{api_url}/health", timeout=2).is_success, 180, procs
        )
        # no credentials, or wrong ones: refused before anything runs
        assert httpx.post(f"{api_url}/deployments/filter", json={}, timeout=10).status_code == 401
        assert (
            httpx.post(f"{api_url}/deployments/filter", json={}, auth=("admin", "guess"), timeout=10).status_code == 401
        )
        assert httpx.post(
            f"{api_url}/deployments/filter", json={}, auth=tuple(auth.split(":", 1)), timeout=10
        ).is_success
        run([str(BIN / "student-risk"), "db", "upgrade"], env)  # the worker's start in compose
        with temporary_settings(updates=prefect_settings):
            CustomWebhookNotificationBlock(
                name="advising-alerts",
                url=f"http://127.0.0.1:{hook.server_port}/hook",
                method="POST",
                json_data={"subject": "{{subject}}", "body": "{{body}}"},
            ).save("advising-alerts", overwrite=True)

        env_deploy = {
            **env,
            "STUDENT_RISK_DEPLOY_NOTIFY_BLOCK": "custom-webhook/advising-alerts",
            "STUDENT_RISK_DEPLOY_TIMEZONE": "Europe/London",
        }
        procs.append(Proc("worker", [str(BIN / "student-risk"), "worker"], env, logs))
        out = run(
            [
                str(BIN / "student-risk"),
                "deploy",
                "-c",
                str(config),
                "--history",
                str(data / "history.csv"),
                "--intake",
                str(data / "intake.csv"),
                "--term-cron",
                "0 6 * * *",
            ],
            env_deploy,
        )
        assert "deployed  yearly/student-risk" in out and "deployed  score/student-risk" in out

        with temporary_settings(updates=prefect_settings), get_client(sync_client=True) as client:
            yearly = client.read_deployment_by_name("yearly/student-risk")
            assert [s.schedule.cron for s in yearly.schedules] == ["0 6 1 9 *"]
            assert yearly.schedules[0].schedule.timezone == "Europe/London"
            assert yearly.entrypoint == "flows.pipeline.yearly_flow" and yearly.work_pool_name == "student-risk"
            assert yearly.parameters["intake_path"] == str(data / "intake.csv")
            score_dep = client.read_deployment_by_name("score/student-risk")
            assert [s.schedule.cron for s in score_dep.schedules] == ["0 6 * * *"]
            assert client.read_automations_by_name("student-risk: a deployed run failed")

            # the open-API attack, without and with credentials: a run that sets the worker's command
            attack = {"job_variables": {"command": f"sh -c 'touch {marker}'"}}
            r = httpx.post(f"{api_url}/deployments/{yearly.id}/create_flow_run", json=attack, timeout=10)
            assert r.status_code == 401, r.text
            for bad in (
                {"command": f"sh -c 'touch {marker}'"},
                {"env": {"PYTHONSTARTUP": str(marker)}},
                {"working_dir": "/"},
            ):
                with pytest.raises(PrefectHTTPStatusError, match="422"):
                    client.create_flow_run_from_deployment(yearly.id, job_variables=bad)
            away = tmp_path / "elsewhere"
            away_id = run_deployment("train/student-risk", parameters={"home": str(away)}, timeout=0).id

            run_id = run_deployment("yearly/student-risk", timeout=0).id
            bad_id = run_deployment(
                "score/student-risk", parameters={"intake_path": str(data / "broken-intake.csv")}, timeout=0
            ).id

            def final(flow_run_id):
                fr = client.read_flow_run(flow_run_id)
                return fr if fr.state and fr.state.type.value in FINAL else None

            bad = wait_until("the score run on a broken intake to end", lambda: final(bad_id), 150, procs, every=1)
            yearly_run = wait_until("the yearly run to end", lambda: final(run_id), 240, procs, every=1)
            away_run = wait_until("the run given another home to end", lambda: final(away_id), 60, procs, every=1)

            # the server's scheduler plans runs up to 100 days ahead (Prefect's default), so the yearly run
            # appears in the summer; the per-term one (daily here) proves the scheduler creates runs
            def planned():
                from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter

                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[score_dep.id])),
                    flow_run_filter=FlowRunFilter(state={"type": {"any_": ["SCHEDULED"]}}),
                )
                return [r for r in runs if r.auto_scheduled]

            scheduled = wait_until("the scheduler to plan the per-term scoring run", planned, 30, procs, every=1)

        assert bad.state.type.value == "FAILED", bad.state
        assert "prior_gpa" in (bad.state.message or "") or "prior_gpa" in (procs[2].tail(200)), bad.state.message
        assert yearly_run.state.type.value == "FAILED", f"{yearly_run.state}\n{procs[2].tail()}"
        assert "Drift detected" in yearly_run.state.message, yearly_run.state.message
        assert {r.expected_start_time.astimezone(ZoneInfo("Europe/London")).hour for r in scheduled} == {6}
        assert away_run.state.type.value == "FAILED" and "outside" in (away_run.state.message or ""), away_run.state
        assert not away.exists(), "a deployed run wrote outside the worker's runtime folder"

        # the scores the yearly run stored, read as an advising tool would
        key = run([str(BIN / "student-risk"), "keys", "create", "--scope", "read", "--name", "deploy-test"], env)
        secret = key.strip().splitlines()[-1].strip()
        wait_until(
            "the API's /health",
            lambda: httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=2).is_success,
            60,
            procs,
        )
        student = demo.intake.student_id.iloc[0]
        r = httpx.get(
            f"http://127.0.0.1:{api_port}/v1/students/{student}/risk", headers={"X-API-Key": secret}, timeout=30
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["cohort"] == str(demo.intake.cohort.iloc[0])
        assert body["tier"] in {"high", "medium", "low"} and 0 <= body["probability"] <= 1
        assert httpx.get(f"http://127.0.0.1:{api_port}/v1/students/{student}/risk", timeout=10).status_code == 401

        # both failures reached the notification block's webhook
        def notified():
            bodies = " ".join(m.get("body", "") for m in Webhook.received)
            return "yearly" in bodies and "score" in bodies

        wait_until("two notifications at the webhook", notified, 60, procs)

        # deploying again updates in place: same deployments, the per-term schedule removed when unset
        from flows.deploy import register
        from flows.settings import DeploySettings

        with temporary_settings(updates=prefect_settings), get_client(sync_client=True) as client:
            ids = register(
                DeploySettings(config_path=config, history_path=data / "history.csv", intake_path=data / "intake.csv")
            )
            assert ids["yearly/student-risk"] == yearly.id and ids["score/student-risk"] == score_dep.id
            assert client.read_deployment_by_name("score/student-risk").schedules == []
            assert [s.schedule.timezone for s in client.read_deployment_by_name("yearly/student-risk").schedules] == [
                "UTC"
            ]
        assert not marker.exists(), "a run's job variables ran a command on the worker"
        assert time.monotonic() - started < 600
    finally:
        for p in reversed(procs):
            p.stop()
        hook.shutdown()
