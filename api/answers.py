"""What each GET answers, built from store rows and model bundles: named steps the routes call."""

import json
import math
from datetime import UTC, datetime

import pandas as pd
from pydantic_core import to_json

from api.champions import natural_key, point_key
from api.models import (
    Alert,
    CohortList,
    CohortMetrics,
    CohortSummary,
    Expectation,
    Factor,
    Intervention,
    ModelInfo,
    PromiseInfo,
    RealPerformance,
    ReportEntry,
    ReportIndex,
    ScoreAtPoint,
    StudentAlert,
    StudentDetail,
    StudentRisk,
    Validation,
)
from api.settings import ApiSettings
from reports.promised import intake_expectation
from risk_model import store
from risk_model.paths import safe_name
from risk_model.registry import Bundle


def factor_dicts(stored: list[dict], labels: dict[str, str]) -> list[dict]:
    """Stored top factors in the words made when the student was scored (label, the student's value, a
    typical value, the direction: `risk_model.explain`), as plain values for an answer written straight to
    JSON; scores stored before those words existed get the label and direction only."""
    return [{"feature": f["feature"], "direction": f["direction"], "label": factor_label(f, labels)} for f in stored]


def factors(stored: list[dict], labels: dict[str, str]) -> list[Factor]:
    """`factor_dicts` as models. Built without validation (`model_construct`): the fields are the service's
    own, typed where they are made; tests check the answers against the OpenAPI schema (test_api_fuzz.py)."""
    return [Factor.model_construct(**f) for f in factor_dicts(stored, labels)]


def factor_label(f: dict, labels: dict[str, str]) -> str:
    """A stored factor's words, or its feature's label and direction."""
    return f.get("text") or f"{labels.get(f['feature'], f['feature'].replace('_', ' '))} {f['direction']} risk"


def utc(t: datetime | None) -> datetime | None:
    """A stored time with its zone (SQLite keeps none)."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def latest(rows: list[dict]) -> dict:
    """The newest of a student's scores: latest cohort, then latest point, then latest run."""
    if len(rows) == 1:
        return rows[0]
    return max(rows, key=lambda r: (natural_key(r["cohort"]), point_key(r["point"]), str(r["scored_at"])))


def student_risk(student_id: str, row: dict, labels: dict[str, str]) -> StudentRisk:
    """GET /v1/students/{id}/risk from the chosen score row."""
    return StudentRisk(
        student_id=student_id,
        cohort=row["cohort"],
        point=row["point"],
        probability=row["probability"],
        tier=row["tier"],
        rank=row["rank"],
        factors=factors(row["factors"], labels),
        model_version=row["model_version"],
        scored_at=utc(row["scored_at"]),
    )


def alert(row: dict) -> Alert:
    """One stored alert as the API shows it."""
    return Alert(**{**row, "kinds": row["kinds"].split(","), "created_at": utc(row["created_at"])})


def student_detail(student_id: str, history: dict[str, list[dict]], labels_of) -> StudentDetail:
    """GET /v1/students/{id}: scores at every point (latest first), alerts and interventions (newest first).
    `labels_of(point, version)` gives a model's feature labels, for scores stored without factor texts."""
    rows = sorted(
        history["scores"],
        key=lambda r: (natural_key(r["cohort"]), point_key(r["point"]), str(r["scored_at"])),
        reverse=True,
    )
    scores = [
        ScoreAtPoint(
            **{
                **r,
                "factors": factors(r["factors"], labels_of(r["point"], r["model_version"])),
                "scored_at": utc(r["scored_at"]),
            }
        )
        for r in rows
    ]
    alerts = [
        StudentAlert(**{**alert({**r, "student_id": student_id}).model_dump(), "cohort": r["cohort"]})
        for r in history["alerts"]
    ]
    done = [
        Intervention(
            id=r["id"],
            kind=r["kind"],
            date=r["on_date"],
            staff_id=r["staff_id"],
            cohort=r["cohort"],
            note=r["note"],
            recorded_at=utc(r["recorded_at"]),
        )
        for r in history["interventions"]
    ]
    return StudentDetail(student_id=student_id, scores=scores, alerts=alerts, interventions=done)


def student_risk_json(student_id: str, row: dict, labels: dict[str, str]) -> bytes:
    """`student_risk(...)` as JSON, written straight from the row: the same document without building the
    pydantic models (the hot path; the store wrote the row, so it needs no validation)."""
    return to_json(
        {
            "student_id": student_id,
            "cohort": row["cohort"],
            "point": row["point"],
            "probability": float(row["probability"]),
            "tier": row["tier"],
            "rank": int(row["rank"]),
            "factors": factor_dicts(row["factors"], labels),
            "model_version": row["model_version"],
            "scored_at": utc(row["scored_at"]),
        }
    )


def cohort_list(rows: list[dict]) -> CohortList:
    """GET /v1/cohorts: newest cohort and latest point first."""
    rows = sorted(rows, key=lambda r: (natural_key(r["cohort"]), point_key(r["point"])), reverse=True)
    return CohortList(cohorts=[CohortSummary(**{**r, "scored_at": utc(r.get("scored_at"))}) for r in rows])


def expectation(settings: ApiSettings, engine, point: str) -> Expectation | None:
    """The newest scored cohort of `point`: expected performance and promise from its intake report (the
    copy from before outcomes first); without one, the expected numbers of its score run and no promise."""
    runs = store.latest_runs(engine, point)
    if not runs:
        return None
    run = max(runs, key=lambda r: natural_key(r["cohort"]))
    cohort, version = run["cohort"], run["model_version"]
    found = intake_expectation(settings.reports_dir / safe_name(cohort) / safe_name(point) / safe_name(version))
    if found is not None:
        expected, k, promise = found["expected"], found.get("k_percent"), found.get("promise")
        when = "before its outcomes" if found["before_outcomes"] else "after its outcomes were recorded"
        source = f"intake report of cohort {cohort} built {found.get('created_at')} ({when})"
    else:
        summary = store.run_summary(engine, cohort, point) or {}
        expected = (summary.get("by_cohort") or {}).get(cohort, {}).get("expected")
        if expected is None:
            return None
        k, promise = summary.get("top_k_percent"), None
        source = f"score run of cohort {cohort}; no intake report yet (run `student-risk report` for the promise)"
    return Expectation(
        cohort=cohort,
        model_version=version,
        **_finite({m: expected.get(m) for m in ("n", "roc_auc", "recall_top_k", "at_risk_rate")}),
        top_k_percent=k,
        promise=PromiseInfo(**_finite({f: promise.get(f) for f in PromiseInfo.model_fields})) if promise else None,
        source=source,
    )


def model_info(
    bundle: Bundle, point: str, points: list[str], scored: pd.DataFrame, expected: Expectation | None = None
) -> ModelInfo:
    """What GET /v1/model answers, from a bundle and its point's scores joined with outcomes."""
    from risk_model.evaluate import metrics

    md, s = bundle.metadata, bundle.metadata["summary"]
    kind = s.get("validation", "cv")
    by_cohort = md["metrics"].get(kind, {}).get("lightgbm", {})
    real = [
        RealPerformance(
            cohort=c,
            model_version=v,
            **_finite(metrics(g.at_risk.to_numpy(), g.probability.to_numpy(), md["top_k_percent"])),
        )
        for (c, v), g in scored.groupby(["cohort", "model_version"])
    ]
    real.sort(key=lambda r: natural_key(r.cohort), reverse=True)
    return ModelInfo(
        point=point,
        points=points,
        version=bundle.version,
        created_at=md["created_at"],
        training_cohorts=md["training_cohorts"],
        n_training_rows=md["n_training_rows"],
        validation=Validation(
            kind=kind,
            verdict=s["verdict"],
            auc=s.get("validation_auc"),
            train_auc=s.get("train_auc"),
            logistic_auc=s.get("logistic_auc"),
            headline=s["headline"],
            by_cohort={c: CohortMetrics(**_finite(m)) for c, m in by_cohort.items() if c != "all"},
        ),
        real_performance=real,
        model_card=bundle.model_card(),
        expected=expected,
    )


def _finite(m: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}


def report_index(settings: ApiSettings, limit: int) -> ReportIndex:
    """The newest `limit` report JSON files under the reports folder, each with its verdict."""
    root = settings.reports_dir
    found = []
    for path in root.glob("**/*.json") if root.is_dir() else []:
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    entries = []
    for mtime, path in sorted(found, reverse=True)[:limit]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        text = {
            k: (str(data[k]) if data.get(k) is not None else None)
            for k in ("report", "cohort", "model_version", "verdict")
        }
        warning = data.get("warning")
        entries.append(
            ReportEntry(
                path=str(path.relative_to(root)),
                **text,
                warning=warning if isinstance(warning, bool) else None,
                modified_at=datetime.fromtimestamp(mtime, UTC),
            )
        )
    return ReportIndex(reports=entries)
