"""Intake drift: does the new cohort look like the cohorts the model learned from?

Evidently's DataDriftPreset compares every feature of the new intake with the training
reference kept in the model version, and a ValueDrift on the predicted risk compares the
intake's scores with the out-of-fold risk of the training cohorts. The page opens with
the answer in plain words: which features moved most, and whether the validation
estimate can still be relied on.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from reports.html import CSP, banner, inject, inject_head, table, write_atomic, write_json
from risk_model.config import DatasetContract, ReportConfig


def _sample(df: pd.DataFrame, n: int, seed: int = 0) -> tuple[pd.DataFrame, bool]:
    return (df.sample(n, random_state=seed), True) if len(df) > n else (df, False)


def _column_results(snapshot_dict: dict) -> dict[str, dict]:
    """Per column: drift method, score, threshold and whether Evidently's test flagged it."""
    out: dict[str, dict] = {}
    for m in snapshot_dict["metrics"]:
        cfg = m.get("config", {})
        if cfg.get("type", "").endswith("ValueDrift"):
            out[cfg["column"]] = {
                "method": cfg.get("method"),
                "score": float(m["value"]),
                "threshold": cfg.get("threshold"),
            }
    for t in snapshot_dict.get("tests", []):
        params = t.get("metric_config", {}).get("params", {})
        if params.get("type", "").endswith("ValueDrift") and params.get("column") in out:
            out[params["column"]]["drifted"] = t["status"] == "FAIL"
    return out


def build_intake_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DatasetContract,
    cfg: ReportConfig,
    out_dir: Path,
    *,
    cohort: str,
    model_version: str,
    validation_auc: float | None = None,
) -> dict:
    """Write intake_drift.html and intake_drift.json into `out_dir`; return the JSON numbers.

    `reference` has the features and a `risk` column (out-of-fold training risk);
    `current` has the features and a `risk` column (the intake's calibrated probability).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    # A numeric column with no value on a side cannot be tested (Evidently refuses it): with no
    # value on either side (on OULAD's day 0 nothing is due, so no weighted score) it is only
    # named; emptied on one side only, the column itself vanished: that is drift.
    sides = {f: (reference[f].isna().all(), current[f].isna().all()) for f in contract.numeric_features}
    empty = {f: s for f, s in sides.items() if any(s)}
    not_compared = [f for f, (r, c) in empty.items() if r and c]
    vanished = {
        f: {
            "method": "no values on one side",
            "score": 1.0,
            "threshold": None,
            "drifted": True,
            "empty_in": "reference" if r else "intake",
        }
        for f, (r, c) in empty.items()
        if r != c
    }
    num = [f for f in contract.numeric_features if f not in empty]
    cat = list(contract.categorical)
    cols = num + cat + ["risk"]
    ref, ref_sampled = _sample(reference[cols], cfg.max_rows)
    cur, cur_sampled = _sample(current[cols], cfg.max_rows)
    for frame in (ref, cur):
        frame[num + ["risk"]] = frame[num + ["risk"]].astype("float64")
        frame[cat] = frame[cat].astype(object).where(frame[cat].notna(), "(missing)")
    dd = DataDefinition(numerical_columns=num + ["risk"], categorical_columns=cat)
    preset = DataDriftPreset(columns=num + cat, drift_share=cfg.drift_share, threshold=cfg.drift_threshold)
    report = Report(
        [preset, ValueDrift(column="risk", method="wasserstein", threshold=cfg.prediction_drift_threshold)],
        include_tests=True,
    )
    snap = report.run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))
    d = snap.dict()
    columns = _column_results(d)
    risk = columns.pop("risk")
    features = {**{c: v for c, v in columns.items() if c in num + cat}, **vanished}
    drifted = sorted((c for c, v in features.items() if v.get("drifted")), key=lambda c: -features[c]["score"])
    share = len(drifted) / max(1, len(features))
    dataset_drift = share >= cfg.drift_share
    prediction_drift = bool(risk.get("drifted"))
    top = ", ".join(contract.label(c) for c in drifted[:3])
    if dataset_drift or prediction_drift:
        reliance = (
            "The validation estimate may no longer hold for this intake: check the outcomes report "
            "when real outcomes arrive, and read these scores with care."
        )
        verdict = (
            f"Drift detected in cohort {cohort}: {len(drifted)} of {len(features)} features moved"
            + (f" (most: {top})" if top else "")
            + ("; the predicted risk distribution shifted too" if prediction_drift else "")
            + f". {reliance}"
        )
    else:
        verdict = (
            f"No drift: cohort {cohort} looks like the training cohorts ({len(drifted)} of {len(features)} features moved"
            + (f": {top}" if top else "")
            + "). The validation estimate"
            + (f" (AUC {validation_auc:.2f})" if validation_auc is not None else "")
            + " can be relied on."
        )
    sampled_note = ""
    if ref_sampled or cur_sampled:
        sampled_note = (
            f"<p class='note'>Computed on a random sample of {cfg.max_rows} students per side "
            f"(reference {len(reference)}, intake {len(current)}): enough for these distribution tests.</p>"
        )
    rows = [
        {
            "feature": contract.label(c),
            "column": c,
            "method": v["method"],
            "drift score": v["score"],
            "threshold": v["threshold"],
            "drifted": "yes" if v.get("drifted") else "no",
        }
        for c, v in sorted(features.items(), key=lambda kv: -kv[1]["score"])
    ]
    body = (
        f"<p>Model {model_version}; intake {len(current)} students vs. {len(reference)} training reference students. "
        f"Dataset drift is declared when at least {cfg.drift_share:.0%} of features drift.</p>"
        f"<p>Predicted risk: mean {current['risk'].mean():.3f} now vs. {reference['risk'].mean():.3f} in training "
        f"(drift score {risk['score']:.3f}, threshold {risk['threshold']}).</p>"
        + table(rows)
        + (
            f"<p class='note'>Not compared, no values in training or in this intake: "
            f"{', '.join(contract.label(c) for c in not_compared)}.</p>"
            if not_compared
            else ""
        )
        + sampled_note
    )
    page = inject(
        snap.get_html_str(as_iframe=False),
        banner(f"Intake drift: cohort {cohort}", verdict, warning=dataset_drift or prediction_drift, body_html=body),
    )
    page = inject_head(page, CSP)
    out_dir = Path(out_dir)
    numbers = {
        "report": "intake_drift",
        "cohort": cohort,
        "model_version": model_version,
        "verdict": verdict,
        "warning": dataset_drift or prediction_drift,
        "dataset_drift": dataset_drift,
        "drift_share": share,
        "drifted_features": drifted,
        "features": features,
        "not_compared": not_compared,
        "prediction_drift": {
            **risk,
            "mean_reference": float(reference["risk"].mean()),
            "mean_current": float(current["risk"].mean()),
        },
        "n_reference": int(len(reference)),
        "n_current": int(len(current)),
        "sampled": ref_sampled or cur_sampled,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(out_dir / "intake_drift.html"),
    }
    write_atomic(out_dir / "intake_drift.html", page)
    write_json(out_dir / "intake_drift.json", numbers)
    return numbers
