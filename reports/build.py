"""Report jobs: gather what a report needs from the registry and the store, then build it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from risk_model import store
from risk_model.config import Config, Settings
from risk_model.registry import Registry


def report_dir(settings: Settings, cohort: str, point: str, version: str) -> Path:
    return settings.reports_dir / str(cohort) / point / version


def intake_report(settings: Settings, config: Config, intake: pd.DataFrame, *, point: str = "default") -> dict:
    """Drift of a scored intake against the champion's training reference."""
    from reports.intake import build_intake_report

    c = config.dataset
    cohorts = sorted(intake[c.cohort_column].astype(str).unique())
    if len(cohorts) != 1:
        raise ValueError(f"an intake report covers one cohort; this table has {cohorts}: pass --cohort")
    cohort = cohorts[0]
    bundle = Registry(settings.registry_dir).load(point=point, contract=c)
    engine = store.connect(settings.resolved_store_url)
    try:
        scores = store.read_scores(engine, cohort, point)
    finally:
        engine.dispose()
    if scores.empty:
        raise ValueError(f"cohort {cohort} has no scores for point {point!r}: run `student-risk score` first")
    current = intake.merge(
        scores[["student_id", "probability"]].rename(columns={"probability": "risk"}),
        left_on=c.id_column, right_on="student_id", how="inner",
    )
    return build_intake_report(
        bundle.reference(), current, c, config.reports, report_dir(settings, cohort, point, bundle.version),
        cohort=cohort, model_version=bundle.version,
        validation_auc=bundle.metadata["summary"]["validation_auc"],
    )
