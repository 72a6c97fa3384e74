"""What happened after the alerts: who was contacted, how soon, and how they did.

Pure functions (DataFrames in, a table and plain sentences out) for the outcomes and fairness
reports. Comparisons of contacted and not-contacted students are associations only: who gets
contacted is not random (advisors pick whom to call, some students answer and some do not), so
the two groups differ in ways the risk score does not capture, and a difference in outcomes is
not the effect of the outreach. Every sentence about outcomes says so. Notes never come here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BANDS = (0.0, 0.3, 0.5, 0.7, 1.0)
NOT_CAUSAL = (
    "This is an association, not the effect of the outreach: who gets contacted is not random "
    "(advisors choose whom to reach, and students who answer differ from those who do not), "
    "so contacted and not-contacted students differ in ways the risk score does not show."
)


@dataclass
class Finding:
    """A table and the sentences a report shows with it."""

    table: pd.DataFrame
    sentences: list[str] = field(default_factory=list)


def flagged_high(alerts: pd.DataFrame) -> pd.DataFrame:
    """Students an alert put in the high tier: student_id, probability and date of their first such alert."""
    high = alerts[alerts["tier"] == "high"].copy()
    high["alerted_on"] = pd.to_datetime(high["created_at"], utc=True).dt.date
    high = high.sort_values(["alerted_on", "student_id"]).drop_duplicates("student_id", keep="first")
    return high[["student_id", "probability", "alerted_on"]].reset_index(drop=True)


def contacts(flagged: pd.DataFrame, interventions: pd.DataFrame) -> pd.DataFrame:
    """Per flagged student: contacted (any intervention on or after the alert day) and days to the first one."""
    first = flagged[["student_id", "alerted_on"]].merge(
        interventions[["student_id", "on_date"]], on="student_id", how="left"
    )
    on = pd.to_datetime(first["on_date"])
    alerted = pd.to_datetime(first["alerted_on"])
    first["days"] = (on - alerted).dt.days
    after = first[first["days"] >= 0]
    days = after.groupby("student_id")["days"].min()
    out = flagged.copy()
    out["days_to_contact"] = out["student_id"].map(days)
    out["contacted"] = out["days_to_contact"].notna()
    return out


def contact_summary(flagged: pd.DataFrame, interventions: pd.DataFrame) -> Finding:
    """Of the students flagged high: how many were contacted, and how long after the alert."""
    c = contacts(flagged, interventions)
    n, k = len(c), int(c["contacted"].sum())
    days = c.loc[c["contacted"], "days_to_contact"]
    within7 = int((days <= 7).sum())
    table = pd.DataFrame(
        [
            {
                "flagged_high": n,
                "contacted": k,
                "contacted_share": k / n if n else np.nan,
                "median_days_to_contact": float(days.median()) if k else np.nan,
                "contacted_within_7_days": within7,
            }
        ]
    )
    if n == 0:
        return Finding(table, ["No student was flagged high by an alert, so there is no follow-up to count."])
    sentences = [f"Of the {n} students flagged high, {k} ({k / n:.0%}) were contacted after the alert."]
    if k:
        sentences.append(
            f"Half of those were contacted within {days.median():.0f} days of the alert; "
            f"{within7} within a week. {n - k} flagged students have no recorded contact."
        )
    return Finding(table, sentences)


def outcomes_by_contact(
    flagged: pd.DataFrame, interventions: pd.DataFrame, outcomes: pd.DataFrame, *, bands: tuple = BANDS
) -> Finding:
    """Outcomes of contacted vs. not-contacted flagged students within the same risk band (an association)."""
    c = contacts(flagged, interventions).merge(outcomes[["student_id", "at_risk"]], on="student_id", how="inner")
    c["band"] = pd.cut(c["probability"], list(bands), include_lowest=True)
    rows, sentences = [], []
    for band, g in c.groupby("band", observed=True):
        yes, no = g[g["contacted"]], g[~g["contacted"]]
        row: dict = {
            "risk_band": f"{band.left:.2f}-{band.right:.2f}",
            "n_contacted": len(yes),
            "at_risk_rate_contacted": float(yes["at_risk"].mean()) if len(yes) else np.nan,
            "n_not_contacted": len(no),
            "at_risk_rate_not_contacted": float(no["at_risk"].mean()) if len(no) else np.nan,
        }
        row["difference"] = row["at_risk_rate_contacted"] - row["at_risk_rate_not_contacted"]
        rows.append(row)
        if len(yes) and len(no):
            sentences.append(
                f"Flagged students with risk {row['risk_band']}: {row['at_risk_rate_contacted']:.0%} of the "
                f"{len(yes)} contacted and {row['at_risk_rate_not_contacted']:.0%} of the {len(no)} not contacted "
                "ended at risk."
            )
    table = pd.DataFrame(
        rows,
        columns=[
            "risk_band",
            "n_contacted",
            "at_risk_rate_contacted",
            "n_not_contacted",
            "at_risk_rate_not_contacted",
            "difference",
        ],
    )
    if not sentences:
        sentences.append("No risk band has both contacted and not-contacted flagged students with outcomes to compare.")
    sentences.append(NOT_CAUSAL)
    return Finding(table, sentences)


def contact_rates_by_group(
    flagged: pd.DataFrame,
    interventions: pd.DataFrame,
    groups: pd.DataFrame,
    columns: list[str],
    *,
    min_group_size: int = 30,
) -> Finding:
    """Among flagged students, the share contacted per group of each sensitive column (groups smaller than
    `min_group_size` are pooled as 'smaller groups' so no one is singled out)."""
    c = contacts(flagged, interventions).merge(groups[["student_id", *columns]], on="student_id", how="inner")
    overall = float(c["contacted"].mean()) if len(c) else np.nan
    rows, sentences = [], []
    for col in columns:
        values = c[col].astype("string").fillna("(missing)")
        sizes = values.value_counts()
        values = values.where(values.map(sizes) >= min_group_size, "smaller groups")
        for group, g in c.groupby(values):
            rows.append(
                {
                    "column": col,
                    "group": str(group),
                    "n_flagged": len(g),
                    "contacted_share": float(g["contacted"].mean()),
                    "gap_to_all": float(g["contacted"].mean()) - overall,
                }
            )
    table = pd.DataFrame(rows, columns=["column", "group", "n_flagged", "contacted_share", "gap_to_all"])
    for col, t in table.groupby("column", sort=False):
        lo, hi = t.loc[t["contacted_share"].idxmin()], t.loc[t["contacted_share"].idxmax()]
        sentences.append(
            f"By {col}: {hi['contacted_share']:.0%} of flagged students in {hi['group']} were contacted, "
            f"{lo['contacted_share']:.0%} in {lo['group']} (all flagged students: {overall:.0%})."
        )
    if not rows:
        sentences.append("No flagged student to compare contact rates for.")
    return Finding(table, sentences)


def as_dict(finding: Finding) -> dict:
    """A finding as JSON-ready values (a report's .json beside its page)."""
    table = finding.table.astype(object).where(finding.table.notna(), None)
    return {"table": table.to_dict("records"), "sentences": list(finding.sentences)}


def follow_up(
    alerts: pd.DataFrame,
    interventions: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    groups: pd.DataFrame | None = None,
    columns: list[str] | None = None,
    *,
    min_group_size: int = 30,
) -> dict[str, Finding]:
    """Every follow-up finding the inputs allow: contact after alerts; with outcomes, outcomes by contact;
    with groups, contact rates per group (for the fairness report)."""
    flagged = flagged_high(alerts) if len(alerts) else pd.DataFrame(columns=["student_id", "probability", "alerted_on"])
    out = {"contact": contact_summary(flagged, interventions)}
    if outcomes is not None and len(outcomes):
        out["outcomes_by_contact"] = outcomes_by_contact(flagged, interventions, outcomes)
    if groups is not None and columns:
        out["contact_by_group"] = contact_rates_by_group(
            flagged, interventions, groups, columns, min_group_size=min_group_size
        )
    return out
