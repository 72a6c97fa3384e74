"""Fairness: does the model serve every group of students alike?

For each sensitive column of the contract, per group: size, share who struggled, ROC AUC,
share flagged high risk, TPR and FPR at that flag, and calibration (mean predicted risk vs.
observed), from fairlearn's MetricFrame (risk_model.fairness). The largest gaps are named;
small groups are merged or hidden so no row describes a handful of students. Built on the
new cohort's real outcomes when they exist, else on the training cohorts' out-of-fold risk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from reports.charts import Charts, groups
from reports.html import banner, document, evidence, num, pct, table, write_atomic, write_json
from risk_model.config import DatasetContract, ReportConfig
from risk_model.fairness import OTHER, column_report


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
) -> dict:
    """Write fairness.html and .json into `out_dir`; return the JSON numbers.

    `frame`: one row per student with `at_risk` (0/1), `risk`, `flagged` (bool) and the
    contract's sensitive columns. `source` says in words which students these are, `basis`
    the same in a few words for the verdict;
    `flag_rule` how a student came to be flagged.
    """
    y = frame["at_risk"].to_numpy(dtype=int)
    risk = frame["risk"].to_numpy(dtype=float)
    flagged = frame["flagged"].to_numpy(dtype=bool).astype(int)
    columns = {}
    for col in contract.sensitive_columns:
        if col not in frame.columns:
            continue
        columns[col] = column_report(
            y,
            risk,
            flagged,
            frame[col],
            min_group_size=cfg.min_group_size,
            fairness_gap=cfg.fairness_gap,
            calibration_gap=cfg.calibration_gap,
            cap=cfg.max_rows,
        )
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
        verdict, warning = "No sensitive columns are listed in the settings file: nothing to compare.", False
    elif review:
        verdict = f"Gaps to review ({basis}): " + "; ".join(review) + "."
        warning = True
    elif watch:
        verdict = (
            f"No clear gaps between groups of {names} ({basis}); worth watching next year, though the "
            f"groups are too small to be sure: {', '.join(watch)}."
        )
        warning = False
    else:
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
        warning = False
    advice = (
        "Check with the advising team whether the list should be used differently for these groups, and "
        "retrain if the settings can fix it."
        if review
        else ""
    )

    charts = Charts()
    sections = []
    for col, r in columns.items():
        label = contract.label(col)
        rows = [
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
        gap_rows = []
        for metric, g in r["gaps"].items():
            if metric == "calibration":
                gap_rows.append(
                    {
                        "measure": "calibration (actual minus predicted)",
                        "largest gap": f"{g['high']:+.1%} ({g['high_group']}) vs {g['low']:+.1%} ({g['low_group']})",
                        "to review": _status(g),
                    }
                )
            else:
                fmt = num if metric == "roc_auc" else pct
                gap_rows.append(
                    {
                        "measure": {"roc_auc": "ROC AUC", "tpr": "TPR", "fpr": "FPR", "share_flagged": "share flagged"}[
                            metric
                        ],
                        "largest gap": f"{fmt(g['high'])} ({g['high_group']}) vs {fmt(g['low'])} ({g['low_group']})",
                        "to review": _status(g) if metric != "share_flagged" else "not judged",
                    }
                )
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
        sections.append(
            f"<h2>{label}</h2>"
            + table(rows)
            + table(gap_rows)
            + "".join(f"<p class='note'>{n}</p>" for n in notes)
            + charts.html(groups(r["groups"], label), 340)
        )
    body = (
        f"<p>Model {model_version}{'' if point == 'default' else f' (prediction point {point})'}. Built on {source}: {len(frame)} students. "
        f"Flagged means {flag_rule}.</p>"
        "<p>What the columns mean: <em>struggled</em> is the share with an at-risk outcome; <em>predicted risk</em> the "
        "model's average for the group (close to <em>struggled</em> when the model is calibrated for that group); "
        "<em>TPR</em> the share of students who struggled that the model flagged (higher is better); <em>FPR</em> the "
        "share of students who did fine that it flagged anyway. A group gets more students flagged when more of it "
        "struggles, so differences in <em>flagged</em> alone are not judged.</p>"
        f"<p class='note'>A gap is flagged for review when a between-group difference in ROC AUC, TPR or FPR exceeds "
        f"{cfg.fairness_gap:.2f}, or when the model's error (actual minus predicted risk) differs between two groups "
        f"by more than {cfg.calibration_gap:.0%} (an error shared by all groups is the outcomes report's business), "
        "and in both cases the difference is larger than chance (three times its standard "
        f"error); a difference above the threshold that could still be chance is marked to watch. Groups under {cfg.min_group_size} students are never shown on their own.</p>"
        + "".join(sections)
    )
    title = f"Fairness of the risk scores for cohort {cohort}: does the model serve every group alike?"
    out_dir = Path(out_dir)
    html_path = out_dir / "fairness.html"
    write_atomic(
        html_path,
        document(
            title,
            banner(title, verdict, warning=warning, body_html=f"<p>{advice}</p>" if advice else "") + evidence(body),
        ),
    )
    numbers = {
        "report": "fairness",
        "title": title,
        "cohort": cohort,
        "point": point,
        "model_version": model_version,
        "verdict": verdict,
        "warning": warning,
        "source": source,
        "flag_rule": flag_rule,
        "n_students": int(len(frame)),
        "at_risk_rate": float(np.mean(y)) if len(y) else None,
        "columns": columns,
        "to_review": review,
        "to_watch": watch,
        "thresholds": {
            "fairness_gap": cfg.fairness_gap,
            "calibration_gap": cfg.calibration_gap,
            "min_group_size": cfg.min_group_size,
        },
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": str(html_path),
    }
    write_json(out_dir / "fairness.json", numbers)
    return numbers
