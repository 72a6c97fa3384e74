"""Does the model serve every group of students alike? Per-group metrics and their gaps.

For each sensitive column: group size, at-risk rate, ROC AUC, share flagged, TPR and FPR
at the flag (tier high), and calibration (mean predicted risk vs. observed rate), computed
with fairlearn's MetricFrame. Groups smaller than `min_group_size` are merged into one
"other (small groups)" group, which is itself hidden if still too small, so no table ever
describes a handful of identifiable students. A gap is flagged only when it is larger than
its threshold and larger than chance (Z = 3 standard errors: with several columns and
measures, two would raise a false alarm on about every other report), so small groups do
not raise alarms by noise alone; a gap above its threshold but within chance is "to watch". Calibration is judged between groups (one group's error against
another's): an error every group shares is a performance matter, not a fairness one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from risk_model.evaluate import auc_standard_error

OTHER = "other (small groups)"
Z = 3.0
MISSING = "(missing)"


def merge_small_groups(values: pd.Series, min_size: int) -> tuple[pd.Series, dict]:
    """Groups below `min_size` become OTHER; OTHER itself becomes NA (hidden) if still small.

    Returns the new labels and what happened: {"merged": [...], "hidden": n_students}.
    """
    s = values.astype(object).where(values.notna(), MISSING).astype(str)
    counts = s.value_counts()
    small = counts[counts < min_size].index.tolist()
    merged = s.where(~s.isin(small), OTHER) if small else s
    hidden = 0
    if small and int(counts[small].sum()) < min_size:
        hidden = int(counts[small].sum())
        merged = merged.where(merged != OTHER, None)
    return merged, {
        "merged": sorted(small) if small and not hidden else [],
        "hidden": hidden,
        "hidden_groups": len(small) if hidden else 0,
    }


def _summary(y_true, y_pred, risk) -> dict[str, float]:
    """Every per-group number from one pass: fairlearn converts each argument of each metric
    row by row, so one function instead of seven keeps a million students fast."""
    from sklearn.metrics import roc_auc_score

    y_true, y_pred, risk = np.asarray(y_true), np.asarray(y_pred), np.asarray(risk)
    pos = y_true == 1
    both = 0 < pos.sum() < len(pos)
    return {
        "students": len(y_true),
        "at_risk_rate": float(pos.mean()),
        "roc_auc": float(roc_auc_score(y_true, risk)) if both else float("nan"),
        "share_flagged": float(y_pred.mean()),
        "tpr": float(y_pred[pos].mean()) if pos.any() else float("nan"),
        "fpr": float(y_pred[~pos].mean()) if (~pos).any() else float("nan"),
        "mean_predicted": float(risk.mean()),
    }


def _prop_se(rate: float, n: int) -> float:
    return math.sqrt(rate * (1 - rate) / n) if n else float("nan")


def group_table(
    y: np.ndarray, risk: np.ndarray, flagged: np.ndarray, groups: pd.Series, *, cap: int | None = None, seed: int = 0
) -> tuple[pd.DataFrame, bool]:
    """Per group (rows) the metrics (columns) from fairlearn's MetricFrame, and whether it sampled.

    With `cap`, a group larger than `cap` is measured on a random `cap` of its students
    (rates and AUC stay unbiased within the group; small groups are always whole); its size
    and at-risk count are still counted on every student."""
    from fairlearn.metrics import MetricFrame

    keep = groups.notna().to_numpy()
    y, risk, flagged = np.asarray(y)[keep], np.asarray(risk)[keep], np.asarray(flagged)[keep]
    g = groups[keep].astype(str).to_numpy()
    full = pd.DataFrame({"g": g, "y": y}).groupby("g")["y"].agg(["size", "sum"])
    rows = np.arange(len(g))
    sampled = cap is not None and bool((full["size"] > cap).any())
    if sampled:
        rng = np.random.default_rng(seed)
        rows = np.concatenate(
            [
                idx if cap is None or len(idx) <= cap else rng.choice(idx, cap, replace=False)
                for idx in (np.flatnonzero(g == name) for name in full.index)
            ]
        )
    mf = MetricFrame(
        metrics={"summary": _summary},
        y_true=y[rows],
        y_pred=flagged[rows],
        sensitive_features=g[rows],
        sample_params={"summary": {"risk": risk[rows]}},
    )
    table = pd.DataFrame(list(mf.by_group["summary"]), index=mf.by_group.index.astype(str))
    table["students"] = full.loc[table.index, "size"].astype(int)
    table["at_risk"] = full.loc[table.index, "sum"].astype(int)
    table["at_risk_rate"] = table["at_risk"] / table["students"]
    table["calibration_gap"] = table["at_risk_rate"] - table["mean_predicted"]
    return table.sort_values("students", ascending=False), sampled


def _se(row: pd.Series, metric: str) -> float:
    """Standard error of one group's `metric`, from the students it is measured on."""
    pos, neg = int(row["at_risk"]), int(row["students"] - row["at_risk"])
    if metric == "roc_auc":
        return auc_standard_error(row[metric], pos, neg)
    if metric == "calibration_gap":  # the predicted mean is near-exact; the observed rate carries the noise
        return _prop_se(row["at_risk_rate"], int(row["students"]))
    n = {"tpr": pos, "fpr": neg, "share_flagged": int(row["students"])}[metric]
    return _prop_se(row[metric], n)


def _gap(table: pd.DataFrame, metric: str, threshold: float) -> dict | None:
    """The largest between-group difference of `metric`: its groups, size, standard error, and
    whether it is above `threshold` (and beyond chance: flagged)."""
    t = table[table[metric].notna()]
    if len(t) < 2:
        return None
    hi, lo = t[metric].idxmax(), t[metric].idxmin()
    diff = float(t.at[hi, metric] - t.at[lo, metric])
    se = math.sqrt(_se(t.loc[hi], metric) ** 2 + _se(t.loc[lo], metric) ** 2)
    above = diff > threshold
    return {
        "metric": "calibration" if metric == "calibration_gap" else metric,
        "high_group": hi,
        "high": float(t.at[hi, metric]),
        "low_group": lo,
        "low": float(t.at[lo, metric]),
        "gap": diff,
        "se": se,
        "above_threshold": above,
        "flagged": above and diff > Z * se,
    }


def column_report(
    y: np.ndarray,
    risk: np.ndarray,
    flagged: np.ndarray,
    values: pd.Series,
    *,
    min_group_size: int,
    fairness_gap: float,
    calibration_gap: float,
    cap: int | None = None,
) -> dict:
    """Groups, gaps and the gaps to review for one sensitive column."""
    groups, merging = merge_small_groups(values.reset_index(drop=True), min_group_size)
    table, sampled = group_table(y, risk, flagged, groups, cap=cap)
    gaps = {}
    for metric, threshold in (
        ("roc_auc", fairness_gap),
        ("tpr", fairness_gap),
        ("fpr", fairness_gap),
        ("calibration_gap", calibration_gap),
        ("share_flagged", math.inf),
    ):
        g = _gap(table, metric, threshold)  # share flagged follows the at-risk rate: shown, never judged
        if g is not None:
            gaps[g["metric"]] = g
    groups_out = [
        {"group": name, **{k: (int(v) if k in ("students", "at_risk") else float(v)) for k, v in row.items()}}
        for name, row in table.iterrows()
    ]
    return {
        "groups": groups_out,
        "gaps": gaps,
        **merging,
        "sampled": sampled,
        "to_review": [k for k, g in gaps.items() if g["flagged"]],
        "to_watch": [k for k, g in gaps.items() if g["above_threshold"] and not g["flagged"]],
    }
