"""Bootstrap confidence intervals for the yearly metrics, all resamples at once.

A resample is a row of counts (how often each student was drawn), so B resamples are a
B x n matrix and every metric is a few cumulative sums along its rows: ROC AUC (ties
count half, as scikit-learn), average precision (scikit-learn's PR AUC), Brier, recall in
the top k%, the calibration curve and its error (ECE). Rows are sorted by predicted risk once; nothing
loops over resamples except in blocks that bound memory. `paired_auc_difference` draws each
resample once and scores two models on it, for the interval of their AUC difference.
"""

from __future__ import annotations

import math

import numpy as np

from risk_model import evaluate

BOOT_METRICS = ("roc_auc", "pr_auc", "brier", "recall_top_k", "ece")


def _by_value(W: np.ndarray, y: np.ndarray, starts: np.ndarray):
    """Weights of positives and negatives per row, and summed per distinct risk value."""
    pos = W * y
    neg = W - pos
    return pos, neg, np.add.reduceat(pos, starts, axis=1), np.add.reduceat(neg, starts, axis=1)


def _auc(pos_v: np.ndarray, neg_v: np.ndarray) -> np.ndarray:
    """ROC AUC per row from the weights of positives and negatives at each distinct risk value (ascending)."""
    neg_below = np.cumsum(neg_v, axis=1) - neg_v
    with np.errstate(invalid="ignore", divide="ignore"):
        return (pos_v * (neg_below + 0.5 * neg_v)).sum(axis=1) / (pos_v.sum(axis=1) * neg_v.sum(axis=1))


def _sorted(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order by ascending p (among ties, later rows first) and the first position of each distinct value."""
    order = np.lexsort((-np.arange(len(p)), p))
    ps = p[order]
    return order, np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])


def resample_counts(rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    """b resamples of n rows with replacement, as a b x n matrix of how often each row was drawn."""
    idx = rng.integers(0, n, size=(b, n))
    return np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)


def _weighted(
    W: np.ndarray, y: np.ndarray, p: np.ndarray, starts: np.ndarray, n_top: int, bin_edges: np.ndarray
) -> dict[str, np.ndarray]:
    """Metrics for each row of weights W (B x n) over rows sorted by ascending p.

    `starts` are the first positions of each distinct value of p (for ties);
    `bin_edges` the first positions of each calibration bin.
    """
    W = W.astype(np.float64, copy=False)
    pos, neg, pos_v, neg_v = _by_value(W, y, starts)
    n_pos = pos.sum(axis=1)
    auc = _auc(pos_v, neg_v)
    with np.errstate(invalid="ignore", divide="ignore"):
        # average precision over thresholds from the highest risk down
        tp = np.cumsum(pos_v[:, ::-1], axis=1)
        fp = np.cumsum(neg_v[:, ::-1], axis=1)
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        ap = (pos_v[:, ::-1] * precision).sum(axis=1) / n_pos
        brier = W @ ((p - y) ** 2) / W.sum(axis=1)
        # recall in the top k%: the n_top highest-risk draws (ties broken as evaluate does)
        w_desc = W[:, ::-1]
        cum_w = np.cumsum(w_desc, axis=1)
        cum_pos = np.cumsum(pos[:, ::-1], axis=1)
        j = (cum_w < n_top).sum(axis=1)  # first position where the top is full
        j = np.minimum(j, W.shape[1] - 1)
        rows = np.arange(W.shape[0])
        before_w = np.where(j > 0, cum_w[rows, j - 1], 0.0)
        before_pos = np.where(j > 0, cum_pos[rows, j - 1], 0.0)
        y_desc = y[::-1]
        found = before_pos + np.clip(n_top - before_w, 0, None) * y_desc[j]
        recall = found / n_pos
        bw = np.add.reduceat(W, bin_edges, axis=1)
        cal_pred = np.add.reduceat(W * p, bin_edges, axis=1) / bw
        cal_obs = np.add.reduceat(pos, bin_edges, axis=1) / bw
        ece = np.nansum(np.abs(cal_obs - cal_pred) * bw, axis=1) / W.sum(axis=1)
    return {
        "roc_auc": auc,
        "pr_auc": ap,
        "brier": brier,
        "recall_top_k": recall,
        "ece": ece,
        "cal_predicted": cal_pred,
        "cal_observed": cal_obs,
    }


def bootstrap_metrics(
    y: np.ndarray,
    p: np.ndarray,
    *,
    k_percent: float,
    n_boot: int,
    n_bins: int = 10,
    level: float = 0.95,
    seed: int = 0,
    block: int = 50,
) -> dict:
    """Point estimates and percentile bootstrap intervals of ROC AUC, PR AUC, Brier, recall
    in the top k%, calibration error (ECE) and a calibration curve (bins of equal size by predicted risk).

    Returns {"metrics": {name: {"value", "low", "high"}}, "calibration": [{bin...}], "n", "n_boot"}.
    Point estimates are the plain metrics of `evaluate` on these rows.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    n = len(y)
    if n == 0:
        raise ValueError("bootstrap_metrics needs at least one row")
    order, starts = _sorted(p)
    y, p = y[order], p[order]
    n_top = max(1, math.ceil(n * k_percent / 100))
    n_bins = max(1, min(n_bins, n))
    bin_edges = np.unique(np.linspace(0, n, n_bins + 1, dtype=np.int64)[:-1])

    point = evaluate.metrics(y.astype(int), p, k_percent)
    ones = _weighted(np.ones((1, n)), y, p, starts, n_top, bin_edges)

    rng = np.random.default_rng(seed)
    draws: dict[str, list[np.ndarray]] = {}
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        W = resample_counts(rng, b, n)
        for name, v in _weighted(W, y, p, starts, n_top, bin_edges).items():
            draws.setdefault(name, []).append(v)
    boot = {name: np.concatenate(v) for name, v in draws.items()}
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def interval(values: np.ndarray) -> tuple:
        values = values[np.isfinite(values)] if values.ndim == 1 else values
        if values.size == 0:
            return float("nan"), float("nan")
        lo, hi = np.nanpercentile(values, q, axis=0)
        return lo, hi

    out: dict[str, dict] = {}
    for name in BOOT_METRICS:
        lo, hi = interval(boot[name])
        value = float(point[name])
        if name == "ece":  # resampling adds noise, hence calibration error: reflect (basic bootstrap interval)
            lo, hi = max(0.0, 2 * value - hi), max(0.0, 2 * value - lo)
        out[name] = {"value": value, "low": float(lo), "high": float(hi)}
    cal_lo, cal_hi = interval(boot["cal_observed"])
    calibration = [
        {
            "bin": i + 1,
            "n": int(np.diff(np.r_[bin_edges, n])[i]),
            "mean_predicted": float(ones["cal_predicted"][0, i]),
            "observed": float(ones["cal_observed"][0, i]),
            "observed_low": float(cal_lo[i]),
            "observed_high": float(cal_hi[i]),
        }
        for i in range(len(bin_edges))
    ]
    return {
        "metrics": out,
        "calibration": calibration,
        "n": n,
        "n_boot": int(n_boot),
        "level": level,
        "base_rate": float(point["base_rate"]),
        "mean_predicted": float(p.mean()),
    }


def calibration_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> list[dict]:
    """Mean predicted risk and observed rate in `n_bins` equal-size bins by predicted risk."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    y, p = y[order], p[order]
    edges = np.unique(np.linspace(0, len(y), max(1, min(n_bins, len(y))) + 1, dtype=np.int64))
    return [
        {"bin": i + 1, "n": int(b - a), "mean_predicted": float(p[a:b].mean()), "observed": float(y[a:b].mean())}
        for i, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
    ]


def paired_auc_difference(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, n_boot: int, level: float = 0.95, seed: int = 0, block: int = 50
) -> dict:
    """ROC AUC of `p_a` minus that of `p_b` on the same students, with a percentile interval over
    paired resamples (each resample scores both models on the same drawn students).

    Returns {"value", "low", "high"}.
    """
    y = np.asarray(y, dtype=np.float64)
    n = len(y)
    views = [(o, y[o], st) for o, st in (_sorted(np.asarray(p, dtype=np.float64)) for p in (p_a, p_b))]

    def gap(W: np.ndarray) -> np.ndarray:  # AUC of a minus AUC of b, per row of weights
        a, b = (_auc(*_by_value(W[:, order], y_sorted, starts)[2:]) for order, y_sorted, starts in views)
        return a - b

    value = gap(np.ones((1, n)))[0]
    rng = np.random.default_rng(seed)
    diffs = [
        gap(resample_counts(rng, min(block, n_boot - start), n).astype(np.float64)) for start in range(0, n_boot, block)
    ]
    low, high = np.nanpercentile(np.concatenate(diffs), [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return {"value": float(value), "low": float(low), "high": float(high)}
