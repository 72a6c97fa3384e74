"""The yearly job as Prefect 3 flows: train, score, report, and yearly (all three).

They run with no Prefect server configured (Prefect starts a temporary local one) and
against a server when PREFECT_API_URL is set. Headline metrics and report paths are
published as artifacts.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from reports import build
from risk_model import jobs
from risk_model.config import Config, Settings, load_config


def _setup(config_path: str, home: str | None) -> tuple[Config, Settings]:
    settings = Settings(home=Path(home)) if home else Settings()
    return load_config(config_path), settings


def _log():
    return get_run_logger().info


@task(name="validate", cache_policy=NO_CACHE)
def validate_task(config: Config, path: str, stage: str, point: str, cohorts: list[str] | None):
    return jobs.prepare(config, path, stage=stage, point=point, cohorts=cohorts)


@task(name="train-and-register", cache_policy=NO_CACHE)
def train_task(settings: Settings, config: Config, df, point: str, force: bool) -> dict:
    return jobs.train_and_register(settings, config, df, point=point, force=force, progress=_log())


@task(name="score-and-store", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def score_task(settings: Settings, config: Config, df, point: str, factors: bool) -> dict:
    return jobs.score_and_store(settings, config, df, point=point, factors=factors, progress=_log())


@task(name="intake-report", cache_policy=NO_CACHE)
def intake_report_task(settings: Settings, config: Config, df, point: str) -> dict:
    return build.intake_report(settings, config, df, point=point)


def _publish_training(summaries: list[dict]) -> None:
    rows = [
        {k: s[k] for k in ("point", "version", "verdict", "train_auc", "cv_auc", "validation_auc", "logistic_auc", "promoted")}
        for s in summaries
    ]
    create_table_artifact(key="training-metrics", table=rows, description="Train vs. validation AUC per prediction point")
    create_markdown_artifact(
        key="training-verdict",
        markdown="\n\n".join(f"**{s['point']}** ({s['version']}): {s['headline']}" for s in summaries),
    )


@flow(name="train")
def train_flow(config_path: str, history_path: str, home: str | None = None, force: bool = False) -> list[dict]:
    """Train one model per prediction point on past cohorts; promote each if good enough."""
    config, settings = _setup(config_path, home)
    out = []
    for point in config.points:
        df = validate_task(config, history_path, "train", point, None)
        out.append(train_task(settings, config, df, point, force))
    _publish_training(out)
    return out


@flow(name="score")
def score_flow(
    config_path: str, intake_path: str, home: str | None = None, cohort: str | None = None, factors: bool = True
) -> list[dict]:
    """Score a new intake with each point's champion and store the scores."""
    config, settings = _setup(config_path, home)
    cohorts = [cohort] if cohort else None
    out = []
    for point in config.points:
        df = validate_task(config, intake_path, "score", point, cohorts)
        out.append(score_task(settings, config, df, point, factors))
    create_table_artifact(
        key="scoring-summary",
        table=[{"point": s["point"], "students": s["n_students"], **s["tiers"], "unseen_categories": s["n_unseen_category_values"]} for s in out],
    )
    return out


@flow(name="report")
def report_flow(config_path: str, intake_path: str, home: str | None = None, cohort: str | None = None) -> list[dict]:
    """Build the intake drift report for each point; warn in the run when drift crosses its threshold."""
    config, settings = _setup(config_path, home)
    cohorts = [cohort] if cohort else None
    out = []
    for point in config.points:
        df = validate_task(config, intake_path, "score", point, cohorts)
        out.append(intake_report_task(settings, config, df, point))
    create_markdown_artifact(
        key="reports",
        markdown="\n".join(f"- [{r['cohort']} {r['model_version']}] {r['verdict']}  \n  `{r['html']}`" for r in out),
    )
    for r in out:
        if r["warning"]:
            get_run_logger().warning(r["verdict"])
    return out


@flow(name="yearly")
def yearly_flow(
    config_path: str, history_path: str, intake_path: str, home: str | None = None, cohort: str | None = None,
    force: bool = False,
) -> dict:
    """The whole yearly job: train on past cohorts, score the new intake, write the reports."""
    return {
        "train": train_flow(config_path, history_path, home, force),
        "score": score_flow(config_path, intake_path, home, cohort),
        "report": report_flow(config_path, intake_path, home, cohort),
    }
