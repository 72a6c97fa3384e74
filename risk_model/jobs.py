"""The yearly job's steps as plain functions: what a flow task or the CLI calls.

Each step validates before it writes, and writes atomically (registry) or in one
transaction (store), so a failure leaves earlier results as they were.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from risk_model import advising, alerts, store
from risk_model.config import Config, Settings
from risk_model.registry import Registry
from risk_model.schema import Stage, at_risk, validate
from risk_model.score import ScoreResult, score
from risk_model.sources import load_table
from risk_model.train import train

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


def prepare(
    config: Config,
    path: str | Path,
    *,
    stage: Stage,
    point: str = "default",
    cohorts: list[str] | None = None,
) -> pd.DataFrame:
    """Load the table for a prediction point and validate it against the contract."""
    df = load_table(config, path, point=point, stage=stage, cohorts=cohorts)
    return validate(df, config.dataset, stage=stage, source=str(path))


def train_and_register(
    settings: Settings,
    config: Config,
    df: pd.DataFrame,
    *,
    point: str = "default",
    force: bool = False,
    progress: Progress = log.info,
) -> dict:
    """Train on validated past cohorts, save a new version, promote it if it is at least as good."""
    result = train(df, config, progress=progress)
    registry = Registry(settings.registry_dir)
    version = registry.save(result, config, point=point)
    promoted, why = registry.promote(version, point=point, force=force)
    progress(f"Model {version} saved; {'now champion' if promoted else 'NOT promoted'} ({why})")
    return {
        "version": version,
        "point": point,
        "promoted": promoted,
        "promotion": why,
        "champion": registry.champion(point),
        "model_dir": str(registry.root / point / "versions" / version),
        "training_cohorts": result.training_cohorts,
        **result.summary,
    }


def score_and_store(
    settings: Settings,
    config: Config,
    df: pd.DataFrame,
    *,
    point: str = "default",
    factors: bool = True,
    progress: Progress = log.info,
) -> dict:
    """Score a validated intake with the champion, replace its scores in the store, export CSV."""
    bundle = Registry(settings.registry_dir).load(point=point, contract=config.dataset)
    result = score(bundle, df, config.dataset, config.scoring, factors=factors, progress=progress)
    return store_scores(settings, result, progress=progress)


def store_scores(settings: Settings, result: ScoreResult, *, progress: Progress = log.info) -> dict:
    """Replace the result's cohort scores in the store (one transaction) and export them as CSV."""
    with store.opened(settings.resolved_store_url) as engine:
        n = store.write_scores(engine, result.scores, result.summary)
    settings.exports_dir.mkdir(parents=True, exist_ok=True)
    cohorts = "-".join(result.summary["cohorts"])
    export = settings.exports_dir / f"scores-{cohorts}-{result.summary['point']}.csv"
    store.export_csv(result.scores, export)
    progress(
        f"Scored {n} students of cohort {cohorts} with model {result.summary['model_version']}: {result.summary['tiers']}"
    )
    return {**result.summary, "store": _safe_url(settings.resolved_store_url), "export": str(export)}


def alert_and_store(settings: Settings, config: Config, df: pd.DataFrame, *, point: str = "default") -> dict:
    """Compare each student's newly stored score at `point` with their previous point, replace that
    point's alerts and queue them for webhook subscribers (one transaction per cohort)."""
    c = config.dataset
    recency = None
    feature = config.alerts.recency_feature
    if feature in df.columns:
        recency = pd.Series(
            pd.to_numeric(df[feature], errors="coerce").to_numpy(float), index=df[c.id_column].astype(str)
        )
    out: dict[str, dict] = {}
    with store.opened(settings.resolved_store_url) as engine:
        for cohort in sorted(df[c.cohort_column].astype(str).unique()):
            new = store.read_scores(engine, cohort, point)
            before = alerts.earlier_points(store.cohort_points(engine, cohort), point)
            previous = alerts.previous_scores(advising.earlier_scores(engine, cohort, before))
            found = alerts.compute_alerts(new, previous, config.alerts, recency=recency)
            written = advising.write_alerts(engine, cohort, point, found, batch_size=config.alerts.batch_size)
            out[cohort] = {**alerts.summary(found), **written, "compared_with": before}
            log.info("Alerts for cohort %s at %s: %s", cohort, point, alerts.summary(found))
    return {"point": point, "cohorts": out}


def record_outcomes(settings: Settings, config: Config, df: pd.DataFrame) -> dict:
    """Store the real outcomes of a scored cohort (validated with stage="outcomes")."""
    c = config.dataset
    frame = pd.DataFrame(
        {
            "cohort": df[c.cohort_column].astype(str),
            "student_id": df[c.id_column].astype(str),
            "outcome": df[c.outcome_column].astype(str),
            "at_risk": at_risk(df, c),
        }
    )
    with store.opened(settings.resolved_store_url) as engine:
        n = store.write_outcomes(engine, frame)
    return {
        "n_outcomes": n,
        "cohorts": sorted(frame.cohort.unique().tolist()),
        "at_risk_rate": float(frame.at_risk.mean()),
    }


def _safe_url(url: str) -> str:
    """The store URL without its password, for logs and summaries."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
