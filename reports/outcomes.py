"""Outcomes arrived: did the model do on this cohort what validation promised?

Once a scored cohort's real outcomes are recorded, its real ROC AUC, PR AUC, Brier score,
recall in the top k% and calibration curve are set beside what the champion's validation
promised (the mean over its forward-backtest cohorts), each with a bootstrap interval.
The verdict says "generalized" or "dropped": a drop is a real AUC below the promise by more
than `performance_drop` with an interval that excludes the promise. Evidently's
ClassificationPreset compares this cohort with the training reference in detail, on its own
page (evidently/outcomes.html).

Beside it, what was said on the day the intake was scored, read from the intake report made
before outcomes: the estimate (expected performance from the intake's own probabilities), the
promise (a range for the AUC) and now the truth. The verdict says whether the truth fell inside
the promised range and how far the estimate was from it; an estimate further than
`estimate_tolerance` from the truth means the mechanism changed, which no estimate made before
outcomes can see.

measure (`promises`, `real_metrics`, `run_evidently`, `evidently_values`) -> judge (`judge`,
`judge_promise`, `advice`) -> render (`render`) -> write (`page.write_report`), composed in `build_outcomes_report`.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from reports import followup, page
from reports.charts import Charts, calibration, promise_vs_real
from reports.page import num, pct, printed, write_report
from risk_model import evaluate
from risk_model.bootstrap import bootstrap_metrics, calibration_curve
from risk_model.config import ReportConfig
from risk_model.promise import Promise

FOLLOW_UP = ("contact", "outcomes_by_contact")
NAME = "outcomes"
LABELS = {
    "roc_auc": (
        "ROC AUC",
        "how well the model ranks students who struggled above those who did not (0.5 = coin toss, 1 = perfect)",
        True,
    ),
    "pr_auc": (
        "PR AUC",
        "how concentrated the students who struggled are at the top of the list (depends on how many struggled)",
        True,
    ),
    "brier": ("Brier score", "average squared error of the predicted probabilities (lower is better)", False),
    "recall_top_k": (
        "recall in top {k}%",
        "share of all students who struggled found among the {k}% highest-risk students",
        True,
    ),
    "ece": (
        "calibration error (ECE)",
        "how far predicted risks were from the share who struggled, in groups of equal size by risk (0 = exact)",
        False,
    ),
}


def promises(metadata: dict) -> dict[str, dict]:
    """What validation promised per metric: the mean over validation cohorts, and their range."""
    kind = metadata["summary"]["validation"]
    by = metadata["metrics"][kind]["lightgbm"]
    cohorts = [c for c in by if c != "all"]
    out = {}
    for m in LABELS:
        vals = [v for v in (by[c].get(m, float("nan")) for c in cohorts) if v == v]
        out[m] = {
            "value": evaluate.mean_over_cohorts(by, m),
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
        }
    out["roc_auc"]["value"] = metadata["summary"]["validation_auc"]
    return {"kind": kind, "cohorts": cohorts, "metrics": out, "base_rate": evaluate.mean_over_cohorts(by, "base_rate")}


def _sample(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return df.sample(n, random_state=seed) if len(df) > n else df


def hundredths(v: float) -> int:
    """`v` as printed with two decimals, in hundredths: thresholds are compared on what is printed."""
    return printed(v, ".2f")


def judge(real: dict, promised: float, cfg: ReportConfig, cohort: str) -> tuple[str, str, bool, str]:
    """(verdict in one sentence, what it means, warning, status) from the real AUC, its interval and the promise.

    Compared on the two-decimal values the verdict prints: a shortfall is "more than 0.05 below"
    only if the printed numbers say so, and the interval "excludes the promise" only as printed."""
    auc, lo, hi = real["value"], real["low"], real["high"]
    shortfall = hundredths(promised) - hundredths(auc)
    said = f"AUC {auc:.2f} on {cohort} (95% interval {lo:.2f}-{hi:.2f}) vs {promised:.2f} promised by validation."
    below = shortfall > hundredths(cfg.performance_drop)
    if below and hundredths(hi) < hundredths(promised):
        return (
            f"Performance dropped: {said}",
            f"That is more than {cfg.performance_drop:.2f} below the promise, and the interval excludes the promise: "
            f"the {cohort} risk scores were less reliable than validation said. Retrain with {cohort} included and "
            "check what changed (see the intake drift report) before relying on next year's scores.",
            True,
            "dropped",
        )
    if below:
        return (
            f"Possibly dropped, but not clearly: {said}",
            f"That is more than {cfg.performance_drop:.2f} below the promise, but the interval still includes the "
            "promise: this cohort is too small to tell a drop from chance. Watch next year's outcomes.",
            False,
            "uncertain",
        )
    return (
        f"The model generalized: {said}",
        f"The {cohort} risk scores could be trusted as much as validation promised.",
        False,
        "generalized",
    )


def judge_promise(auc: float, before: dict, cfg: ReportConfig) -> tuple[str, dict]:
    """(two sentences, the check): did the truth fall inside the promise made before outcomes, and how far
    was the estimate from it. Compared on the two-decimal values the sentences print."""
    promise, est = before["promise"], float(before["expected"]["roc_auc"])
    known = math.isfinite(est)  # no estimate when every probability was 0 or 1
    gap = hundredths(auc) - hundredths(est) if known else 0  # truth minus estimate, in printed hundredths
    missed = known and abs(gap) > hundredths(cfg.estimate_tolerance)
    if promise["status"] == "withdrawn":
        inside = None
        said = f"No promise had been made for this cohort (withdrawn before outcomes); its real AUC is {auc:.2f}."
    else:
        inside = Promise(**promise).contains(auc)
        low, high = promise["low"], promise["high"]
        said = (
            f"The truth fell inside the promise: AUC {auc:.2f} within the promised {low:.2f}-{high:.2f}."
            if inside
            else f"The truth fell outside the promise: AUC {auc:.2f} vs the promised {low:.2f}-{high:.2f}."
        )
    if missed:
        said += (
            f" The estimate missed by {abs(gap) / 100:.2f}: the mechanism changed, which no estimate made before "
            f"outcomes can see (estimated {est:.2f} before outcomes, real {auc:.2f})."
        )
    elif not known:
        said += " No AUC could be estimated before outcomes (every predicted risk was 0 or 1)."
    else:
        said += (
            f" The estimate made before outcomes ({est:.2f}) was {abs(gap) / 100:.2f} from the truth, within "
            f"{cfg.estimate_tolerance:.2f}."
        )
    check = {
        "inside": inside,
        "estimate": est,
        "truth": auc,
        "estimate_error": gap / 100 if known else None,
        "estimate_missed": missed,
        "estimate_tolerance": cfg.estimate_tolerance,
    }
    return said, check


def estimate_rows(numbers: dict, k: float) -> list[dict]:
    """Estimate, promise and truth side by side, per measure the estimate covers."""
    before, real = numbers["before_outcomes"], numbers["real"]
    if not before:
        return []
    est, promise = before["expected"], before["promise"]
    promised = "withdrawn" if promise["status"] == "withdrawn" else f"{num(promise['low'])} - {num(promise['high'])}"
    auc = real["roc_auc"]
    return [
        {
            "measure": "ROC AUC",
            "estimate before outcomes": num(est["roc_auc"]),
            "promised range": promised,
            "truth": num(auc["value"]),
            "truth's 95% interval": f"{num(auc['low'])} - {num(auc['high'])}",
        },
        {
            "measure": f"recall in top {k:g}%",
            "estimate before outcomes": num(est["recall_top_k"]),
            "promised range": "",
            "truth": num(real["recall_top_k"]["value"]),
            "truth's 95% interval": f"{num(real['recall_top_k']['low'])} - {num(real['recall_top_k']['high'])}",
        },
        {
            "measure": "at-risk rate",
            "estimate before outcomes": pct(est["at_risk_rate"]),
            "promised range": "",
            "truth": pct(numbers["base_rate"]),
            "truth's 95% interval": "",
        },
    ]


def real_metrics(current: pd.DataFrame, k: float, cfg: ReportConfig) -> tuple[dict, dict, pd.DataFrame]:
    """The cohort's real metrics with bootstrap intervals (centred on the whole cohort's value), the
    bootstrap result (calibration curve) and the sample the intervals came from."""
    y = current["at_risk"].to_numpy(dtype=int)
    p = current["risk"].to_numpy(dtype=float)
    full = evaluate.metrics(y, p, k)
    sample = _sample(current[["at_risk", "risk"]], cfg.max_rows)
    boot = bootstrap_metrics(
        sample["at_risk"].to_numpy(),
        sample["risk"].to_numpy(),
        k_percent=k,
        n_boot=cfg.bootstrap,
        n_bins=cfg.calibration_bins,
        seed=0,
    )
    real = {}
    for m, v in boot["metrics"].items():
        shift = full[m] - v["value"]  # centre the sample's interval on the whole cohort's value
        real[m] = {"value": full[m], "low": v["low"] + shift, "high": v["high"] + shift}
    return real, boot, sample


def run_evidently(sample: pd.DataFrame, reference: pd.DataFrame, threshold: float, max_rows: int) -> Any:
    """Evidently's classification quality: this cohort (current) against the training reference."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    cols, types = ["at_risk", "risk"], {"at_risk": "int64", "risk": "float64"}
    dd = DataDefinition(
        numerical_columns=["risk"],
        classification=[BinaryClassification(target="at_risk", prediction_probas="risk", pos_label=1)],
    )
    return Report([ClassificationPreset(probas_threshold=threshold)]).run(
        Dataset.from_pandas(sample[cols].astype(types), data_definition=dd),
        Dataset.from_pandas(_sample(reference[cols], max_rows).astype(types), data_definition=dd),
    )


def evidently_values(snapshot: Any) -> dict[str, float]:
    """Evidently's single-value metrics by metric type (e.g. RocAuc), read from the snapshot's results."""
    from evidently.core.metric_types import SingleValue

    out = {}
    for metric_id, result in snapshot.metric_results.items():
        if isinstance(result, SingleValue) and isinstance(result.value, int | float):
            out[type(snapshot.context.get_metric(metric_id).to_metric()).__name__] = result.value
    return out


def advice(base: str, current: pd.DataFrame) -> str:
    """What the verdict means, with the predicted vs. observed share who struggled."""
    return base + (
        f" On average the model predicted a {pct(float(current['risk'].mean()))} risk; "
        f"{pct(float(current['at_risk'].mean()))} of the {len(current)} students actually struggled."
    )


def metric_rows(numbers: dict, k: float) -> tuple[list[dict], list[dict]]:
    """The table rows (real vs. promised per metric) and the same for the chart."""
    cohort, promise, real = numbers["cohort"], numbers["promised"], numbers["real"]
    rows, chart_rows = [], []
    for m, (label, meaning, higher_better) in LABELS.items():
        label, meaning = label.format(k=f"{k:g}"), meaning.format(k=f"{k:g}")
        pr, r = promise["metrics"][m], real[m]
        rows.append(
            {
                "measure": label,
                f"{cohort} (real)": num(r["value"], 3),
                "95% interval": f"{num(r['low'], 3)} - {num(r['high'], 3)}",
                "promised": num(pr["value"], 3),
                "past cohorts": f"{num(pr['min'], 3)} - {num(pr['max'], 3)}",
                "what it means": meaning,
            }
        )
        worse = (r["high"] < pr["value"]) if higher_better else (r["low"] > pr["value"])
        chart_rows.append(
            {
                "label": label,
                "value": r["value"],
                "low": r["low"],
                "high": r["high"],
                "promised": pr["value"],
                "worse": worse,
            }
        )
    return rows, chart_rows


def notes(numbers: dict, cfg: ReportConfig) -> list[str]:
    """Notes on sampling and on students left out for want of a match."""
    n, cov = numbers["n_students"], numbers["coverage"]
    if numbers["sampled"]:
        out = [
            f"Intervals and the calibration curve come from {cfg.bootstrap} bootstrap resamples of a random "
            f"sample of {numbers['n_bootstrap_rows']} of the {n} students (the headline values use every student); "
            "intervals from a sample are slightly wider than the whole cohort's, so they err on the side of caution."
        ]
    else:
        out = [f"Intervals: {cfg.bootstrap} bootstrap resamples of the {n} students (95%)."]
    if cov.get("n_scored") and cov.get("n_matched") is not None and cov["n_matched"] < cov["n_scored"]:
        out.append(
            f"{cov['n_scored'] - cov['n_matched']} scored students have no recorded outcome yet and are left out."
        )
    if cov.get("n_outcomes") and cov.get("n_matched") is not None and cov["n_matched"] < cov["n_outcomes"]:
        out.append(
            f"{cov['n_outcomes'] - cov['n_matched']} recorded outcomes belong to students this model did not score."
        )
    return out


def render(numbers: dict, cfg: ReportConfig, k: float) -> str:
    """The page: verdict, real vs. promised, calibration, then a link to Evidently's page."""
    rows, chart_rows = metric_rows(numbers, k)
    cohort, observed, promise = numbers["cohort"], numbers["base_rate"], numbers["promised"]
    charts = Charts()
    vs_chart = charts.add(
        promise_vs_real(chart_rows, f"Cohort {cohort}: promised by validation vs. real (95% interval)"), 340
    )
    cal_chart = charts.add(
        calibration(numbers["calibration"], numbers["reference_calibration"], f"Calibration on {cohort}"), 420
    )
    return page.render(
        "outcomes.html.j2",
        scripts=charts.scripts,
        charts=charts,
        title=numbers["title"],
        verdict=numbers["verdict"],
        warning=numbers["warning"],
        advice=numbers["advice"],
        n=numbers,
        k=f"{k:g}",
        rows=rows,
        base_differs=abs(observed - promise["base_rate"]) > 0.02,
        top_k_share=pct(min(1.0, k / 100 / observed)) if observed else "n/a",
        calibration_rows=[
            {
                "group (by predicted risk)": c["bin"],
                "students": c["n"],
                "predicted risk": pct(c["mean_predicted"], 1),
                "actually struggled": pct(c["observed"], 1),
                "95% interval": f"{pct(c['observed_low'], 1)} - {pct(c['observed_high'], 1)}",
            }
            for c in numbers["calibration"]
        ],
        notes=notes(numbers, cfg),
        promise_cohorts=", ".join(promise["cohorts"]),
        estimate_rows=estimate_rows(numbers, k),
        vs_chart=vs_chart,
        cal_chart=cal_chart,
        follow_up=followup.sections(numbers.get("follow_up"), FOLLOW_UP),
    )


def _both_outcomes(current: pd.DataFrame, cohort: str) -> np.ndarray:
    """The outcomes as 0/1, or an error saying why a cohort with one kind of outcome cannot be judged."""
    y = current["at_risk"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"cohort {cohort}: every recorded outcome is {'at risk' if y.all() else 'not at risk'}; "
            "ROC AUC needs both kinds of outcome"
        )
    return y


def build_outcomes_report(
    current: pd.DataFrame,
    reference: pd.DataFrame,
    metadata: dict,
    cfg: ReportConfig,
    out_dir: Path,
    *,
    cohort: str,
    point: str = "default",
    flag_threshold: float | None = None,
    coverage: dict | None = None,
    before: dict | None = None,
    follow_up: dict | None = None,
) -> dict:
    """Write outcomes.html and outcomes.json into `out_dir` (Evidently's page under evidently/); return
    the JSON numbers.

    `current`: one row per scored student with a real outcome: `at_risk` (0/1), `risk`
    (the stored probability) and `tier`. `reference`: the training reference sample
    (`at_risk`, `risk` out of fold). `metadata`: the scoring model's metadata. `before`: what was said
    before outcomes (`reports.promised.intake_expectation` plus a `source` in words), if known.
    """
    y = _both_outcomes(current, cohort)
    k = float(metadata.get("top_k_percent", 10))
    real, boot, sample = real_metrics(current, k, cfg)
    promise = promises(metadata)
    verdict, meaning, warning, status = judge(real["roc_auc"], promise["metrics"]["roc_auc"]["value"], cfg, cohort)
    check = None
    if before is not None:
        said, check = judge_promise(real["roc_auc"]["value"], before, cfg)
        verdict += " " + said
        warning = warning or check["inside"] is False
    p = current["risk"].to_numpy(dtype=float)
    threshold = float(flag_threshold) if flag_threshold is not None else float(np.quantile(p, 1 - k / 100))
    snapshot = run_evidently(sample, reference, threshold, cfg.max_rows)
    out_dir = Path(out_dir)
    numbers = {
        "report": NAME,
        "title": f"Outcomes of cohort {cohort}: did the model keep its promise?",
        "cohort": cohort,
        "point": point,
        "model_version": metadata["version"],
        "verdict": verdict,
        "advice": advice(meaning, current),
        "warning": warning,
        "status": status,
        "performance_drop": cfg.performance_drop,
        "promised": promise,
        "before_outcomes": before,
        "promise_check": check,
        "real": real,
        "base_rate": float(y.mean()),
        "mean_predicted": float(p.mean()),
        "calibration": boot["calibration"],
        "reference_calibration": calibration_curve(
            reference["at_risk"].to_numpy(), reference["risk"].to_numpy(), cfg.calibration_bins
        ),
        "flag_threshold": threshold,
        "evidently": evidently_values(snapshot),
        "n_students": int(len(current)),
        "coverage": coverage or {},
        "sampled": len(sample) < len(current),
        "n_bootstrap_rows": int(len(sample)),
        "n_boot": cfg.bootstrap,
        "outcomes_known": True,
        "follow_up": {k: v for k, v in (follow_up or {}).items() if k in FOLLOW_UP},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(out_dir / f"{NAME}.html"),
    }
    write_report(out_dir, NAME, render(numbers, cfg, k), numbers, snapshot=snapshot)
    return numbers
