"""Generalization: does the model do as well on students it never saw as on those it learned from?

Side by side per cohort: training AUC, cross-validated AUC (the cohort held out), forward
backtest AUC (the cohort predicted by a model trained only on earlier cohorts), the two
baselines, and the new cohort once its real outcomes are in. The verdict is the
overfit/underfit call with its evidence (the train-validation gap); the learning curve is
the backtest read by the number of cohorts each model was trained on.

measure (`cohort_rows`, `summary_rows`, `learning_points`) -> judge (`judge`) -> render
(`render`) -> write (`page.write_report`), composed in `build_generalization_report`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from reports import page
from reports.charts import Charts, by_cohort, learning_curve
from reports.page import num, printed, write_report
from risk_model import evaluate
from risk_model.calibration import WORDS
from risk_model.config import ReportConfig, TrainingConfig

NAME = "generalization"
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


def hundredths(v: float) -> int:
    """`v` as printed with two decimals, in hundredths: thresholds are compared on what is printed."""
    return printed(v, ".2f")


def fit_word(train_auc: float, val_auc: float, t: TrainingConfig) -> str:
    """overfits / underfits / generalizes (`evaluate.verdict`), judged on the two-decimal values printed."""
    if hundredths(train_auc) < hundredths(t.underfit_auc):
        return "underfits"
    if hundredths(train_auc) - hundredths(val_auc) > hundredths(t.overfit_gap):
        return "overfits"
    return "generalizes"


def judge(metadata: dict, t: TrainingConfig, cfg: ReportConfig, new: dict | None) -> tuple[str, str, bool, dict]:
    """(verdict, word, warning, evidence numbers): overfits / underfits / generalizes, and the new cohort.

    Every comparison is made on the rounded numbers the verdict prints, so it never says
    "a gap of 0.08, above the 0.08 allowed"."""
    s = metadata["summary"]
    train_auc, val_auc = s["train_auc"], s["validation_auc"]
    gap = train_auc - val_auc
    shown_gap = (hundredths(train_auc) - hundredths(val_auc)) / 100
    word = fit_word(train_auc, val_auc, t)
    where = "forward backtest" if s["validation"] == "backtest" else "cross-validation by cohort"
    if word == "overfits":
        text = (
            f"The model overfits: AUC {train_auc:.2f} on its training data but {val_auc:.2f} on cohorts it never "
            f"trained on ({where}), a gap of {shown_gap:.2f}, above the {t.overfit_gap:.2f} allowed. It learned "
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
            f"on its training data, a gap of {shown_gap:.2f} (overfitting would be above {t.overfit_gap:.2f})."
        )
    logistic = s["logistic_auc"]
    beats = logistic == logistic and hundredths(val_auc) > hundredths(logistic)
    text += f" It {'beats' if beats else 'does NOT beat'} the simple logistic baseline ({logistic:.2f})."
    warning = word != "generalizes"
    info = {
        "train_auc": train_auc,
        "validation_auc": val_auc,
        "gap": gap,
        "verdict": word,
        "beats_logistic": bool(beats),
    }
    if new:
        text, warning = _judge_new(text, warning, info, new, cfg, shown_gap)
    return text, word, warning, info


def _judge_new(
    text: str, warning: bool, info: dict, new: dict, cfg: ReportConfig, shown_gap: float
) -> tuple[str, bool]:
    """The new cohort's real AUC against validation, on the printed (two-decimal) values."""
    val_auc, train_auc, word, cohort = info["validation_auc"], info["train_auc"], info["verdict"], new["cohort"]
    auc = new["metrics"]["roc_auc"]
    below = hundredths(val_auc) - hundredths(auc) > hundredths(cfg.performance_drop)
    dropped = below and new.get("high", auc) < val_auc
    info.update(new_cohort=cohort, new_auc=auc, new_dropped=bool(dropped))
    if dropped:
        return (
            f"The model did not generalize to {cohort}: AUC {auc:.2f} on its real outcomes vs "
            f"{val_auc:.2f} on past cohorts it never trained on, a drop of more than {cfg.performance_drop:.2f}. "
            f"Across past cohorts it {word} (training AUC {train_auc:.2f}, gap {shown_gap:.2f}), so the cause is "
            f"a change in {cohort}, not the model's fit: retrain with {cohort} included."
        ), True
    if below:
        return text + (
            f" On {cohort}'s real outcomes it reached {auc:.2f}: lower than validation, but within "
            "chance for a cohort this size."
        ), warning
    return text + f" On {cohort}'s real outcomes it reached {auc:.2f}, in line with validation.", warning


def cohort_rows(metadata: dict, new: dict | None) -> list[dict]:
    """Per cohort: size, at-risk rate and AUC measured four ways (+ the new cohort's real AUC)."""
    m = metadata["metrics"]
    rows = []
    for c in metadata["training_cohorts"]:
        train = m["train"]["lightgbm"].get(c, {})
        rows.append(
            {
                "cohort": c,
                "students": train.get("n"),
                "at_risk_rate": train.get("base_rate"),
                "train": _get(m, "train", "lightgbm", c),
                "cv": _get(m, "cv", "lightgbm", c),
                "backtest": _get(m, "backtest", "lightgbm", c),
                "backtest_ece": _get(m, "backtest", "lightgbm", c, "ece"),
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
    return rows


def summary_rows(metadata: dict, new: dict | None) -> list[dict]:
    """Every metric averaged over cohorts, per way of measuring and per model (+ the new cohort)."""
    m = metadata["metrics"]
    metrics = (
        ("roc_auc", "ROC AUC"),
        ("pr_auc", "PR AUC"),
        ("brier", "Brier"),
        ("recall_top_k", f"recall in top {metadata.get('top_k_percent', 10):g}%"),
        ("ece", "calibration error (ECE)"),
    )
    out = []
    for kind, kind_label in KINDS.items():
        for model, model_label in MODELS.items():
            by = m.get(kind, {}).get(model)
            if by:
                out.append(
                    {"how measured": kind_label, "model": model_label}
                    | {lab: num(evaluate.mean_over_cohorts(by, key), 3) for key, lab in metrics}
                )
    if new:
        out.append(
            {"how measured": f"real outcomes of {new['cohort']}", "model": MODELS["lightgbm"]}
            | {lab: num(new["metrics"].get(key), 3) for key, lab in metrics}
        )
    return out


def calibration_words(metadata: dict) -> str:
    """How the model's scores became probabilities, and why that way (`risk_model.calibration.choose`)."""
    chosen = metadata.get("summary", {}).get("calibration")
    if not chosen:
        return ""
    return f"Probabilities are {WORDS.get(chosen['name'], chosen['name'])}; {chosen['why']}."


SERIES = {
    "train": "training AUC",
    "cv": "cross-validated",
    "backtest": "forward backtest",
    "logistic_backtest": "logistic baseline (backtest)",
    "base_rate_backtest": "base-rate baseline (backtest)",
    "new": "new cohort, real outcomes",
}


def render(numbers: dict, metadata: dict) -> str:
    """The page: verdict, the per-cohort table and chart, the learning curve, the averages."""
    rows, points = numbers["by_cohort"], numbers["learning_curve"]
    charts = Charts()
    by_chart = charts.add(by_cohort(rows, SERIES, "ROC AUC per cohort"), 400)
    curve_chart = charts.add(learning_curve(points, "Forward backtest AUC by number of training cohorts"), 400)
    return page.render(
        "generalization.html.j2",
        scripts=charts.scripts,
        charts=charts,
        title=numbers["title"],
        verdict=numbers["verdict"],
        warning=numbers["warning"],
        advice="",
        n=numbers,
        order=", ".join(metadata["training_cohorts"]),
        calibration=calibration_words(metadata),
        shown=[
            {
                "cohort": r["cohort"],
                "students": r["students"],
                "struggled": page.pct(r["at_risk_rate"]),
                "training AUC": num(r.get("train"), 3),
                "cross-validated": num(r.get("cv"), 3),
                "forward backtest": num(r.get("backtest"), 3),
                "calibration error (backtest)": num(r.get("backtest_ece"), 3),
                "logistic baseline (backtest)": num(r.get("logistic_backtest"), 3),
                "base-rate baseline (backtest)": num(r.get("base_rate_backtest"), 3),
                "real outcomes (new cohort)": num(r.get("new"), 3),
            }
            for r in rows
        ],
        backtest=[p for p in points if p.get("lightgbm") is not None],
        summary=summary_rows(metadata, numbers["new_cohort"]),
        by_chart=by_chart,
        curve_chart=curve_chart,
    )


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
    verdict, word, warning, info = judge(metadata, t, cfg, new)
    version = metadata["version"]
    out_dir = Path(out_dir)
    numbers = {
        "report": NAME,
        "title": f"Generalization of model {version}: does it work on students it never saw?",
        "cohort": cohort,
        "point": point,
        "model_version": version,
        "verdict": verdict,
        "warning": warning,
        "status": word,
        "evidence": info,
        "overfit_gap": t.overfit_gap,
        "underfit_auc": t.underfit_auc,
        "by_cohort": cohort_rows(metadata, new),
        "learning_curve": learning_points(metadata, new),
        "new_cohort": new,
        "outcomes_known": new is not None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(out_dir / f"{NAME}.html"),
    }
    write_report(out_dir, NAME, render(numbers, metadata), numbers)
    return numbers
