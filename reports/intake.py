"""Intake drift: does the new cohort look like the cohorts the model learned from?

Evidently's DataDriftPreset compares every feature of the new intake with the training
reference kept in the model version, and a ValueDrift on the predicted risk compares the
intake's scores with the out-of-fold risk of the training cohorts. The page opens with
the answer in plain words: which features moved most, and whether the validation
estimate can still be relied on. Evidently's own page is written beside it (evidently/).

At the top, before any outcome exists, the page says what to expect of this intake: its
expected ROC AUC, recall in the top k% and at-risk rate from its own calibrated probabilities
(`risk_model.estimate`), and the promise, a range for its ROC AUC that is widened or withdrawn
when the drifted features carry much of the model's weight (`risk_model.promise`). Both are
kept in the report's JSON: the outcomes report and the API read the promise from there.

measure (`empty_columns`, `evidently_frames`, `run_evidently`, `drift_results`, `measure`,
`expectation`) -> judge (`judge`) -> render (`render`) -> write (`page.write_report`), composed in
`build_intake_report`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from reports import page
from reports.page import apart, defang, write_report
from risk_model.config import DatasetContract, ReportConfig
from risk_model.estimate import expected_performance
from risk_model.promise import drifted_weight, make_promise

NAME = "intake_drift"
USUAL_COHORTS = 3  # past cohorts whose drift from the others is measured (each one more Evidently run)
# rows per side in those runs: above 1,000 Evidently tests by distances (Wasserstein, Jensen-Shannon), which
# do not grow with the number of rows as p-values do, so a sample says the same; all rows took 5.4 s a run
# at 15,000 against 3,000, and 1.3 s at 3,000 each
USUAL_ROWS = 3000


def _sample(df: pd.DataFrame, n: int, seed: int = 0) -> tuple[pd.DataFrame, bool]:
    return (df.sample(n, random_state=seed), True) if len(df) > n else (df, False)


def empty_columns(reference: pd.DataFrame, current: pd.DataFrame, contract: DatasetContract) -> tuple[list, dict]:
    """Numeric columns Evidently cannot test: with no value on either side (named, not compared),
    or on one side only (the column vanished: that is drift)."""
    sides = {f: (reference[f].isna().all(), current[f].isna().all()) for f in contract.numeric_features}
    not_compared = [f for f, (r, c) in sides.items() if r and c]
    vanished = {
        f: {
            "method": "no values on one side",
            "score": 1.0,
            "threshold": None,
            "drifted": True,
            "empty_in": "reference" if r else "intake",
        }
        for f, (r, c) in sides.items()
        if r != c
    }
    return not_compared, vanished


def cohort_attributes(
    reference: pd.DataFrame, current: pd.DataFrame, contract: DatasetContract, skip: list[str] | tuple = ()
) -> dict[str, dict]:
    """Features that describe a whole cohort rather than its students (one value within each
    training cohort, several across them: the month a presentation starts, say), judged as such.

    An intake is one cohort, so such a feature's distribution always differs from the pooled training
    cohorts; a drift test would flag it every time and add it to the weight the promise discounts. The
    question that matters is whether the model has seen this intake's value: drifted only if not."""
    cohort = contract.cohort_column
    if cohort not in reference.columns or reference[cohort].nunique() < 2:
        return {}
    out = {}
    for f in [f for f in contract.features if f not in skip]:
        ref = reference[[cohort, f]].astype(object).fillna("(missing)")
        per_cohort = ref.groupby(cohort)[f].nunique()
        values = set(current[f].astype(object).fillna("(missing)"))
        if (per_cohort != 1).any() or ref[f].nunique() < 2 or len(values) != 1:
            continue
        seen = values <= set(ref[f])
        out[f] = {
            "method": "cohort attribute: " + ("a value seen in training" if seen else "a value never seen in training"),
            "score": 0.0 if seen else 1.0,
            "threshold": None,
            "drifted": not seen,
        }
    return out


def evidently_frames(
    reference: pd.DataFrame, current: pd.DataFrame, num: list[str], cat: list[str], max_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str], bool]:
    """Sampled copies for Evidently, column names and category values defanged (see `page.defang`);
    also {Evidently's column name: ours} and whether either side was sampled."""
    cols = num + cat + ["risk"]
    ref, ref_sampled = _sample(reference[cols], max_rows)
    cur, cur_sampled = _sample(current[cols], max_rows)
    names = {defang(c): c for c in cols}
    if len(names) != len(cols):
        raise ValueError(f"column names {cols} collide once '<' and '>' are replaced")
    frames = []
    for frame in (ref, cur):
        frame = frame.copy()
        frame[num + ["risk"]] = frame[num + ["risk"]].astype("float64")
        frame[cat] = frame[cat].astype(object).where(frame[cat].notna(), "(missing)").map(defang)
        frames.append(frame.rename(columns=defang))
    return frames[0], frames[1], names, ref_sampled or cur_sampled


def run_evidently(
    ref: pd.DataFrame, cur: pd.DataFrame, num: list[str], cat: list[str], cfg: ReportConfig, page: bool = True
) -> Any:
    """Evidently's drift tests of every feature and of the predicted risk (frames from `evidently_frames`).

    `page`: with the data-drift preset, whose page the report keeps. Without it, only the same per-column
    tests (`ValueDrift` with the preset's threshold, method chosen as the preset chooses it): the numbers
    without the preset's table and plots, which recompute every column's test and were 45 % of a run."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    num, cat = [defang(c) for c in num], [defang(c) for c in cat]
    dd = DataDefinition(numerical_columns=num + ["risk"], categorical_columns=cat)
    if page:
        tests: list = [DataDriftPreset(columns=num + cat, drift_share=cfg.drift_share, threshold=cfg.drift_threshold)]
    else:
        tests = [ValueDrift(column=c, threshold=cfg.drift_threshold) for c in num + cat]
    report = Report(
        [*tests, ValueDrift(column="risk", method="wasserstein", threshold=cfg.prediction_drift_threshold)],
        include_tests=True,
    )
    return report.run(Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd))


def drift_results(snapshot: Any, names: dict[str, str]) -> dict[str, dict]:
    """Per column (our name): drift method, score, threshold and whether Evidently's test failed,
    read from the snapshot's metric results."""
    from evidently.core.metric_types import TestStatus
    from evidently.metrics import ValueDrift

    out: dict[str, dict] = {}
    for metric_id, result in snapshot.metric_results.items():
        metric = snapshot.context.get_metric(metric_id).to_metric()
        if not isinstance(metric, ValueDrift):
            continue
        params = result.get_metric_value_location().metric.params  # the method and threshold Evidently chose
        out[names.get(metric.column, metric.column)] = {
            "method": params.get("method"),
            "score": float(result.value),
            "threshold": params.get("threshold"),
            "drifted": any(t.status == TestStatus.FAIL for t in result.tests or []),
        }
    return out


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    contract: DatasetContract,
    cfg: ReportConfig,
    *,
    attributes_of: pd.DataFrame | None = None,
    page: bool = True,
) -> tuple[dict, Any]:
    """The drift numbers of the report, and Evidently's snapshot. `attributes_of`: the rows that say which
    features are cohort attributes (`cohort_attributes`; default `reference`). `page`: see `run_evidently`."""
    not_compared, vanished = empty_columns(reference, current, contract)
    attributes = cohort_attributes(
        reference if attributes_of is None else attributes_of, current, contract, skip=[*not_compared, *vanished]
    )
    num = [f for f in contract.numeric_features if f not in not_compared and f not in vanished and f not in attributes]
    cat = [f for f in contract.categorical if f not in attributes]
    ref, cur, names, sampled = evidently_frames(reference, current, num, cat, cfg.max_rows)
    snapshot = run_evidently(ref, cur, num, cat, cfg, page)
    columns = drift_results(snapshot, names)
    risk = columns.pop("risk")
    features = {**{c: v for c, v in columns.items() if c in num + cat}, **vanished, **attributes}
    drifted = sorted((c for c, v in features.items() if v.get("drifted")), key=lambda c: -features[c]["score"])
    share = len(drifted) / max(1, len(features))
    numbers = {
        "dataset_drift": share >= cfg.drift_share,
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
        "sampled": sampled,
    }
    return numbers, snapshot


def usual_drift(
    reference: pd.DataFrame, contract: DatasetContract, cfg: ReportConfig, importance: dict[str, float] | None
) -> dict[str, float]:
    """How far past cohorts drifted from each other: for each of the latest `USUAL_COHORTS` cohorts in the
    reference, the share of the model's importance in features that drifted between it and the other past
    cohorts (`USUAL_ROWS` a side), by the intake's own tests (`measure`). The promise's cohort-to-cohort
    spread already carries what drift of that size did to the AUC. Empty with fewer than two past cohorts
    or no importance."""
    cohort = contract.cohort_column
    if not importance or cohort not in reference.columns:
        return {}
    cohorts = contract.sort_cohorts(reference[cohort].dropna().unique())
    if len(cohorts) < 2:
        return {}
    # only the features the model leans on count in the share: the others are not tested (each costs time)
    leaned = [f for f in contract.features if importance.get(f, 0.0) > 0]
    if not leaned:
        return {}
    narrow = contract.model_copy(
        update={
            "numeric_features": [f for f in contract.numeric_features if f in leaned],
            "categorical_features": [f for f in contract.categorical_features if f in leaned],
            "sensitive_as_features": [f for f in contract.sensitive_as_features if f in leaned],
        }
    )
    out = {}
    for c in cohorts[-USUAL_COHORTS:]:
        this = reference[cohort].astype(str) == c
        one, _ = _sample(reference[this], USUAL_ROWS)
        rest, _ = _sample(reference[~this], USUAL_ROWS)
        m, _ = measure(rest, one, narrow, cfg, attributes_of=reference, page=False)  # numbers only
        out[c] = drifted_weight(importance, {f: bool(v.get("drifted")) for f, v in m["features"].items()})
    return out


def usual_drift_kept(
    path: Path | None,
    reference: pd.DataFrame,
    contract: DatasetContract,
    cfg: ReportConfig,
    importance: dict[str, float] | None,
) -> dict[str, float]:
    """`usual_drift`, read from `path` when it was measured there with the same settings: it depends only on
    the model version (its reference rows and importance), the contract and the report settings, so every
    later report of that version (another intake, the rebuild when outcomes arrive) reuses it. Kept with a
    key of those settings and of the importance; a file with another key, or unreadable, is measured again
    and replaced (whole, via a rename). `path` None: measured, not kept."""
    if path is None:
        return usual_drift(reference, contract, cfg, importance)
    key = hashlib.sha256(
        json.dumps(
            [contract.model_dump(mode="json"), cfg.model_dump(mode="json"), importance, USUAL_COHORTS, USUAL_ROWS],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()
    try:
        kept = json.loads(path.read_text())
        if kept.get("key") == key:
            return {str(c): float(v) for c, v in kept["usual_drift"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # not measured yet, or damaged: measure again
    usual = usual_drift(reference, contract, cfg, importance)
    page.write_json(path, {"key": key, "usual_drift": usual})
    return usual


def expectation(
    current: pd.DataFrame,
    features: dict[str, dict],
    metrics: dict | None,
    importance: dict[str, float] | None,
    k_percent: float,
    usual: dict[str, float] | None = None,
) -> tuple[dict, dict | None]:
    """(expected performance of the intake from its own probabilities, the promise as a dict or None
    without the model's metrics): the promise weighs each drifted feature by the model's importance, and
    counts only the drift beyond the largest between past cohorts (`usual_drift`)."""
    expected = expected_performance(current["risk"].to_numpy(dtype=float), k_percent)
    if metrics is None:
        return expected, None
    drifted = {c: bool(v.get("drifted")) for c, v in features.items()}
    largest = max(usual.values()) if usual else None
    return expected, make_promise(metrics, expected, importance=importance, drifted=drifted, usual=largest).to_dict()


def judge(
    m: dict, contract: DatasetContract, cohort: str, validation_auc: float | None, promise: dict | None = None
) -> tuple[str, bool]:
    """(verdict, warning): drift of the features or of the predicted risk means read the scores with care.
    When past cohorts drifted from each other as much (the `promise` holds on that measure), the verdict
    says so instead of doubting the range stated beside it.

    Counts only: the verdict prints no rounded number that a threshold is compared with."""
    drifted, n = m["drifted_features"], len(m["features"])
    prediction_drift = bool(m["prediction_drift"].get("drifted"))
    top = ", ".join(contract.label(c) for c in drifted[:3])
    usual_holds = bool(promise and promise["status"] == "holds" and m.get("usual_drift"))
    if m["dataset_drift"] or prediction_drift:
        verdict = (
            f"Drift detected in cohort {cohort}: {len(drifted)} of {n} features moved"
            + (f" (most: {top})" if top else "")
            + ("; the predicted risk distribution shifted too" if prediction_drift else "")
            + (
                ". Past cohorts differed from each other about as much in the features the model leans on, "
                "so the expected range below still allows for it: check the outcomes report when real outcomes "
                "arrive."
                if usual_holds
                else ". The validation estimate may no longer hold for this intake: check the outcomes report "
                "when real outcomes arrive, and read these scores with care."
            )
        )
        return verdict, True
    verdict = (
        f"No drift: cohort {cohort} looks like the training cohorts ({len(drifted)} of {n} features moved"
        + (f": {top}" if top else "")
        + "). The validation estimate"
        + (f" (AUC {validation_auc:.2f})" if validation_auc is not None else "")
        + " can be relied on."
    )
    return verdict, False


def feature_rows(m: dict, contract: DatasetContract) -> list[dict]:
    """The table of features, most drifted first."""
    return [
        {
            "feature": contract.label(c),
            "column": c,
            "method": v["method"],
            "drift score": apart(v["score"], v["threshold"]),
            "threshold": v["threshold"],
            "drifted": "yes" if v.get("drifted") else "no",
        }
        for c, v in sorted(m["features"].items(), key=lambda kv: -kv[1]["score"])
    ]


def render(numbers: dict, contract: DatasetContract, cfg: ReportConfig) -> str:
    """The page: verdict, then the evidence."""
    return page.render(
        "intake_drift.html.j2",
        title=numbers["title"],
        verdict=numbers["verdict"],
        warning=numbers["warning"],
        advice="",
        n=numbers,
        cfg=cfg,
        rows=feature_rows(numbers, contract),
        risk_score=apart(numbers["prediction_drift"]["score"], numbers["prediction_drift"]["threshold"]),
        not_compared=", ".join(contract.label(c) for c in numbers["not_compared"]),
        expected=numbers["expected"],
        promise=numbers["promise"],
        k=f"{numbers['k_percent']:g}",
        charts=None,
    )


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
    outcomes_known: bool = False,
    metrics: dict | None = None,
    importance: dict[str, float] | None = None,
    k_percent: float = 10.0,
    usual_path: Path | None = None,
) -> dict:
    """Write intake_drift.html and intake_drift.json into `out_dir` (Evidently's page under evidently/);
    return the JSON numbers.

    `reference` has the features and a `risk` column (out-of-fold training risk);
    `current` has the features and a `risk` column (the intake's calibrated probability).
    `outcomes_known`: whether the cohort's real outcomes were recorded when this was built.
    `metrics`: the scoring model's training metrics (metadata["metrics"]), `importance`: its feature
    importance by contract feature name; with them the page states the promise for this intake.
    `usual_path`: where the model version's drift between past cohorts is kept (`usual_drift_kept`).
    """
    m, snapshot = measure(reference, current, contract, cfg)
    m["usual_drift"] = usual_drift_kept(usual_path, reference, contract, cfg, importance) if metrics is not None else {}
    expected, promise = expectation(current, m["features"], metrics, importance, k_percent, m["usual_drift"])
    verdict, warning = judge(m, contract, cohort, validation_auc, promise)
    warning = warning or (promise is not None and promise["status"] == "withdrawn")
    out_dir = Path(out_dir)
    numbers = {
        "report": NAME,
        "title": f"Intake drift: cohort {cohort}",
        "cohort": cohort,
        "model_version": model_version,
        "verdict": verdict,
        "warning": warning,
        **m,
        "k_percent": k_percent,
        "expected": expected,
        "promise": promise,
        "outcomes_known": outcomes_known,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(out_dir / f"{NAME}.html"),
    }
    write_report(out_dir, NAME, render(numbers, contract, cfg), numbers, snapshot=snapshot)
    return numbers
