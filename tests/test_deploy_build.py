"""What `student-risk deploy` would send, built without a server: schedules, parameters, entrypoints."""

from __future__ import annotations

import json

import pytest
from prefect.client.schemas.actions import WorkPoolUpdate
from prefect.states import Completed, Failed

from flows import deploy
from flows.pipeline import _retry_on_io
from flows.settings import DeploySettings
from risk_model.schema import ContractError


@pytest.fixture
def settings(tmp_path) -> DeploySettings:
    for name in ("settings.toml", "history.csv", "intake.csv"):
        (tmp_path / name).write_text("")
    return DeploySettings(
        config_path=tmp_path / "settings.toml",
        history_path=tmp_path / "history.csv",
        intake_path=tmp_path / "intake.csv",
        timezone="Europe/London",
    )


def by_flow(deployments) -> dict:
    return {d.flow_name: d for d in deployments}


def test_every_flow_is_deployed_by_module_path_with_the_yearly_schedule(settings, tmp_path):
    deps = by_flow(deploy.build(settings))
    assert {"yearly", "train", "score", "report", "score-partitioned"} <= set(deps)
    for d in deps.values():
        assert d.name == "student-risk" and d.tags == ["student-risk"]
        assert d.entrypoint.startswith("flows.") and ":" not in d.entrypoint  # importable anywhere it is installed
        assert not d.job_variables  # the locked pool template fixes env; a deployment sets no job variable
        assert "home" not in d.parameters  # runs write to the worker's STUDENT_RISK_HOME
    yearly = deps["yearly"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in yearly.schedules] == [("0 6 1 9 *", "Europe/London")]
    assert yearly.parameters == {
        "config_path": str(tmp_path / "settings.toml"),
        "history_path": str(tmp_path / "history.csv"),
        "intake_path": str(tmp_path / "intake.csv"),
        "fail_on_drift": True,
    }
    assert not deps["score"].schedules and not deps["train"].schedules
    assert deps["score-partitioned"].parameters["partitions"] == 4


def test_per_term_scoring_schedule_and_cohort(settings):
    s = settings.model_copy(update={"term_cron": "0 6 1 1,4 *", "cohort": "2026"})
    deps = by_flow(deploy.build(s))
    assert [x.schedule.cron for x in deps["score"].schedules] == ["0 6 1 1,4 *"]
    assert deps["score"].parameters["cohort"] == "2026"
    assert "cohort" not in deps["train"].parameters  # each flow keeps only the parameters it has


def test_relative_paths_become_absolute(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings.model_copy(update={"intake_path": "intake.csv"})
    assert by_flow(deploy.build(s))["score"].parameters["intake_path"] == str(tmp_path / "intake.csv")


def test_missing_data_location_names_the_setting(settings):
    with pytest.raises(ValueError, match="STUDENT_RISK_DEPLOY_HISTORY_PATH"):
        deploy.build(settings.model_copy(update={"history_path": None}))


def test_a_bad_cron_fails_at_deploy_time(settings):
    with pytest.raises(ValueError):
        deploy.build(settings.model_copy(update={"yearly_cron": "every september"}))


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STUDENT_RISK_DEPLOY_YEARLY_CRON", "30 5 15 8 *")
    monkeypatch.setenv("STUDENT_RISK_DEPLOY_FAIL_ON_DRIFT", "false")
    s = DeploySettings()
    assert s.yearly_cron == "30 5 15 8 *" and s.fail_on_drift is False and s.work_pool == "student-risk"


def test_worker_command():
    argv = deploy.worker_argv("advising", limit=2, healthcheck=True)
    assert argv[1:] == [
        "-m",
        "prefect",
        "worker",
        "start",
        "--pool",
        "advising",
        "--type",
        "process",
        "--limit",
        "2",
        "--with-healthcheck",
    ]


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (ConnectionResetError("share went away"), True),
        (TimeoutError("slow disk"), True),
        (FileNotFoundError("typo"), False),
        (PermissionError("no"), False),
        (ContractError("bad column"), False),
    ],
)
def test_only_transient_io_errors_are_retried(exc, retried):
    assert _retry_on_io(None, None, Failed(data=exc)) is retried


def test_a_completed_state_is_not_retried():
    assert _retry_on_io(None, None, Completed(data=1)) is False


def test_the_job_template_fixes_command_env_and_working_dir():
    t = deploy.job_template()
    job, variables = t["job_configuration"], t["variables"]
    assert "command" not in job and "working_dir" not in job  # Prefect's engine command, a fresh temp folder
    assert job["env"] == deploy.RUN_ENV  # a constant, not "{{ env }}"
    assert set(variables["properties"]) == {"name", "labels", "stream_output"}
    assert variables["additionalProperties"] is False
    assert "{{" not in json.dumps({k: job[k] for k in ("env",)})


@pytest.mark.slow  # a temporary Prefect server: 15-70 s on a busy machine
def test_the_server_refuses_a_run_that_sets_command_env_or_working_dir(tmp_path, monkeypatch):
    """Prefect's own server validates job variables against the locked template (HTTP 422)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        deploy.ensure_work_pool("locked")
        params = {"config_path": "c.toml", "history_path": "h.csv"}
        dep_id = deploy.flows()["train"].to_deployment(name="t", parameters=params).apply(work_pool_name="locked")
        with get_client(sync_client=True) as client:
            assert client.read_work_pool("locked").base_job_template == deploy.job_template()
            for bad in (
                {"command": f"touch {tmp_path / 'marker'}"},
                {"env": {"LD_PRELOAD": "/tmp/x.so"}},
                {"env.PYTHONPATH": "/tmp"},
                {"working_dir": "/etc"},
            ):
                with pytest.raises(PrefectHTTPStatusError, match="422"):
                    client.create_flow_run_from_deployment(dep_id, job_variables=bad)
            ok = client.create_flow_run_from_deployment(dep_id, job_variables={"stream_output": False})
            assert ok.job_variables == {"stream_output": False}
            client.update_work_pool("locked", WorkPoolUpdate(base_job_template=_open_template()))
        deploy.ensure_work_pool("locked")  # a worker start locks it again
        with get_client(sync_client=True) as client:
            assert client.read_work_pool("locked").base_job_template == deploy.job_template()
            # a worker and `deploy` starting together: the other made the pool between our read and create
            client.create_work_pool(WorkPoolCreate(name="raced", type="process", base_job_template=_open_template()))
            cls, read = type(client), type(client).read_work_pool
        calls = []

        def not_yet(self, name):
            calls.append(name)
            if len(calls) == 1:
                raise ObjectNotFound(http_exc=Exception("not found"))
            return read(self, name)

        monkeypatch.setattr(cls, "read_work_pool", not_yet)
        deploy.ensure_work_pool("raced")
        monkeypatch.undo()
        with get_client(sync_client=True) as client:
            assert (
                calls == ["raced", "raced"]
                and client.read_work_pool("raced").base_job_template == deploy.job_template()
            )
    assert not (tmp_path / "marker").exists()


def _open_template() -> dict:
    from prefect.workers.process import ProcessWorker

    return ProcessWorker.get_default_base_job_template()


@pytest.mark.parametrize("value", ["admin:change-me", "change-me"])
def test_a_placeholder_auth_string_is_refused(value):
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    with (
        temporary_settings(updates={PREFECT_API_AUTH_STRING: value}),
        pytest.raises(ValueError, match="PREFECT_AUTH_STRING in docker/.env"),
    ):
        deploy.check_auth()
    with temporary_settings(updates={PREFECT_API_AUTH_STRING: "admin:9f8e7d6c5b4a"}):
        deploy.check_auth()  # a real one passes


def test_a_deployed_run_cannot_write_outside_the_runtime_folder(tmp_path, monkeypatch):
    from flows import settings as flow_settings

    monkeypatch.setenv("STUDENT_RISK_HOME", str(tmp_path / "runtime"))
    monkeypatch.setattr(flow_settings, "_deployed_run", lambda: True)
    assert flow_settings.run_settings(None).home == tmp_path / "runtime"
    assert flow_settings.run_settings(str(tmp_path / "runtime" / "sub")).home == tmp_path / "runtime" / "sub"
    for outside in (str(tmp_path / "elsewhere"), str(tmp_path / "runtime" / ".." / "x"), "/etc"):
        with pytest.raises(ValueError, match="outside"):
            flow_settings.run_settings(outside)
    monkeypatch.setattr(flow_settings, "_deployed_run", lambda: False)
    assert flow_settings.run_settings(str(tmp_path / "elsewhere")).home == tmp_path / "elsewhere"  # the CLI's --home
