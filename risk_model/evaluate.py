"""Metrics per cohort, the generalization verdict, and the numbers reports show.

Library metrics from scikit-learn; only recall in the top k% is written here, because
scikit-learn has no capacity-based recall (advisors reach a fixed share of students).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

METRICS = ("roc_auc", "pr_auc", "brier", "log_loss", "recall_top_k", "ece")


def recall_at_top_k(y: np.ndarray, p: np.ndarray, k_percent: float) -> float:
    """Share of all at-risk students found among the k% with the highest predicted risk."""
    y = np.asarray(y)
    positives = y.sum()
    if positives == 0:
        return float("nan")
    n_top = max(1, math.ceil(len(y) * k_percent / 100))
    top = np.argsort(-np.asarray(p), kind="stable")[:n_top]
    return float(y[top].sum() / positives)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Mean |observed rate - mean predicted risk| over `n_bins` equal-size groups by predicted risk,
    weighted by group size. scikit-learn's `calibration_curve` gives the groups but not this sum."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="stable")
    edges = np.unique(np.linspace(0, len(y), max(1, min(n_bins, len(y))) + 1, dtype=np.int64))
    ys, ps = y[order], p[order]
    gaps = [abs(ys[a:b].mean() - ps[a:b].mean()) * (b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return float(sum(gaps) / len(y))


def metrics(y: np.ndarray, p: np.ndarray, k_percent: float) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, log loss, recall in the top k% and calibration error (ECE, 10 groups),
    with n and base rate."""
    y = np.asarray(y, dtype=int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "base_rate": float(y.mean()) if len(y) else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "recall_top_k": recall_at_top_k(y, p, k_percent),
        "ece": expected_calibration_error(y, p),
    }


def auc_standard_error(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley & McNeil (1982) standard error of a ROC AUC measured on n_pos positives and n_neg negatives."""
    if not (n_pos > 0 and n_neg > 0) or math.isnan(auc):
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def metrics_by_cohort(cohort: np.ndarray, y: np.ndarray, p: np.ndarray, k_percent: float) -> dict[str, dict]:
    """`metrics` for each cohort and for all rows together (key "all")."""
    frame = pd.DataFrame({"c": np.asarray(cohort).astype(str), "y": y, "p": p})
    out = {str(c): metrics(g.y.to_numpy(), g.p.to_numpy(), k_percent) for c, g in frame.groupby("c", sort=False)}
    out["all"] = metrics(frame.y.to_numpy(), frame.p.to_numpy(), k_percent)
    return out


def mean_over_cohorts(by_cohort: dict[str, dict], metric: str, cohorts: list[str] | None = None) -> float:
    """Unweighted mean of a metric over cohorts (each year counts once), ignoring "all" (and cohorts without it:
    a model saved before the metric existed)."""
    keys = [c for c in (cohorts or by_cohort) if c != "all" and c in by_cohort]
    vals = [v for v in (by_cohort[c].get(metric, math.nan) for c in keys) if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def verdict(train_auc: float, validation_auc: float, *, overfit_gap: float, underfit_auc: float) -> str:
    """generalizes / overfits / underfits, from training vs. validation AUC."""
    if train_auc < underfit_auc:
        return "underfits"
    if train_auc - validation_auc > overfit_gap:
        return "overfits"
    return "generalizes"
