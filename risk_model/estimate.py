"""Expected performance of an intake before its outcomes exist (confidence-based estimation).

If the calibrated probability p_i is right, student i struggles with probability p_i. Every
count a metric needs then has an expected value: the expected number of at-risk students above
a risk threshold is the sum of their p, of students who do fine the sum of 1 - p. NannyML's CBPE
(Confidence-Based Performance Estimation) builds the expected confusion matrix this way: each
student counts twice, once as "at risk" with weight p and once as "fine" with weight 1 - p.
The expected ROC AUC is the weighted Mann-Whitney statistic of those two sets (ties count half),
which is what scikit-learn's weighted `roc_auc_score` returns for them; it is computed here with
NumPy because every scoring run computes it, and scikit-learn's input checks and curve building
cost more than the whole prediction for small intakes (3 ms for 1,500 students) and 1.3 s at a
million (measured 2026-12, `bench/bench_score.py`); a test holds the two equal.

Why not `nannyml` itself: it resolves with this stack only by pulling LightGBM back to 4.5 and
adding xgboost and flaml (measured with `uv pip compile`, 2026-11), for one formula.

The estimate is only as good as the calibration on *this* intake: a changed mechanism (the
same features now meaning something else) is invisible to it, which is why the outcomes
report later puts estimate, promise and truth side by side.
"""

from __future__ import annotations

import math

import numpy as np


def expected_roc_auc(p: np.ndarray) -> float:
    """ROC AUC the model is expected to reach on these students if their probabilities are right."""
    p = np.clip(np.asarray(p, dtype=float), 0.0, 1.0)
    if len(p) == 0 or p.sum() == 0 or (1 - p).sum() == 0:
        return float("nan")
    ps = np.sort(p)
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])  # one group per distinct risk
    at_risk = np.add.reduceat(ps, starts)  # expected at-risk students with that risk
    fine = np.add.reduceat(1.0 - ps, starts)  # and students who do fine
    below = np.cumsum(fine) - fine  # fine students with a lower risk
    return float((at_risk * (below + 0.5 * fine)).sum() / (at_risk.sum() * fine.sum()))


def expected_recall_top_k(p: np.ndarray, k_percent: float, rank: np.ndarray | None = None) -> float:
    """Expected share of all struggling students found among the k% with the highest risk (`rank`: each
    student's place, 1 = highest risk, if known already)."""
    p = np.asarray(p, dtype=float)
    if len(p) == 0 or p.sum() == 0:
        return float("nan")
    n_top = max(1, math.ceil(len(p) * k_percent / 100))
    top = np.argsort(-p, kind="stable")[:n_top] if rank is None else np.asarray(rank) <= n_top
    return float(p[top].sum() / p.sum())


def expected_performance(p: np.ndarray, k_percent: float, rank: np.ndarray | None = None) -> dict[str, float]:
    """Expected ROC AUC, recall in the top k% and at-risk rate of an intake, from its probabilities alone
    (`rank`: as `expected_recall_top_k`)."""
    p = np.asarray(p, dtype=float)
    return {
        "n": int(len(p)),
        "roc_auc": expected_roc_auc(p),
        "recall_top_k": expected_recall_top_k(p, k_percent, rank),
        "at_risk_rate": float(p.mean()) if len(p) else float("nan"),
    }
