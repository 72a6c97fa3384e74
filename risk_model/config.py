"""Typed settings: the dataset contract and the knobs of training, scoring and reports.

One TOML file holds everything about a dataset and how to model it (see
`risk_model/examples/demo.toml`); where runtime output goes and which score store to use are
deployment settings read from the environment (`STUDENT_RISK_*`) or CLI options.
Built once at an edge (CLI, flow, API) and passed down; nothing here reads files at import.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(ValueError):
    """A settings file that cannot be used, with what to fix."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetContract(_Frozen):
    """What the input files look like and what each column is for."""

    id_column: str
    cohort_column: str
    cohort_order: list[str] | None = Field(
        default=None,
        description="Cohorts oldest first. When omitted, cohorts sort naturally "
        "(2019 < 2020; 2013B < 2013J < 2014B) and any cohort is accepted.",
    )
    outcome_column: str
    at_risk_values: list[str] = Field(min_length=1)
    outcome_values: list[str] | None = Field(
        default=None, description="Every allowed outcome value; others are rejected."
    )
    numeric_features: list[str] = []
    categorical_features: list[str] = []
    sensitive_columns: list[str] = []
    sensitive_as_features: list[str] = Field(
        default=[], description="Sensitive columns the model may also use as features."
    )
    drop_columns: list[str] = []
    monotone: dict[str, Literal[-1, 1]] = Field(
        default={},
        description="Numeric features whose effect on risk may only go one way: 1 = more never lowers "
        "risk, -1 = more never raises it. Keeps the model believable to advisors.",
    )
    feature_labels: dict[str, str] = Field(default={}, description="Plain-words label per feature, shown to advisors.")
    delimiter: Literal[",", ";", "\t", "|"] | None = Field(
        default=None, description="CSV field separator; detected from the header when omitted."
    )
    encoding: str | None = Field(
        default=None, description="Text encoding of CSV files (e.g. utf-8, utf-16, latin-1); detected when omitted."
    )
    sheet: str | int | None = Field(
        default=None, description=".xlsx files: sheet name or 0-based index; default first."
    )
    value_labels: dict[str, dict[str, str]] = Field(
        default={},
        description='Words for coded values, per column: [dataset.value_labels.Gender] 1 = "male". '
        "Shown in fairness reports and factors instead of the raw code.",
    )
    bands: dict[str, list[float]] = Field(
        default={},
        description="Cut points that band a numeric sensitive column for fairness slices: Age = [17, 21, 25] gives "
        "17-20, 21-24, 25+. The model still sees the number.",
    )

    @model_validator(mode="after")
    def _check(self) -> DatasetContract:
        features = self.numeric_features + self.categorical_features
        if not features and not self.sensitive_as_features:
            raise ValueError("the contract names no feature: list numeric_features or categorical_features")
        # a sensitive column the model may use as a number: listed under numeric_features too
        numeric_sensitive = set(self.numeric_features) & set(self.sensitive_as_features)
        roles = {
            "id_column": [self.id_column],
            "cohort_column": [self.cohort_column],
            "outcome_column": [self.outcome_column],
            "numeric_features": self.numeric_features,
            "categorical_features": self.categorical_features,
            "sensitive_columns": self.sensitive_columns,
            "drop_columns": self.drop_columns,
        }
        seen: dict[str, str] = {}
        for role, cols in roles.items():
            for col in cols:
                if col in numeric_sensitive and role == "sensitive_columns":
                    continue
                if col in seen:
                    hint = (
                        ", or list it under sensitive_as_features too to use it as a numeric feature"
                        if {seen[col], role} == {"numeric_features", "sensitive_columns"}
                        else ""
                    )
                    raise ValueError(f"column {col!r} is listed under both {seen[col]} and {role}: keep one{hint}")
                seen[col] = role
        bad_mono = [c for c in self.monotone if c not in self.numeric_features]
        if bad_mono:
            raise ValueError(f"monotone names {bad_mono}, which are not numeric_features")
        stray = [c for c in self.sensitive_as_features if c not in self.sensitive_columns]
        if stray:
            raise ValueError(f"sensitive_as_features names {stray}, which are not in sensitive_columns")
        named = set(seen)
        unknown_labels = [c for c in self.value_labels if c not in named]
        if unknown_labels:
            raise ValueError(f"value_labels names {unknown_labels}, which the contract does not list as columns")
        for col, cuts in self.bands.items():
            if col not in self.sensitive_columns:
                raise ValueError(f"bands names {col!r}, which is not in sensitive_columns: bands are fairness slices")
            if col in self.categorical:
                raise ValueError(
                    f"bands names {col!r}, a categorical feature: list it under numeric_features to band it"
                )
            if not cuts or any(b <= a for a, b in zip(cuts, cuts[1:], strict=False)):
                raise ValueError(f"bands for {col!r} must be increasing cut points, e.g. [17, 21, 25]; got {cuts}")
        return self

    @property
    def features(self) -> list[str]:
        """Model inputs, in a fixed order: numeric, categorical, then permitted sensitive ones."""
        return self.numeric_features + self.categorical_features + self.sensitive_categorical

    @property
    def categorical(self) -> list[str]:
        return self.categorical_features + self.sensitive_categorical

    @property
    def sensitive_categorical(self) -> list[str]:
        """Sensitive features the model reads as categories (those also under numeric_features stay numbers)."""
        return [s for s in self.sensitive_as_features if s not in self.numeric_features]

    @property
    def columns(self) -> list[str]:
        """Every column the contract names, once each, as written."""
        cols = [self.id_column, self.cohort_column, self.outcome_column, *self.features, *self.sensitive_columns]
        return list(dict.fromkeys(cols + self.drop_columns))

    def label(self, feature: str) -> str:
        return self.feature_labels.get(feature, feature.replace("_", " "))

    def cohort_key(self, cohort: str) -> tuple:
        """Sort key of a cohort: its place in `cohort_order`, else a natural sort."""
        if self.cohort_order is not None:
            return (self.cohort_order.index(cohort),)
        # (0, number) or (1, text) per part, so "2019" and "A1" still compare
        return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.findall(r"\d+|\D+", str(cohort)))

    def sort_cohorts(self, cohorts) -> list[str]:
        return sorted({str(c) for c in cohorts}, key=self.cohort_key)


class TrainingConfig(_Frozen):
    """How models are chosen, validated and judged."""

    top_k_percent: float = Field(10.0, gt=0, le=100, description="Advisors reach this share of students.")
    seed: int = 42
    max_trees: int = Field(2000, ge=10)
    early_stopping_rounds: int = Field(50, ge=5)
    learning_rate: float = 0.05
    param_grid: list[dict[str, bool | int | float | str]] = Field(
        default=[
            {"num_leaves": 4, "min_data_in_leaf": 100, "lambda_l2": 10.0},
            {"num_leaves": 8, "min_data_in_leaf": 50, "lambda_l2": 5.0},
            {"num_leaves": 16, "min_data_in_leaf": 40, "lambda_l2": 1.0},
            {"num_leaves": 32, "min_data_in_leaf": 20, "lambda_l2": 1.0},
        ],
        description="LightGBM parameter sets tried; the one with the best cohort-grouped CV AUC wins.",
    )
    calibration: Literal[
        "auto", "none", "temperature-recent", "sigmoid", "sigmoid-recent", "isotonic", "isotonic-recent"
    ] = Field(
        "auto",
        description="How raw scores become probabilities. auto: chosen by out-of-time calibration error in the "
        "forward backtest (risk_model/calibration.py); none: the model's own; sigmoid/isotonic: fitted on "
        "out-of-fold predictions; *-recent: fitted on the forward predictions of the most recent past cohort.",
    )
    num_threads: int = Field(
        0,
        ge=0,
        description="LightGBM threads; 0 = one thread below 100k rows (faster there, and immune to "
        "busy cores), all cores above.",
    )
    eval_every: int = Field(
        5,
        ge=1,
        description="Early stopping reads the held-out AUC every this many trees (1: every tree, as lgb.cv). "
        "Sorting every fold for its AUC at every tree was a fifth of training; the tree count is then a "
        "multiple of this.",
    )
    tune_sample_above: int = Field(
        50_000,
        ge=100,
        description="Training rows above which the parameter set is chosen on a sample (`tune_sample_rows`, "
        "stratified by cohort and outcome); the chosen set's tree count then comes from one cohort-grouped CV "
        "on all rows, and the model is fitted on all rows.",
    )
    tune_sample_rows: int = Field(
        20_000, ge=100, description="Rows of the sample parameters are chosen on (see tune_sample_above)."
    )
    dask_fit_above: int = Field(
        1_000_000,
        ge=100,
        description="Training rows above which the final fit runs on the Dask cluster with LightGBM's own "
        "Dask estimator (when training runs on a cluster; the flow's train-on-dask does).",
    )
    overfit_gap: float = Field(0.08, description="Train AUC minus validation AUC above this: overfits.")
    underfit_auc: float = Field(0.65, description="Train AUC below this: underfits.")
    reference_sample: int = Field(20_000, ge=100, description="Rows kept with the model as the drift reference.")


class ScoringConfig(_Frozen):
    """How probabilities become tiers and explanations."""

    tier_mode: Literal["capacity", "threshold"] = "capacity"
    high_share: float = Field(0.10, gt=0, lt=1, description="capacity mode: top share of the cohort tiered high.")
    medium_share: float = Field(0.25, gt=0, lt=1, description="capacity mode: top share tiered high or medium.")
    high_threshold: float = Field(0.5, gt=0, lt=1, description="threshold mode: probability for high.")
    medium_threshold: float = Field(0.3, gt=0, lt=1, description="threshold mode: probability for medium.")
    n_factors: int = Field(3, ge=0, le=10)
    factor_tiers: list[Literal["high", "medium", "low"]] = Field(
        ["high", "medium"],
        description="Tiers whose students get their top factors when a cohort is scored (exact TreeSHAP, the "
        "slow part). Every other student gets them when first looked up through the API or alerted, then "
        "kept in the store. List all three to explain everyone at scoring time.",
    )

    @model_validator(mode="after")
    def _order(self) -> ScoringConfig:
        if self.medium_share < self.high_share:
            raise ValueError("medium_share is cumulative (high + medium) and must be >= high_share")
        if self.medium_threshold > self.high_threshold:
            raise ValueError("medium_threshold must be <= high_threshold")
        return self


class ReportConfig(_Frozen):
    """Thresholds at which reports raise a warning."""

    drift_share: float = Field(0.3, gt=0, le=1, description="Share of drifted features that means dataset drift.")
    drift_threshold: float | None = Field(None, description="Per-column test threshold; Evidently's default if empty.")
    prediction_drift_threshold: float = Field(0.1, description="Wasserstein distance (normed) of predicted risk.")
    performance_drop: float = Field(0.05, description="Real AUC this far below validation: a drop.")
    estimate_tolerance: float = Field(
        0.03,
        gt=0,
        le=1,
        description="The AUC estimated before outcomes (CBPE) further than this from the real AUC: the estimate missed.",
    )
    max_rows: int = Field(50_000, ge=1000, description="Rows per side above which reports sample.")
    min_group_size: int = Field(30, ge=1, description="Fairness groups smaller than this are merged or hidden.")
    bootstrap: int = Field(200, ge=10)
    calibration_bins: int = Field(
        10, ge=2, le=50, description="Groups of equal size by predicted risk in calibration curves."
    )
    fairness_gap: float = Field(
        0.10,
        gt=0,
        le=1,
        description="A between-group difference in ROC AUC, TPR or FPR above this (and beyond chance): a gap to review.",
    )
    calibration_gap: float = Field(
        0.05,
        gt=0,
        le=1,
        description="Two groups whose calibration error (observed rate minus mean predicted risk) differs by more than "
        "this (beyond chance): a gap to review.",
    )


class PointConfig(_Frozen):
    """A prediction point: a day from the cohort's start and the columns that become known then.

    Its name is `day<day>` (so points sort by time everywhere, and the API's latest point is the
    last one). Columns listed under `known` are features from this point on and are not used
    by earlier points; every other feature of the contract is known from the first point.
    """

    day: int = Field(description="Days from the cohort's start; activity is windowed to days <= this.")
    label: str = Field("", description="Plain words for advisors, e.g. 'after semester 1'.")
    known: list[str] = Field(default=[], description="Feature columns that first become known at this point.")

    @property
    def name(self) -> str:
        return f"day{self.day}"


class AlertConfig(_Frozen):
    """When a student's new score is worth an advisor's attention (compared with their previous point)."""

    rise: float = Field(
        0.15, gt=0, le=1, description="A rise in probability of at least this since the previous point."
    )
    to_high: bool = Field(True, description="Moving into the high tier since the previous point is an alert.")
    recency_feature: str = Field(
        "activity_days_since_last", description="Days since the last activity (a feature of the intake, if present)."
    )
    inactive_days: float = Field(
        14, gt=0, description="No activity for at least this many days, newly since the previous point, is an alert."
    )
    max_factors: int = Field(3, ge=0, le=10, description="Risk-raising factors named in an alert's reason.")
    batch_size: int = Field(500, ge=1, le=10_000, description="Alerts per webhook delivery.")


class SourceConfig(_Frozen):
    """Where the student table comes from: a ready table, or raw files a source turns into one."""

    kind: Literal["table", "oulad"] = "table"
    prediction_days: list[int] = Field(
        default=[],
        description="Days from course start at which to predict; one model each. Shorthand for "
        "[[source.points]] that add no column.",
    )
    points: list[PointConfig] = Field(
        default=[], description="Prediction points with the columns that become known at each; one model each."
    )

    @model_validator(mode="after")
    def _points(self) -> SourceConfig:
        if self.prediction_days and self.points:
            raise ValueError("give prediction_days or [[source.points]], not both")
        days = [p.day for p in self.points] or list(self.prediction_days)
        if len(set(days)) != len(days):
            raise ValueError(f"prediction days must differ, got {days}")
        if days != sorted(days):
            raise ValueError(f"list prediction points in time order (earliest first), got days {days}")
        return self

    @property
    def all_points(self) -> list[PointConfig]:
        """Every prediction point, earliest first."""
        return list(self.points) or [PointConfig(day=d) for d in self.prediction_days]


class ResourceTypes(_Frozen):
    """A lookup file giving each resource its activity type (OULAD's `vle.csv`: id_site -> activity_type)."""

    file: str
    resource_column: str
    type_column: str


class ActivityConfig(_Frozen):
    """A learning-environment activity log: one row per student, cohort, day (or time), type and count.

    Moodle, Canvas or Blackboard exports reduce to this. A relative `file` is read from the data
    folder given on the command line (the folder itself, or the folder of the student table).
    Features per prediction point use only rows dated on or before the point's day.
    """

    file: str = Field(description="CSV (also .csv.gz) or Parquet; relative paths resolve against the data folder.")
    id_column: str | list[str] = Field(
        description="Student id; several columns are joined with '-' (OULAD: code_module-id_student)."
    )
    cohort_column: str
    day_column: str | None = Field(None, description="Day number from the cohort's start (negative: before it).")
    timestamp_column: str | None = Field(None, description="A date or date-time; needs cohort_start.")
    cohort_start: dict[str, str] = Field(default={}, description="Start date of each cohort (YYYY-MM-DD).")
    type_column: str | None = Field(None, description="Activity type (view, forum, quiz...); or from resource_types.")
    count_column: str | None = Field(None, description="Count per row; one per row when omitted.")
    resource_column: str | None = Field(None, description="Resource id (page, file, site); gives distinct resources.")
    resource_types: ResourceTypes | None = None
    types: list[str] = Field(default=[], description="Activity types that get their own feature (activity_<type>).")
    section_columns: list[str] = Field(
        default=[],
        description="Columns of the student table that, with the cohort, make a class (e.g. a module): "
        "activity is also compared with those classmates as a percentile.",
    )

    @model_validator(mode="after")
    def _check(self) -> ActivityConfig:
        if (self.day_column is None) == (self.timestamp_column is None):
            raise ValueError("give exactly one of day_column or timestamp_column")
        if self.timestamp_column and not self.cohort_start:
            raise ValueError("timestamp_column needs cohort_start: the start date of each cohort")
        if self.type_column and self.resource_types:
            raise ValueError("give the activity type by type_column or resource_types, not both")
        if self.resource_types and not self.resource_column:
            raise ValueError("resource_types needs resource_column to look resources up")
        bad = [t for t in self.types if not re.fullmatch(r"[A-Za-z0-9_]+", t)]
        if bad:
            raise ValueError(f"types {bad}: use letters, digits and underscores only (they become column names)")
        if self.types and not (self.type_column or self.resource_types):
            raise ValueError("types needs type_column or resource_types")
        return self

    @property
    def id_columns(self) -> list[str]:
        return [self.id_column] if isinstance(self.id_column, str) else list(self.id_column)

    @property
    def feature_labels(self) -> dict[str, str]:
        """Every activity feature with its plain-words label, in a fixed order."""
        labels = {
            "activity_total": "learning-platform activity so far",
            "activity_last7": "activity in the last 7 days",
            "activity_last14": "activity in the last 14 days",
            "activity_days": "days active on the learning platform",
            "activity_trend": "activity in the last two weeks compared with earlier (log ratio of daily rates)",
            "activity_days_since_last": "days since the last activity",
            "activity_before_start": "activity before the start",
            "activity_total_pct": "activity so far compared with classmates (percentile)",
            "activity_last14_pct": "recent activity compared with classmates (percentile)",
            "activity_days_pct": "active days compared with classmates (percentile)",
        }
        if self.resource_column:
            labels["activity_resources"] = "distinct resources used so far"
        for t in self.types:
            labels[f"activity_{t}"] = f"{t.replace('_', ' ')} activity so far"
        return labels


class Config(_Frozen):
    dataset: DatasetContract
    source: SourceConfig = SourceConfig()
    activity: ActivityConfig | None = None
    training: TrainingConfig = TrainingConfig()
    scoring: ScoringConfig = ScoringConfig()
    reports: ReportConfig = ReportConfig()
    alerts: AlertConfig = AlertConfig()

    @model_validator(mode="after")
    def _with_activity(self) -> Config:
        """Activity features join the contract's numeric features (once), with their labels."""
        if self.activity is None:
            return self
        if not self.source.all_points:
            raise ValueError("[activity] needs prediction points: set prediction_days or [[source.points]] with a day")
        labels = self.activity.feature_labels
        c = self.dataset
        add = [f for f in labels if f not in c.numeric_features]
        if add:
            taken = [f for f in add if f in c.features or f in c.sensitive_columns or f in c.drop_columns]
            if taken:
                raise ValueError(f"columns {taken} are made from [activity]: rename those columns of the table")
            dataset = c.model_copy(
                update={
                    "numeric_features": [*c.numeric_features, *add],
                    "feature_labels": {**labels, **c.feature_labels},
                }
            )
            object.__setattr__(self, "dataset", dataset)
        return self

    @model_validator(mode="after")
    def _known_are_features(self) -> Config:
        for p in self.source.points:
            stray = [col for col in p.known if col not in self.dataset.features]
            if stray:
                raise ValueError(f"[[source.points]] day {p.day}: known names {stray}, which are not features")
        return self

    @property
    def points(self) -> list[str]:
        """Prediction points: one champion model each (`default` when none is configured)."""
        return [p.name for p in self.source.all_points] or ["default"]

    def point(self, point: str) -> PointConfig | None:
        """The settings of a prediction point; None for `default`."""
        return next((p for p in self.source.all_points if p.name == point), None)

    def for_point(self, point: str) -> Config:
        """These settings with the contract's features cut to those known at `point`.

        A column named under a later point's `known` is dropped from the features (kept in the
        table): a model of an earlier point never sees it. Idempotent."""
        names = [p.name for p in self.source.points]
        if point not in names:
            return self
        later = {col for p in self.source.points[names.index(point) + 1 :] for col in p.known}
        c = self.dataset
        if not later & set(c.features):
            return self
        dataset = c.model_copy(
            update={
                "numeric_features": [f for f in c.numeric_features if f not in later],
                "categorical_features": [f for f in c.categorical_features if f not in later],
                "sensitive_as_features": [f for f in c.sensitive_as_features if f not in later],
                "drop_columns": [*c.drop_columns, *sorted(later - set(c.sensitive_columns))],
                "monotone": {k: v for k, v in c.monotone.items() if k not in later},
            }
        )
        return self.model_copy(update={"dataset": dataset})


def load_config(path: str | Path) -> Config:
    """Read a settings file; a bad one fails with the file, the key and what is wrong."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: settings file not found. Pass --config with a TOML file like risk_model/examples/demo.toml."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc}).") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{path}: the settings file has {exc.error_count()} problem(s):"]
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  - [{where}] {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


class Settings(BaseSettings):
    """Where output goes and which store holds scores (env `STUDENT_RISK_HOME`, `STUDENT_RISK_STORE_URL`,
    `STUDENT_RISK_STORE_PASSWORD_FILE`: the password read from a file, never kept in the environment)."""

    model_config = SettingsConfigDict(env_prefix="STUDENT_RISK_", extra="ignore")

    home: Path = Field(Path("runtime"), description="Runtime folder: models, scores, reports, exports.")
    store_url: str | None = Field(None, description="SQLAlchemy URL; default is a SQLite file in the runtime folder.")
    store_password_file: Path | None = Field(
        None, description="File holding the store's database password (a Docker secret), joined into store_url."
    )

    @property
    def registry_dir(self) -> Path:
        return self.home / "models"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def exports_dir(self) -> Path:
        return self.home / "exports"

    @property
    def resolved_store_url(self) -> str:
        if not self.store_url:
            return f"sqlite:///{(self.home / 'scores.db').resolve()}"
        if self.store_password_file is None:
            return self.store_url
        from sqlalchemy.engine import make_url

        password = self.store_password_file.read_text().strip()
        return make_url(self.store_url).set(password=password).render_as_string(hide_password=False)
