"""Outcomes arrived: did the model do on this cohort what validation promised?

Once a scored cohort's real outcomes are recorded, its real ROC AUC, PR AUC, Brier score,
recall in the top k% and calibration curve are set beside what the champion's validation
promised (the mean over its forward-backtest cohorts), each with a bootstrap interval.
The verdict says "generalized" or "dropped": a drop is a real AUC below the promise by more
than `performance_drop` with an interval that excludes the promise. Evidently's
ClassificationPreset below compares this cohort with the training reference in detail.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from reports.charts import Charts, calibration, promise_vs_real
from reports.html import CSP, banner, evidence, inject, inject_head, num, pct, table, write_atomic, write_json
from risk_model import evaluate
from risk_model.bootstrap import bootstrap_metrics, calibration_curve
from risk_model.config import ReportConfig

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
}


def promises(metadata: dict) -> dict[str, dict]:
    """What validation promised per metric: the mean over validation cohorts, and their range."""
    kind = metadata["summary"]["validation"]
    by = metadata["metrics"][kind]["lightgbm"]
    cohorts = [c for c in by if c != "all"]
    out = {}
    for m in LABELS:
        vals = [by[c][m] for c in cohorts if by[c][m] == by[c][m]]
        out[m] = {
            "value": evaluate.mean_over_cohorts(by, m),
            "min": min(vals) if vals else None,
            "max": max(vals) if vals else None,
        }
    out["roc_auc"]["value"] = metadata["summary"]["validation_auc"]
    return {"kind": kind, "cohorts": cohorts, "metrics": out, "base_rate": evaluate.mean_over_cohorts(by, "base_rate")}


def _sample(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    return df.sample(n, random_state=seed) if len(df) > n else df


def judge(real: dict, promised: float, cfg: ReportConfig, cohort: str) -> tuple[str, str, bool, str]:
    """(verdict in one sentence, what it means, warning, status) from the real AUC, its interval and the promise."""
    auc, lo, hi = real["value"], real["low"], real["high"]
    shortfall = promised - auc
    said = f"AUC {auc:.2f} on {cohort} (95% interval {lo:.2f}-{hi:.2f}) vs {promised:.2f} promised by validation."
    if shortfall > cfg.performance_drop and hi < promised:
        return (
            f"Performance dropped: {said}",
            f"That is more than {cfg.performance_drop:.2f} below the promise, and the interval excludes the promise: "
            f"the {cohort} risk scores were less reliable than validation said. Retrain with {cohort} included and "
            "check what changed (see the intake drift report) before relying on next year's scores.",
            True,
            "dropped",
        )
    if shortfall > cfg.performance_drop:
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
) -> dict:
    """Write outcomes.html and outcomes.json into `out_dir`; return the JSON numbers.

    `current`: one row per scored student with a real outcome: `at_risk` (0/1), `risk`
    (the stored probability) and `tier`. `reference`: the training reference sample
    (`at_risk`, `risk` out of fold). `metadata`: the scoring model's metadata.
    """
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    version = metadata["version"]
    k = float(metadata.get("top_k_percent", 10))
    y = current["at_risk"].to_numpy(dtype=int)
    p = current["risk"].to_numpy(dtype=float)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"cohort {cohort}: every recorded outcome is {'at risk' if y.all() else 'not at risk'}; "
            "ROC AUC needs both kinds of outcome"
        )
    full = evaluate.metrics(y, p, k)
    sample = _sample(current[["at_risk", "risk"]], cfg.max_rows)
    sampled = len(sample) < len(current)
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
    promise = promises(metadata)
    verdict, advice, warning, status = judge(real["roc_auc"], promise["metrics"]["roc_auc"]["value"], cfg, cohort)
    mean_pred, observed = float(p.mean()), float(y.mean())
    advice += (
        f" On average the model predicted a {pct(mean_pred)} risk; {pct(observed)} of the "
        f"{len(current)} students actually struggled."
    )
    ref_curve = calibration_curve(reference["at_risk"].to_numpy(), reference["risk"].to_numpy(), cfg.calibration_bins)

    # Evidently's classification quality: this cohort (current) against the training reference
    cols = ["at_risk", "risk"]
    cur_ev = sample[cols].astype({"at_risk": "int64", "risk": "float64"})
    ref_ev = _sample(reference[cols], cfg.max_rows).astype({"at_risk": "int64", "risk": "float64"})
    dd = DataDefinition(
        numerical_columns=["risk"],
        classification=[BinaryClassification(target="at_risk", prediction_probas="risk", pos_label=1)],
    )
    threshold = float(flag_threshold) if flag_threshold is not None else float(np.quantile(p, 1 - k / 100))
    snap = Report([ClassificationPreset(probas_threshold=threshold)]).run(
        Dataset.from_pandas(cur_ev, data_definition=dd), Dataset.from_pandas(ref_ev, data_definition=dd)
    )
    evidently_values = {
        m["metric_name"].split("(")[0]: m["value"]
        for m in snap.dict()["metrics"]
        if isinstance(m.get("value"), int | float)
    }

    rows, chart_rows = [], []
    for m, (label, meaning, higher_better) in LABELS.items():
        label, meaning = label.format(k=f"{k:g}"), meaning.format(k=f"{k:g}")
        pr, r = promise["metrics"][m], real[m]
        worse = (r["high"] < pr["value"]) if higher_better else (r["low"] > pr["value"])
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
    charts = Charts()
    cov = coverage or {}
    notes = []
    base_note = ""
    if abs(observed - promise["base_rate"]) > 0.02:
        base_note = (
            f"<p class='note'>{pct(observed)} of this cohort struggled vs {pct(promise['base_rate'])} in the validation cohorts. PR AUC, "
            f"the Brier score and recall in the top {k:g}% depend on that share (the top {k:g}% can hold at most "
            f"{pct(min(1.0, k / 100 / observed))} of the students who struggled), so compare them with the promise "
            "with care; ROC AUC does not depend on it.</p>"
        )
    if sampled:
        notes.append(
            f"Intervals and the calibration curve come from {cfg.bootstrap} bootstrap resamples of a random "
            f"sample of {len(sample)} of the {len(current)} students (the headline values use every student); "
            "intervals from a sample are slightly wider than the whole cohort's, so they err on the side of caution."
        )
    else:
        notes.append(f"Intervals: {cfg.bootstrap} bootstrap resamples of the {len(current)} students (95%).")
    if cov.get("n_scored") and cov.get("n_matched") is not None and cov["n_matched"] < cov["n_scored"]:
        notes.append(
            f"{cov['n_scored'] - cov['n_matched']} scored students have no recorded outcome yet and are left out."
        )
    if cov.get("n_outcomes") and cov.get("n_matched") is not None and cov["n_matched"] < cov["n_outcomes"]:
        notes.append(
            f"{cov['n_outcomes'] - cov['n_matched']} recorded outcomes belong to students this model did not score."
        )
    body = (
        f"<p>Model {version}{'' if point == 'default' else f' (prediction point {point})'} scored cohort {cohort}; {len(current)} of its students now have a "
        f"real outcome. Validation promised these numbers from {promise['kind']} cohorts "
        f"{', '.join(promise['cohorts'])}, each predicted by a model that had not seen it.</p>"
        "<h2>Real performance vs. the promise</h2>"
        + table(rows)
        + base_note
        + charts.html(
            promise_vs_real(chart_rows, f"Cohort {cohort}: promised by validation vs. real (95% interval)"), 340
        )
        + "<h2>Were the probabilities right?</h2><p>Students are grouped by predicted risk; in a well-calibrated model "
        "each group's share who struggled matches its predicted risk (the dotted line).</p>"
        + charts.html(calibration(boot["calibration"], ref_curve, f"Calibration on {cohort}"), 420)
        + table(
            [
                {
                    "group (by predicted risk)": c["bin"],
                    "students": c["n"],
                    "predicted risk": pct(c["mean_predicted"], 1),
                    "actually struggled": pct(c["observed"], 1),
                    "95% interval": f"{pct(c['observed_low'], 1)} - {pct(c['observed_high'], 1)}",
                }
                for c in boot["calibration"]
            ]
        )
        + "".join(f"<p class='note'>{n}</p>" for n in notes)
        + f"<h2>Detailed classification quality (Evidently)</h2><p>Below: Evidently's classification report, this "
        f"cohort as <em>current</em> and the training cohorts (out-of-fold risk) as <em>reference</em>. "
        f"A student counts as flagged when their risk is at least {threshold:.3f} (the high-risk tier).</p>"
    )
    out_dir = Path(out_dir)
    html_path = out_dir / "outcomes.html"
    title = f"Outcomes of cohort {cohort}: did the model keep its promise?"
    page = inject(
        snap.get_html_str(as_iframe=False),
        banner(title, verdict, warning=warning, body_html=f"<p>{html.escape(advice)}</p>") + evidence(body),
    )
    page = inject_head(page, CSP)
    numbers = {
        "report": "outcomes",
        "title": title,
        "cohort": cohort,
        "point": point,
        "model_version": version,
        "verdict": verdict,
        "advice": advice,
        "warning": warning,
        "status": status,
        "performance_drop": cfg.performance_drop,
        "promised": promise,
        "real": real,
        "base_rate": observed,
        "mean_predicted": mean_pred,
        "calibration": boot["calibration"],
        "reference_calibration": ref_curve,
        "flag_threshold": threshold,
        "evidently": evidently_values,
        "n_students": int(len(current)),
        "coverage": cov,
        "sampled": sampled,
        "n_bootstrap_rows": int(len(sample)),
        "n_boot": cfg.bootstrap,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(html_path),
    }
    write_atomic(html_path, page)
    write_json(out_dir / "outcomes.json", numbers)
    return numbers
