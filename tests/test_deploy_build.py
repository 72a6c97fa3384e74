"""What `student-risk deploy` would send, built without a server: schedules, parameters, entrypoints."""

from __future__ import annotations

import pytest
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
        assert d.job_variables["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "risk_model,reports"
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


def test_per_term_scoring_schedule_cohort_and_home(settings):
    s = settings.model_copy(update={"term_cron": "0 6 1 1,4 *", "cohort": "2026"})
    deps = by_flow(deploy.build(s, home="/srv/runtime"))
    assert [x.schedule.cron for x in deps["score"].schedules] == ["0 6 1 1,4 *"]
    assert deps["score"].parameters["cohort"] == "2026" and deps["yearly"].parameters["home"] == "/srv/runtime"
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
