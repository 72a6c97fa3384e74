"""A plain logistic model stored as numbers (JSON), to blend with LightGBM.

With few past cohorts a linear model often transfers to the next one as well as trees do,
and an average of the two log-odds is steadier than either (the forward backtest on OULAD
shows it). `train.select_and_fit` decides by cohort-grouped CV whether to blend; this module
only fits and applies the linear part. Its preprocessing is learned on training data and
kept as numbers, never pickled: numeric features are imputed with the training median (plus
a missing flag), long-tailed counts are put on an asinh scale, everything is standardized and
clipped at 5 SD; categories seen at least `min_count` times get a one-hot column. A category
never seen in training, in a column never missing there, adds its column's average term over
the training rows, as the trees read it (`features.over_levels`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class LinearPart:
    """Coefficients and preprocessing of a logistic model over the contract's features."""

    numeric: dict[str, dict]  # feature -> {median, asinh, mean, scale, coef, missing_coef}
    categorical: dict[str, dict[str, float]]  # feature -> {level: coef}
    intercept: float
    # feature -> its term's mean over the training rows: a term minus its mean is the feature's exact
    # contribution to the log-odds (SHAP of an additive model); empty in versions saved before it existed
    centre: dict[str, float] = field(default_factory=dict)
    # categorical features never missing in training: there a category the model never saw reads as the
    # training mix (its term's mean, `centre`), as the trees read it (`features.over_levels`); elsewhere as 0
    mixed: list[str] = field(default_factory=list)

    def logit(self, X: pd.DataFrame | Mapping[str, list], n: int | None = None) -> np.ndarray:
        """Log-odds of each row of a `features.build_features` frame, or of `n` records given as one list per
        column (numbers or None; categories or None): the per-record path, where a frame cost more than
        the whole prediction of one record."""
        n = len(X) if isinstance(X, pd.DataFrame) else len(next(iter(X.values()), [])) if n is None else n
        z = np.full(n, self.intercept)
        for _, term in self._terms(X):
            z += term
        return z

    def contributions(self, X: pd.DataFrame | Mapping[str, list]) -> tuple[dict[str, np.ndarray], float]:
        """Each feature's contribution to the log-odds of each row (its term minus the term's training mean)
        and the expected log-odds they add to: `logit` is their sum. Needs `centre` (a version fitted with it)."""
        return (
            {col: term - self.centre[col] for col, term in self._terms(X)},
            self.intercept + sum(self.centre.values()),
        )

    def _terms(self, X: pd.DataFrame | Mapping[str, list]) -> Iterator[tuple[str, np.ndarray]]:
        """Each feature's additive term of the log-odds, for the rows of `X` (a frame or one list per column)."""
        for col, p in self.numeric.items():
            values = X[col]
            x = values.to_numpy(dtype="float64") if isinstance(values, pd.Series) else np.array(values, dtype="float64")
            missing = np.isnan(x)
            yield col, p["coef"] * _scaled(np.where(missing, p["median"], x), p) + p["missing_coef"] * missing
        for col, coefs in self.categorical.items():
            values = X[col]
            unknown = self.centre.get(col, 0.0) if col in self.mixed else 0.0  # a value never seen, or missing
            if isinstance(values, pd.Series):
                yield col, values.astype(object).map(coefs).fillna(unknown).to_numpy(dtype="float64")
            else:
                yield col, np.array([coefs.get(v, unknown) if isinstance(v, str) else unknown for v in values])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LinearPart:
        return cls(d["numeric"], d["categorical"], float(d["intercept"]), d.get("centre", {}), d.get("mixed", []))

    @classmethod
    def fit(
        cls,
        X: pd.DataFrame,
        y: np.ndarray,
        numeric: list[str],
        categorical: list[str],
        *,
        monotone: Mapping[str, int] | None = None,
        min_count: int = 20,
    ) -> LinearPart:
        """Fit on a `build_features` frame; C=0.5 as the project's logistic baseline.

        A `monotone` feature (1: more never lowers risk, -1: never raises it) whose fitted slope
        goes the other way is left out and the model refitted, so the blend keeps the promise."""
        monotone, dropped = monotone or {}, set()
        while True:
            part = cls._fit(X, y, [f for f in numeric if f not in dropped], categorical, min_count)
            wrong = {f for f, sign in monotone.items() if f in part.numeric and part.numeric[f]["coef"] * sign < 0}
            if not wrong:
                return part
            dropped |= wrong

    @classmethod
    def _fit(cls, X: pd.DataFrame, y: np.ndarray, numeric: list[str], categorical: list[str], min_count: int):
        prep: dict[str, dict] = {}
        columns = []
        for col in numeric:
            x = X[col].to_numpy(dtype="float64")
            missing = np.isnan(x)
            median = float(np.nanmedian(x)) if (~missing).any() else 0.0
            filled = np.where(missing, median, x)
            long_tail = bool(filled.min() >= 0 and pd.Series(filled).skew() > 2)
            p = {"median": median, "asinh": long_tail, "mean": 0.0, "scale": 1.0}
            t = np.arcsinh(filled) if long_tail else filled
            p["mean"], p["scale"] = float(t.mean()), float(t.std() or 1.0)
            prep[col] = p
            columns += [_scaled(filled, p), missing.astype(float)]
        levels: dict[str, list[str]] = {}
        rare: dict[str, list[str]] = {}  # seen, but too seldom for a column of their own: 0, not "never seen"
        for col in categorical:
            counts = X[col].astype(object).value_counts()
            levels[col] = [str(v) for v in counts.index[counts >= min_count]]
            rare[col] = [str(v) for v in counts.index[(counts < min_count) & (counts > 0)]]
            values = X[col].astype(object).to_numpy()
            columns += [(values == lv).astype(float) for lv in levels[col]]
        design = np.column_stack(columns) if columns else np.zeros((len(X), 0))
        # One BLAS thread: on a busy 2-core machine OpenBLAS's threads made this fit 15-30x slower.
        with threadpool_limits(1, user_api="blas"):
            model = LogisticRegression(max_iter=2000, C=0.5).fit(design, y)
        coef = iter(model.coef_[0])
        numeric_out = {}
        for col in numeric:
            numeric_out[col] = {**prep[col], "coef": float(next(coef)), "missing_coef": float(next(coef))}
        categorical_out = {
            col: {**{lv: float(next(coef)) for lv in levels[col]}, **dict.fromkeys(rare[col], 0.0)}
            for col in categorical
        }
        mixed = [col for col in categorical if X[col].notna().all()]
        part = cls(numeric_out, categorical_out, float(model.intercept_[0]), mixed=mixed)
        return replace(part, centre={col: float(term.mean()) for col, term in part._terms(X)})


def _scaled(x: np.ndarray, p: dict) -> np.ndarray:
    t = np.arcsinh(x) if p["asinh"] else x
    return np.clip((t - p["mean"]) / p["scale"], -5, 5)
