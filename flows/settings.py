"""How the flows are deployed (`STUDENT_RISK_DEPLOY_*`), and where a flow run may write."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from risk_model.config import Settings


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
    outcomes_partial: Literal["refuse", "merge", "replace"] = Field(
        "refuse",
        description="An outcomes file lacking some students whose outcomes are recorded: refuse (default), merge "
        "(keep the others') or replace (keep only the file's). A run may override it: --param partial=merge.",
    )
    cohort: str | None = Field(None, description="Only this cohort of the intake file; all when empty.")
    fail_on_drift: bool = Field(
        True, description="Mark the yearly/report run Failed when a report crosses its threshold."
    )
    notify_block: str | None = Field(
        None,
        description="Prefect notification block (`<type>/<name>`, e.g. `slack-webhook/advising`) told of failed runs.",
    )
    dask_address: str | None = Field(
        None,
        description="Dask scheduler for partitioned scoring and training's units (and LightGBM's Dask fit above "
        "[training] dask_fit_above rows); a local cluster when empty.",
    )
    dask_workers: int = Field(2, ge=1, description="Workers of the local Dask cluster when no address is given.")
    partitions: int = Field(4, ge=1, description="Partitions of the intake for partitioned scoring.")


def _deployed_run() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return bool(ctx and ctx.flow_run and ctx.flow_run.deployment_id)


def run_settings(home: str | None) -> Settings:
    """The runtime settings of a flow run: the `home` parameter, else STUDENT_RISK_HOME.

    A deployed run (started by a worker) writes only inside the worker's STUDENT_RISK_HOME:
    whoever may start runs on the server must not redirect models, scores or reports elsewhere."""
    base = Settings()
    if not home:
        return base
    if _deployed_run():
        root, target = base.home.expanduser().resolve(), Path(home).expanduser().resolve()
        if target != root and root not in target.parents:
            raise ValueError(
                f"A deployed run writes only inside the worker's runtime folder {root} (STUDENT_RISK_HOME); "
                f"home={home!r} is outside it."
            )
    return Settings(home=Path(home))
