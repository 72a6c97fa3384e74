"""Alerts between prediction points: which students an advisor should look at again, and why.

When a cohort is scored at a new point, each student is compared with their previous point (the
nearest earlier point with a stored score for that student). An alert is raised for:

- `high`: the student moved into the high tier (`[alerts] to_high`);
- `rise`: the probability rose by at least `[alerts] rise` (e.g. 0.31 -> 0.62);
- `inactive`: the days since the last activity (`[alerts] recency_feature`, when the intake has it)
  reached `inactive_days`, and had not reached it at the previous point. Points are named `day<N>`,
  so the recency at the previous point is the recency now minus the days between the two points.

Each alert has a reason in plain words built from the new score's stored factor texts:
"risk rose from 0.31 to 0.62 since day 30: no activity in 15 days; assessment 2 not submitted ...".
Pure: DataFrames in, a DataFrame out; no store, no HTTP.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from risk_model.config import AlertConfig

ALERT_COLUMNS = [
    "cohort",
    "point",
    "student_id",
    "previous_point",
    "previous_probability",
    "probability",
    "previous_tier",
    "tier",
    "rise",
    "kinds",
    "reason",
]
MAX_REASON = 1000


def point_day(point: str) -> int | None:
    """The day of a prediction point named `day<N>` (None for `default` or other names)."""
    m = re.fullmatch(r"day(\d+)", point)
    return int(m.group(1)) if m else None


def point_words(point: str) -> str:
    """A point as advisors read it: day30 -> 'day 30'."""
    day = point_day(point)
    return f"day {day}" if day is not None else point


def earlier_points(points: list[str], point: str) -> list[str]:
    """The stored points before `point`, by day (names that carry no day come before every day)."""
    here = point_day(point)
    if here is None:
        return []
    days = {p: point_day(p) for p in points if p != point}
    return [p for p, d in days.items() if d is None or d < here]


def previous_scores(earlier: pd.DataFrame) -> pd.DataFrame:
    """Per student, the score of the nearest earlier point (student_id, point, probability, tier)."""
    cols = ["student_id", "point", "probability", "tier"]
    if earlier.empty:
        return pd.DataFrame(columns=cols)
    day_of = {p: -1 if point_day(p) is None else point_day(p) for p in earlier["point"].unique()}
    days = earlier["point"].map(day_of)
    ordered = earlier.assign(_day=days).sort_values(["_day"], kind="stable")
    return ordered.drop_duplicates("student_id", keep="last")[cols].reset_index(drop=True)


def compute_alerts(
    new: pd.DataFrame,
    previous: pd.DataFrame,
    rules: AlertConfig,
    *,
    recency: pd.Series | None = None,
) -> pd.DataFrame:
    """The alerts of a newly scored point: one row per student that crossed a rule, largest rise first.

    `new`: the new point's scores (cohort, point, student_id, probability, tier, factors);
    `previous`: each student's previous score (`previous_scores`); `recency`: days since the last
    activity at the new point, indexed by student id (None when the model has no such feature).
    Students without an earlier score get no alert: there is nothing to compare with.
    """
    if new.empty or previous.empty:
        return pd.DataFrame(columns=ALERT_COLUMNS)
    point = str(new["point"].iloc[0])
    prev = previous.rename(
        columns={"point": "previous_point", "probability": "previous_probability", "tier": "previous_tier"}
    )
    m = new[["cohort", "point", "student_id", "probability", "tier", "factors"]].merge(
        prev[["student_id", "previous_point", "previous_probability", "previous_tier"]], on="student_id", how="inner"
    )
    rise = (m["probability"].to_numpy(float) - m["previous_probability"].to_numpy(float)).round(6)
    to_high = (m["tier"].to_numpy() == "high") & (m["previous_tier"].to_numpy() != "high") & rules.to_high
    rose = rise >= rules.rise - 1e-9
    inactive = np.zeros(len(m), dtype=bool)
    days_inactive = np.full(len(m), np.nan)
    here = point_day(point)
    if recency is not None and here is not None:
        recency = recency[~recency.index.duplicated(keep="last")]
        days_inactive = m["student_id"].map(recency).to_numpy(dtype=float)
        days = {p: point_day(p) for p in m["previous_point"].unique()}
        gaps = {p: np.nan if d is None else here - d for p, d in days.items()}
        gap = m["previous_point"].map(gaps)
        before = days_inactive - gap.to_numpy(dtype=float)  # NaN when the gap is unknown: never "newly"
        with np.errstate(invalid="ignore"):
            inactive = (days_inactive >= rules.inactive_days) & (before < rules.inactive_days)
    hit = to_high | rose | inactive
    out = m.loc[hit].copy()
    out["rise"] = rise[hit]
    code = to_high[hit].astype(int) * 4 + rose[hit].astype(int) * 2 + inactive[hit].astype(int)
    names = np.array(
        [
            ",".join(k for k, on in zip(("high", "rise", "inactive"), (c & 4, c & 2, c & 1), strict=True) if on)
            for c in range(8)
        ],
        dtype=object,
    )
    out["kinds"] = names[code]
    columns = (
        out[c].to_numpy(dtype=object) for c in ("previous_probability", "probability", "previous_point", "factors")
    )
    quiet = np.where(inactive, days_inactive, np.nan)[hit]
    out["reason"] = [
        reason(a, b, p, factors=f, to_high=h, days_inactive=d, rules=rules)
        for a, b, p, f, h, d in zip(*columns, to_high[hit], quiet, strict=True)
    ]
    out = out.sort_values(["rise", "student_id"], ascending=[False, True], kind="stable")
    return out[ALERT_COLUMNS].reset_index(drop=True)


def reason(
    before: float,
    after: float,
    previous_point: str,
    *,
    factors: list[dict] | None,
    to_high: bool,
    days_inactive: float,
    rules: AlertConfig,
) -> str:
    """One alert's reason: how risk moved since which point, then why, in the words of the stored factors."""
    verb = "rose" if after > before else "went"
    head = f"risk {verb} from {before:.2f} to {after:.2f} since {point_words(previous_point)}"
    if to_high:
        head += ", now in the high tier"
    parts = []
    if np.isfinite(days_inactive):
        parts.append(f"no activity in {days_inactive:.0f} days")
    raising = [
        f
        for f in factors or []
        if f.get("direction") == "raises"
        and not (np.isfinite(days_inactive) and f.get("feature") == rules.recency_feature)
    ]
    for f in raising[: rules.max_factors]:
        parts.append(f.get("text") or f"{str(f.get('feature', '')).replace('_', ' ')} raises risk")
    text = head + (": " + "; ".join(parts) if parts else "")
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 1] + "…"


def summary(alerts: pd.DataFrame) -> dict:
    """Counts of alerts by rule, for a step's summary and the reports index."""
    kinds = alerts["kinds"].str.split(",").explode() if len(alerts) else pd.Series(dtype=str)
    counts = kinds.value_counts()
    return {"n_alerts": int(len(alerts)), "by_rule": {k: int(counts.get(k, 0)) for k in ("high", "rise", "inactive")}}
