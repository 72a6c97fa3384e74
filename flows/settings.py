"""How the flows are deployed: settings read from the environment (`STUDENT_RISK_DEPLOY_*`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DeploySettings(BaseSettings):
    """How the flows are deployed on a Prefect server: schedules, work pool, default parameters.

    Read from the environment (`STUDENT_RISK_DEPLOY_*`, e.g. the compose env file) or given
    by `student-risk deploy` options. Paths are as the worker sees them.
    """

    model_config = SettingsConfigDict(env_prefix="STUDENT_RISK_DEPLOY_", extra="ignore")

    name: str = Field(
        "student-risk", description="Deployment name: runs are `<flow>/<name>`, e.g. `yearly/student-risk`."
    )
    work_pool: str = Field("student-risk", description="Prefect work pool (type process) the worker polls.")
    yearly_cron: str = Field("0 6 1 9 *", description="When the yearly job runs (cron; default 06:00 on 1 September).")
    term_cron: str | None = Field(
        None, description="Optional re-scoring of the intake each term (cron), e.g. '0 6 1 1,4 *'."
    )
    timezone: str = Field("UTC", description="IANA time zone of the cron schedules, e.g. Europe/London.")
    config_path: Path | None = Field(None, description="Settings file (TOML) the flows use.")
    history_path: Path | None = Field(None, description="Past cohorts with outcomes (file or raw-source folder).")
    intake_path: Path | None = Field(None, description="The new intake to score (file or raw-source folder).")
    outcomes_path: Path | None = Field(None, description="Real outcomes of the last scored intake, when they arrive.")
    cohort: str | None = Field(None, description="Only this cohort of the intake file; all when empty.")
    fail_on_drift: bool = Field(
        True, description="Mark the yearly/report run Failed when a report crosses its threshold."
    )
    notify_block: str | None = Field(
        None,
        description="Prefect notification block (`<type>/<name>`, e.g. `slack-webhook/advising`) told of failed runs.",
    )
    dask_address: str | None = Field(
        None, description="Dask scheduler for partitioned scoring; a local cluster when empty."
    )
    dask_workers: int = Field(2, ge=1, description="Workers of the local Dask cluster when no address is given.")
    partitions: int = Field(4, ge=1, description="Partitions of the intake for partitioned scoring.")
