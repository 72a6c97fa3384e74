"""Fairness: does the model serve every group of students alike?

For each sensitive column of the contract, per group: size, share who struggled, ROC AUC,
share flagged high risk, TPR and FPR at that flag, and calibration (mean predicted risk vs.
observed), from fairlearn's MetricFrame (risk_model.fairness). The largest gaps are named;
small groups are merged or hidden so no row describes a handful of students. Built on the
new cohort's real outcomes when they exist, else on the training cohorts' out-of-fold risk.

measure (`measure`, `agree_with_print`) -> judge (`judge`) -> render (`render`, `group_rows`,
`gap_rows`, `column_notes`) -> write (`page.write_report`), composed in `build_fairness_report`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from reports import followup, page
from reports.charts import Charts, groups
from reports.page import made_with_outcomes, num, pct, printed, write_report
from risk_model.config import DatasetContract, ReportConfig
from risk_model.fairness import OTHER, column_report
from risk_model.labels import band

NAME = "fairness"


def _describe(col: str, metric: str, g: dict) -> str:
    if metric == "tpr":
        return (
            f"{col}: of the students who struggled, it flags {pct(g['high'])} in group {g['high_group']} "
            f"but only {pct(g['low'])} in group {g['low_group']}"
        )
    if metric == "fpr":
        return (
            f"{col}: of the students who did fine, it wrongly flags {pct(g['high'])} in group {g['high_group']} "
            f"vs {pct(g['low'])} in group {g['low_group']}"
        )
    if metric == "roc_auc":
        return (
            f"{col}: it ranks risk less well in group {g['low_group']} (AUC {g['low']:.2f} vs "
            f"{g['high']:.2f} in group {g['high_group']})"
        )
    if metric == "share_flagged":
        return f"{col}: flags {pct(g['high'])} of group {g['high_group']} vs {pct(g['low'])} of group {g['low_group']}"
    raise ValueError(metric)


def _status(g: dict) -> str:
    return "yes" if g["flagged"] else "watch (could be chance)" if g["above_threshold"] else "no"


def _calibration_words(col: str, g: dict, rows: list[dict]) -> str:
    by = {r["group"]: r for r in rows}
    worse, other = sorted((g["high_group"], g["low_group"]), key=lambda name: -abs(by[name]["calibration_gap"]))
    how = "under-estimates" if by[worse]["calibration_gap"] > 0 else "over-estimates"
    return (
        f"{col}: it {how} risk in group {worse} (predicted {pct(by[worse]['mean_predicted'])}, actually "
        f"{pct(by[worse]['at_risk_rate'])}; group {other}: {pct(by[other]['mean_predicted'])} and "
        f"{pct(by[other]['at_risk_rate'])})"
    )


def _worst(gaps: dict, metrics: list[str], cfg: ReportConfig) -> str:
    """The metric whose gap is furthest beyond its threshold."""
    return max(
        metrics, key=lambda m: gaps[m]["gap"] / (cfg.calibration_gap if m == "calibration" else cfg.fairness_gap)
    )


def _who(metric: str, g: dict, rows: list[dict]) -> str:
    """The group a gap is about: the one served worse."""
    if metric == "calibration":
        by = {r["group"]: r for r in rows}
        return max((g["high_group"], g["low_group"]), key=lambda name: abs(by[name]["calibration_gap"]))
    return g["high_group"] if metric == "fpr" else g["low_group"]


# How each value is printed on the page (gap_rows, _describe): the units its gap is judged in
PRINTED = {"roc_auc": ".2f", "tpr": ".0%", "fpr": ".0%", "share_flagged": ".0%", "calibration": "+.1%"}


def agree_with_print(r: dict, cfg: ReportConfig) -> dict:
    """Judge each gap on the rounded values the page prints: a gap that prints as no larger than its
    threshold (e.g. 45% vs 35% with 0.10 allowed) is neither to review nor to watch."""
    for metric, g in r["gaps"].items():
        fmt = PRINTED[metric]
        threshold = cfg.calibration_gap if metric == "calibration" else cfg.fairness_gap
        gap = printed(g["high"], fmt) - printed(g["low"], fmt)
        above = bool(g["above_threshold"]) and gap > printed(threshold, fmt)
        g["above_threshold"], g["flagged"] = above, bool(g["flagged"]) and above
    r["to_review"] = [k for k, g in r["gaps"].items() if g["flagged"]]
    r["to_watch"] = [k for k, g in r["gaps"].items() if g["above_threshold"] and not g["flagged"]]
    return r


def measure(frame: pd.DataFrame, contract: DatasetContract, cfg: ReportConfig) -> dict[str, dict]:
    """Per sensitive column in `frame`: groups, gaps and the gaps to review (risk_model.fairness)."""
    y = frame["at_risk"].to_numpy(dtype=int)
    risk = frame["risk"].to_numpy(dtype=float)
    flagged = frame["flagged"].to_numpy(dtype=bool).astype(int)
    return {
        col: agree_with_print(
            column_report(
                y,
                risk,
                flagged,
                band(contract, col, frame[col]),  # value labels ("1" -> "male") or bands ("17-20") as groups
                min_group_size=cfg.min_group_size,
                fairness_gap=cfg.fairness_gap,
                calibration_gap=cfg.calibration_gap,
                cap=cfg.max_rows,
            ),
            cfg,
        )
        for col in contract.sensitive_columns
        if col in frame.columns
    }


def judge(columns: dict, contract: DatasetContract, cfg: ReportConfig, basis: str) -> tuple[str, bool, list, list]:
    """(verdict, warning, gaps to review in words, columns to watch in words)."""
    review, watch, largest = [], [], []
    for col, r in columns.items():
        label = contract.label(col)
        if r["to_review"]:  # the worst gap of each column in words; the others are in its table
            m = _worst(r["gaps"], r["to_review"], cfg)
            g = r["gaps"][m]
            review.append(_calibration_words(label, g, r["groups"]) if m == "calibration" else _describe(label, m, g))
        elif r["to_watch"]:
            m = _worst(r["gaps"], r["to_watch"], cfg)
            watch.append(f"{label} (group {_who(m, r['gaps'][m], r['groups'])})")
        if "tpr" in r["gaps"]:
            largest.append((r["gaps"]["tpr"]["gap"], label, r["gaps"]["tpr"]))
    names = ", ".join(contract.label(c) for c in columns) or "no sensitive column"
    if not columns:
        return "No sensitive columns are listed in the settings file: nothing to compare.", False, review, watch
    if review:
        return f"Gaps to review ({basis}): " + "; ".join(review) + ".", True, review, watch
    if watch:
        verdict = (
            f"No clear gaps between groups of {names} ({basis}); worth watching next year, though the "
            f"groups are too small to be sure: {', '.join(watch)}."
        )
        return verdict, False, review, watch
    verdict = (
        f"No large gaps between groups of {names} ({basis}): the model finds students who struggle "
        "about equally well in each group, and its predicted risk is about as accurate for every group."
    )
    if largest:
        _, label, g = max(largest, key=lambda t: t[0])
        verdict += (
            f" Largest difference in the share of struggling students flagged: {label}, "
            f"{pct(g['high'])} in group {g['high_group']} vs {pct(g['low'])} in group {g['low_group']}."
        )
    return verdict, False, review, watch


def group_rows(r: dict) -> list[dict]:
    """One row per group of a column."""
    return [
        {
            "group": g["group"],
            "students": g["students"],
            "struggled": pct(g["at_risk_rate"], 1),
            "predicted risk (avg)": pct(g["mean_predicted"], 1),
            "ROC AUC": num(g["roc_auc"]),
            "flagged": pct(g["share_flagged"], 1),
            "TPR: struggled & flagged": pct(g["tpr"], 1),
            "FPR: did fine & flagged": pct(g["fpr"], 1),
        }
        for g in r["groups"]
    ]


MEASURES = {"roc_auc": "ROC AUC", "tpr": "TPR", "fpr": "FPR", "share_flagged": "share flagged"}


def gap_rows(r: dict) -> list[dict]:
    """One row per gap of a column: the two groups furthest apart and whether it is to review."""
    rows = []
    for metric, g in r["gaps"].items():
        if metric == "calibration":
            rows.append(
                {
                    "measure": "calibration (actual minus predicted)",
                    "largest gap": f"{g['high']:+.1%} ({g['high_group']}) vs {g['low']:+.1%} ({g['low_group']})",
                    "to review": _status(g),
                }
            )
        else:
            fmt = num if metric == "roc_auc" else pct
            rows.append(
                {
                    "measure": MEASURES[metric],
                    "largest gap": f"{fmt(g['high'])} ({g['high_group']}) vs {fmt(g['low'])} ({g['low_group']})",
                    "to review": _status(g) if metric != "share_flagged" else "not judged",
                }
            )
    return rows


def column_notes(r: dict, cfg: ReportConfig) -> list[str]:
    """Notes on merged, sampled and hidden groups of a column."""
    notes = []
    if r["merged"]:
        notes.append(
            f"Groups {', '.join(r['merged'])} have fewer than {cfg.min_group_size} students each and are "
            f"shown together as '{OTHER}'."
        )
    if r["sampled"]:
        notes.append(
            f"Groups of more than {cfg.max_rows} students are measured on a random {cfg.max_rows} of them "
            "(plenty for these rates); their sizes and at-risk counts use every student."
        )
    if r["hidden"]:
        notes.append(
            f"{r['hidden']} students in {r['hidden_groups']} group(s) too small to show even together "
            f"(under {cfg.min_group_size}) are left out of this table."
        )
    return notes


def render(numbers: dict, contract: DatasetContract, cfg: ReportConfig, advice: str) -> str:
    """The page: verdict, what the columns mean, then one section per sensitive column."""
    charts = Charts()
    sections = [
        {
            "label": contract.label(col),
            "groups": group_rows(r),
            "gaps": gap_rows(r),
            "notes": column_notes(r, cfg),
            "chart": charts.add(groups(r["groups"], contract.label(col)), 340),
        }
        for col, r in numbers["columns"].items()
    ]
    return page.render(
        "fairness.html.j2",
        scripts=charts.scripts,
        charts=charts,
        title=numbers["title"],
        verdict=numbers["verdict"],
        warning=numbers["warning"],
        advice=advice,
        n=numbers,
        cfg=cfg,
        sections=sections,
        follow_up=followup.sections(numbers.get("follow_up"), ("contact_by_group",)),
    )


def build_fairness_report(
    frame: pd.DataFrame,
    contract: DatasetContract,
    cfg: ReportConfig,
    out_dir: Path,
    *,
    cohort: str,
    model_version: str,
    point: str = "default",
    source: str,
    basis: str,
    flag_rule: str,
    outcomes_known: bool | None = None,
    follow_up: dict | None = None,
) -> dict:
    """Write fairness.html and .json into `out_dir`; return the JSON numbers.

    `frame`: one row per student with `at_risk` (0/1), `risk`, `flagged` (bool) and the
    contract's sensitive columns. `source` says in words which students these are, `basis`
    the same in a few words for the verdict; `flag_rule` how a student came to be flagged.
    `outcomes_known`: whether the cohort's real outcomes were recorded (default: whether
    `source` names them).
    """
    columns = measure(frame, contract, cfg)
    verdict, warning, review, watch = judge(columns, contract, cfg, basis)
    advice = (
        "Check with the advising team whether the list should be used differently for these groups, and "
        "retrain if the settings can fix it."
        if review
        else ""
    )
    out_dir = Path(out_dir)
    numbers = {
        "report": NAME,
        "title": f"Fairness of the risk scores for cohort {cohort}: does the model serve every group alike?",
        "cohort": cohort,
        "point": point,
        "model_version": model_version,
        "verdict": verdict,
        "warning": warning,
        "source": source,
        "flag_rule": flag_rule,
        "n_students": int(len(frame)),
        "at_risk_rate": float(np.mean(frame["at_risk"])) if len(frame) else None,
        "columns": columns,
        "to_review": review,
        "to_watch": watch,
        "thresholds": {
            "fairness_gap": cfg.fairness_gap,
            "calibration_gap": cfg.calibration_gap,
            "min_group_size": cfg.min_group_size,
        },
        "outcomes_known": made_with_outcomes({"report": NAME, "source": source})
        if outcomes_known is None
        else outcomes_known,
        "follow_up": {k: v for k, v in (follow_up or {}).items() if k == "contact_by_group"},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(out_dir / f"{NAME}.html"),
    }
    write_report(out_dir, NAME, render(numbers, contract, cfg, advice), numbers)
    return numbers
