"""Request and response models of the advising API (what the OpenAPI schema shows)."""

from datetime import date as date_
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

Tier = Literal["high", "medium", "low"]


class Problem(BaseModel):
    detail: str


class Factor(BaseModel):
    feature: str
    direction: Literal["raises", "lowers"]
    label: str = Field(
        description="Plain words for advisors with the student's value and a typical one, e.g. "
        "'average assessment score so far: 42 (typical: 71), raises risk'."
    )


class StudentRisk(BaseModel):
    student_id: str
    cohort: str
    point: str = Field(description="Prediction point of the model that scored (e.g. day30; 'default').")
    probability: float
    tier: Tier
    rank: int = Field(description="1 = highest risk in the cohort.")
    factors: list[Factor]
    model_version: str
    scored_at: datetime


class CohortStudent(BaseModel):
    student_id: str
    probability: float
    tier: Tier
    rank: int


class CohortPage(BaseModel):
    cohort: str
    point: str
    students: list[CohortStudent]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class TierCounts(BaseModel):
    high: int = 0
    medium: int = 0
    low: int = 0


class CohortSummary(BaseModel):
    cohort: str
    point: str
    n_students: int
    tiers: TierCounts
    model_version: str | None = None
    scored_at: datetime | None = None


class CohortList(BaseModel):
    cohorts: list[CohortSummary]


class ScoredRecord(BaseModel):
    index: int
    student_id: str
    probability: float
    tier: Tier | None = Field(
        description="Tier the latest scored cohort of this point would give; null if none is stored."
    )
    factors: list[Factor]
    explained: bool = Field(
        description="Whether this record's factors were computed: with ?factors=tiers (the default) only records "
        "in the tiers the stored cohort explained at scoring are; send ?factors=all for every record."
    )


class ScoreResponse(BaseModel):
    model_version: str
    point: str
    tier_basis: str | None = Field(description="Which stored cohort's tier boundaries were applied.")
    warnings: list[str]
    results: list[ScoredRecord]


class CohortMetrics(BaseModel):
    n: int
    base_rate: float | None = None
    roc_auc: float | None = None
    pr_auc: float | None = None
    brier: float | None = None
    recall_top_k: float | None = None


class Validation(BaseModel):
    kind: str = Field(description="backtest (forward, by cohort) or cv.")
    verdict: str
    auc: float | None
    train_auc: float | None
    logistic_auc: float | None
    headline: str
    by_cohort: dict[str, CohortMetrics]


class RealPerformance(CohortMetrics):
    cohort: str
    model_version: str


class PromiseInfo(BaseModel):
    status: Literal["holds", "widened", "withdrawn"]
    low: float | None = Field(description="The promised range of ROC AUC (meaningless when withdrawn).")
    high: float | None
    centre: float | None = Field(description="Mean ROC AUC of the forward backtest.")
    estimate: float | None = Field(description="Expected ROC AUC of this intake from its own probabilities.")
    drifted_weight: float | None = Field(description="Share of the model's importance in features that drifted.")
    usual_drifted_weight: float | None = Field(
        None, description="The largest such share between past cohorts; only drift beyond it widens the range."
    )
    text: str


class Expectation(BaseModel):
    cohort: str
    model_version: str
    n: int
    roc_auc: float | None = Field(description="Expected ROC AUC before outcomes (from calibrated probabilities).")
    recall_top_k: float | None
    at_risk_rate: float | None
    top_k_percent: float | None
    promise: PromiseInfo | None = Field(description="Null until the intake report of this cohort is built.")
    source: str = Field(description="Where these numbers were read.")


class ModelInfo(BaseModel):
    point: str
    points: list[str] = Field(description="Every prediction point with a champion, latest first.")
    version: str
    created_at: str
    training_cohorts: list[str]
    n_training_rows: int
    validation: Validation
    real_performance: list[RealPerformance] = Field(description="Scored cohorts with recorded outcomes, newest first.")
    model_card: str = Field(description="Markdown.")
    expected: Expectation | None = Field(
        None,
        description="The latest scored cohort of this point: its performance expected before outcomes and the "
        "promise made for it (from its intake report, the version from before outcomes first).",
    )


class ReportEntry(BaseModel):
    path: str = Field(description="Relative to the reports folder.")
    report: str | None
    cohort: str | None
    model_version: str | None
    verdict: str | None
    warning: bool | None
    modified_at: datetime


class ReportIndex(BaseModel):
    reports: list[ReportEntry]


def score_request(max_records: int) -> type[BaseModel]:
    return create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        records=(
            list[dict[str, Any]],
            Field(
                min_length=1,
                max_length=max_records,
                description=f"1 to {max_records} student records, each with the champion's contract columns "
                "(id, cohort, every feature; null for an unknown value). Nothing is stored.",
            ),
        ),
    )


class Alert(BaseModel):
    student_id: str
    point: str = Field(description="The prediction point whose new score raised the alert.")
    previous_point: str = Field(description="The student's previous point compared with.")
    previous_probability: float
    probability: float
    previous_tier: Tier
    tier: Tier
    rise: float = Field(description="probability - previous_probability.")
    kinds: list[Literal["high", "rise", "inactive"]] = Field(
        description="Rules crossed: moved into the high tier, a rise of at least [alerts] rise, newly no activity."
    )
    reason: str = Field(
        description="Plain words, e.g. 'risk rose from 0.31 to 0.62 since day 30: no activity in 15 days'."
    )
    created_at: datetime


class AlertPage(BaseModel):
    cohort: str
    alerts: list[Alert]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


InterventionKind = Literal["call", "email", "meeting", "referral", "other"]


class InterventionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: InterventionKind
    date: date_ = Field(description="When the advisor acted (not in the future).")
    staff_id: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00]+$", description="Opaque id of who acted.")
    note: str | None = Field(
        None, max_length=500, pattern=r"^[^\x00]*$", description="Short; kept out of every report and log."
    )
    cohort: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[^\x00]+$", description="Default: the student's latest cohort."
    )


class Intervention(BaseModel):
    id: int
    kind: InterventionKind
    date: date_
    staff_id: str
    cohort: str | None
    note: str | None = None
    recorded_at: datetime


class ScoreAtPoint(BaseModel):
    cohort: str
    point: str
    probability: float
    tier: Tier
    rank: int
    factors: list[Factor]
    model_version: str
    scored_at: datetime


class StudentAlert(Alert):
    cohort: str


class StudentDetail(BaseModel):
    student_id: str
    scores: list[ScoreAtPoint] = Field(description="Every stored score, latest cohort and point first.")
    alerts: list[StudentAlert] = Field(description="Newest first.")
    interventions: list[Intervention] = Field(description="Newest first.")
