"""Generalization: does the model do as well on students it never saw as on those it learned from?

Side by side per cohort: training AUC, cross-validated AUC (the cohort held out), forward
backtest AUC (the cohort predicted by a model trained only on earlier cohorts), the two
baselines, and the new cohort once its real outcomes are in. The verdict is the
overfit/underfit call with its evidence (the train-validation gap); the learning curve is
the backtest read by the number of cohorts each model was trained on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reports.charts import Charts, by_cohort, learning_curve
from reports.html import banner, document, evidence, num, pct, table, write_atomic, write_json
from risk_model import evaluate
from risk_model.config import ReportConfig, TrainingConfig

MODELS = {"lightgbm": "the model", "logistic": "logistic baseline", "base_rate": "base-rate baseline"}
KINDS = {
    "train": "on its training data",
    "cv": "cross-validated (cohort held out)",
    "backtest": "forward backtest (earlier cohorts only)",
}


def _get(metrics: dict, kind: str, model: str, cohort: str, metric: str = "roc_auc") -> float | None:
    v = metrics.get(kind, {}).get(model, {}).get(cohort, {}).get(metric)
    return None if v is None or v != v else float(v)


def learning_points(metadata: dict, new: dict | None = None) -> list[dict]:
    """Backtest AUC by the number of cohorts its model was trained on (+ the new cohort)."""
    order, m = metadata["training_cohorts"], metadata["metrics"]
    pts = [
        {
            "n_cohorts": i,
            "cohort": c,
            "lightgbm": _get(m, "backtest", "lightgbm", c),
            "logistic": _get(m, "backtest", "logistic", c),
            "base_rate": _get(m, "backtest", "base_rate", c),
        }
        for i, c in enumerate(order)
        if _get(m, "backtest", "lightgbm", c) is not None
    ]
    if new:
        pts.append({"n_cohorts": len(order), "cohort": new["cohort"], "new": new["metrics"]["roc_auc"]})
    return pts


def judge(metadata: dict, t: TrainingConfig, cfg: ReportConfig, new: dict | None) -> tuple[str, str, bool, dict]:
    """(verdict, word, warning, evidence numbers): overfits / underfits / generalizes, and the new cohort."""
    s = metadata["summary"]
    train_auc, val_auc = s["train_auc"], s["validation_auc"]
    gap = train_auc - val_auc
    word = evaluate.verdict(train_auc, val_auc, overfit_gap=t.overfit_gap, underfit_auc=t.underfit_auc)
    where = "forward backtest" if s["validation"] == "backtest" else "cross-validation by cohort"
    if word == "overfits":
        text = (
            f"The model overfits: AUC {train_auc:.2f} on its training data but {val_auc:.2f} on cohorts it never "
            f"trained on ({where}), a gap of {gap:.2f}, above the {t.overfit_gap:.2f} allowed. It learned "
            "details of past students that do not carry over; retrain with simpler settings."
        )
    elif word == "underfits":
        text = (
            f"The model underfits: AUC only {train_auc:.2f} even on its training data (below {t.underfit_auc:.2f}), "
            f"and {val_auc:.2f} on unseen cohorts. The data it has does not predict outcomes well."
        )
    else:
        text = (
            f"The model generalizes: AUC {val_auc:.2f} on cohorts it never trained on ({where}) vs {train_auc:.2f} "
            f"on its training data, a gap of {gap:.2f} (overfitting would be above {t.overfit_gap:.2f})."
        )
    beats = s["logistic_auc"] == s["logistic_auc"] and val_auc > s["logistic_auc"]
    text += f" It {'beats' if beats else 'does NOT beat'} the simple logistic baseline ({s['logistic_auc']:.2f})."
    warning = word != "generalizes"
    info = {
        "train_auc": train_auc,
        "validation_auc": val_auc,
        "gap": gap,
        "verdict": word,
        "beats_logistic": bool(beats),
    }
    if new:
        auc = new["metrics"]["roc_auc"]
        dropped = val_auc - auc > cfg.performance_drop and new.get("high", auc) < val_auc
        info.update(new_cohort=new["cohort"], new_auc=auc, new_dropped=bool(dropped))
        if dropped:
            text = (
                f"The model did not generalize to {new['cohort']}: AUC {auc:.2f} on its real outcomes vs "
                f"{val_auc:.2f} on past cohorts it never trained on, a drop of more than {cfg.performance_drop:.2f}. "
                f"Across past cohorts it {word} (training AUC {train_auc:.2f}, gap {gap:.2f}), so the cause is "
                f"a change in {new['cohort']}, not the model's fit: retrain with {new['cohort']} included."
            )
            warning = True
        elif val_auc - auc > cfg.performance_drop:
            text += (
                f" On {new['cohort']}'s real outcomes it reached {auc:.2f}: lower than validation, but within "
                "chance for a cohort this size."
            )
        else:
            text += f" On {new['cohort']}'s real outcomes it reached {auc:.2f}, in line with validation."
    return text, word, warning, info


def build_generalization_report(
    metadata: dict,
    t: TrainingConfig,
    cfg: ReportConfig,
    out_dir: Path,
    *,
    cohort: str,
    point: str = "default",
    new: dict | None = None,
) -> dict:
    """Write generalization.html and .json into `out_dir`; return the JSON numbers.

    `new` (optional): {"cohort", "metrics": evaluate.metrics(...), "low", "high"} for the new
    cohort's real outcomes (low/high: the interval of its ROC AUC).
    """
    m, order = metadata["metrics"], metadata["training_cohorts"]
    version = metadata["version"]
    verdict, word, warning, info = judge(metadata, t, cfg, new)
    rows = []
    for c in order:
        n = m["train"]["lightgbm"].get(c, {}).get("n")
        rate = m["train"]["lightgbm"].get(c, {}).get("base_rate")
        rows.append(
            {
                "cohort": c,
                "students": n,
                "at_risk_rate": rate,
                "train": _get(m, "train", "lightgbm", c),
                "cv": _get(m, "cv", "lightgbm", c),
                "backtest": _get(m, "backtest", "lightgbm", c),
                "logistic_backtest": _get(m, "backtest", "logistic", c),
                "base_rate_backtest": _get(m, "backtest", "base_rate", c),
                "logistic_cv": _get(m, "cv", "logistic", c),
            }
        )
    if new:
        rows.append(
            {
                "cohort": new["cohort"],
                "students": new["metrics"]["n"],
                "at_risk_rate": new["metrics"]["base_rate"],
                "new": new["metrics"]["roc_auc"],
            }
        )
    shown = [
        {
            "cohort": r["cohort"],
            "students": r["students"],
            "struggled": pct(r["at_risk_rate"]),
            "training AUC": num(r.get("train"), 3),
            "cross-validated": num(r.get("cv"), 3),
            "forward backtest": num(r.get("backtest"), 3),
            "logistic baseline (backtest)": num(r.get("logistic_backtest"), 3),
            "base-rate baseline (backtest)": num(r.get("base_rate_backtest"), 3),
            "real outcomes (new cohort)": num(r.get("new"), 3),
        }
        for r in rows
    ]
    summary_rows = []
    for kind, kind_label in KINDS.items():
        for model, model_label in MODELS.items():
            by = m.get(kind, {}).get(model)
            if not by:
                continue
            summary_rows.append(
                {
                    "how measured": kind_label,
                    "model": model_label,
                    **{
                        lab: num(evaluate.mean_over_cohorts(by, key), 3)
                        for key, lab in (
                            ("roc_auc", "ROC AUC"),
                            ("pr_auc", "PR AUC"),
                            ("brier", "Brier"),
                            ("recall_top_k", f"recall in top {metadata.get('top_k_percent', 10):g}%"),
                        )
                    },
                }
            )
    if new:
        summary_rows.append(
            {
                "how measured": f"real outcomes of {new['cohort']}",
                "model": MODELS["lightgbm"],
                "ROC AUC": num(new["metrics"]["roc_auc"], 3),
                "PR AUC": num(new["metrics"]["pr_auc"], 3),
                "Brier": num(new["metrics"]["brier"], 3),
                f"recall in top {metadata.get('top_k_percent', 10):g}%": num(new["metrics"]["recall_top_k"], 3),
            }
        )
    points = learning_points(metadata, new)
    charts = Charts()
    curve_note = ""
    bt = [p for p in points if p.get("lightgbm") is not None]
    if len(bt) >= 2:
        curve_note = (
            f"<p>Trained on {bt[0]['n_cohorts']} cohort(s) the model reached AUC {bt[0]['lightgbm']:.2f} on the "
            f"next one; trained on {bt[-1]['n_cohorts']}, {bt[-1]['lightgbm']:.2f}. A curve still rising means "
            "more past cohorts would help; a flat one means more of the same data will not.</p>"
        )
    body = (
        f"<p>Model {version}{'' if point == 'default' else f' (prediction point {point})'}, trained on cohorts "
        f"{', '.join(order)}. "
        "ROC AUC measures how well the model ranks students who struggled above those who did not: 0.5 is a coin toss, "
        "1.0 is perfect. A model that only memorised its training students scores much higher on them than on new "
        "cohorts (overfitting); one that learned too little scores low everywhere (underfitting).</p>"
        "<h2>AUC per cohort, measured four ways</h2>"
        + table(shown)
        + "<p class='note'>Training AUC: the final model on students it learned from. Cross-validated: the cohort was "
        "left out while fitting. Forward backtest: the cohort was predicted by a model trained only on earlier "
        "cohorts, exactly as this year's scores were made. Baselines: a logistic regression and the base rate "
        "(every student gets the same risk; AUC 0.5 by construction). n/a: not measured that way (the oldest cohort "
        "has no earlier cohort to learn from; the new cohort was not trained on).</p>"
        + charts.html(
            by_cohort(
                rows,
                {
                    "train": "training AUC",
                    "cv": "cross-validated",
                    "backtest": "forward backtest",
                    "logistic_backtest": "logistic baseline (backtest)",
                    "base_rate_backtest": "base-rate baseline (backtest)",
                    "new": "new cohort, real outcomes",
                },
                "ROC AUC per cohort",
            ),
            400,
        )
        + "<h2>Learning curve: does more history help?</h2>"
        + curve_note
        + charts.html(learning_curve(points, "Forward backtest AUC by number of training cohorts"), 400)
        + "<p class='note'>Each point is a cohort predicted by a model trained on all cohorts before it, so the number "
        "of training cohorts grows with time; a dip can also be a harder year.</p>"
        + "<h2>All metrics, averaged over cohorts</h2>"
        + table(summary_rows)
    )
    title = f"Generalization of model {version}: does it work on students it never saw?"
    out_dir = Path(out_dir)
    html_path = out_dir / "generalization.html"
    page = document(title, banner(title, verdict, warning=warning) + evidence(body))
    numbers = {
        "report": "generalization",
        "title": title,
        "cohort": cohort,
        "point": point,
        "model_version": version,
        "verdict": verdict,
        "warning": warning,
        "status": word,
        "evidence": info,
        "overfit_gap": t.overfit_gap,
        "underfit_auc": t.underfit_auc,
        "by_cohort": rows,
        "learning_curve": points,
        "new_cohort": new,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(html_path),
    }
    write_atomic(html_path, page)
    write_json(out_dir / "generalization.json", numbers)
    return numbers
