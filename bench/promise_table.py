"""The estimate, the promise and the truth for one backtest cohort: the bench's check that the promise holds.

For a cohort predicted by a model trained only on the cohorts before it: the AUC estimated before
outcomes (CBPE on the model's own predictions, `risk_model.estimate`), the interval promised from
that model's metrics (`risk_model.promise.make_promise`), the truth (real AUC) and the calibration
error (ECE). Drift is left out of the promise here (no intake drift report in the bench): the
interval is the one a report would state when no feature the model leans on drifted.

`bench_oulad.py` calls `promise_line(cohort, y, p, earlier_metrics(metrics, cohort), k)` per day and
cohort and prints `HEADER` above the lines.
"""

from __future__ import annotations

import numpy as np

from risk_model import evaluate
from risk_model.estimate import expected_performance
from risk_model.promise import make_promise

NEAR = 0.02  # the estimate counts as right within this of the truth (at the two decimals printed)
HEADER = (
    f"{'day':>4} {'test':>6} {'estimate':>9} {'promised':>11} {'status':>9} {'truth':>6} {'ece':>6}  "
    f"{'inside':>6}  {'near':>4}  calibration   (estimate before outcomes, promise without drift; "
    f"near = within {NEAR:.2f})"
)


def earlier_metrics(metrics: dict, cohort: str) -> dict:
    """The metrics of the model that predicted `cohort` in the forward backtest (trained on the cohorts
    before it), rebuilt from the full model's training metrics: its cohort-held-out folds
    (`metrics["promised_by_cohort"]`) and the backtest cohorts before `cohort` (each predicted, as in its
    own backtest, by a model trained on the cohorts before that one)."""
    backtest = metrics["backtest"]["lightgbm"]
    cohorts = [c for c in backtest if c != "all"]
    earlier = cohorts[: cohorts.index(cohort)]  # the backtest lists cohorts in time order
    return {
        "cv": {"lightgbm": metrics.get("promised_by_cohort", {}).get(cohort, {})},
        "backtest": {"lightgbm": {c: backtest[c] for c in earlier}},
    }


def promise_row(cohort: str, y: np.ndarray, p: np.ndarray, metrics: dict, k: float) -> dict:
    """Estimate before outcomes, promised interval, truth, ECE, and whether the truth is inside the interval
    and within `NEAR` of the estimate (both compared at two decimals, as printed)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    expected = expected_performance(p, k)
    promise = make_promise(metrics, expected)
    truth = evaluate.metrics(y, p, k)
    auc = truth["roc_auc"]
    return {
        "cohort": cohort,
        "estimate": expected["roc_auc"],
        "low": promise.low,
        "high": promise.high,
        "status": promise.status,
        "truth": auc,
        "ece": truth["ece"],
        "inside": promise.contains(auc),
        "near": abs(round(auc, 2) - round(expected["roc_auc"], 2)) <= NEAR + 1e-9,
    }


def promise_line(cohort: str, y: np.ndarray, p: np.ndarray, metrics: dict, k: float, calibration: str = "") -> str:
    """`promise_row` as one line of the bench's table (without the day, which the caller prints first)."""
    r = promise_row(cohort, y, p, metrics, k)
    interval = f"{r['low']:.2f}-{r['high']:.2f}" if r["status"] != "withdrawn" else "-"
    return (
        f"{cohort:>6} {r['estimate']:>9.2f} {interval:>11} {r['status']:>9} {r['truth']:>6.2f} {r['ece']:>6.3f}  "
        f"{'yes' if r['inside'] else 'NO':>6}  {'yes' if r['near'] else 'NO':>4}  {calibration}"
    )
