"""What happened after the alerts, as report sections: the follow-up findings (`risk_model.followup`)
with their columns in words. Counts and shares only: no student id and never an intervention note."""

from __future__ import annotations

from reports.page import pct

TITLES = {
    "contact": "After the alerts: were flagged students contacted?",
    "outcomes_by_contact": "Outcomes of contacted and not-contacted flagged students (an association)",
    "contact_by_group": "Contact after an alert, per group of flagged students",
}
WORDS = {
    "flagged_high": "flagged high",
    "contacted": "contacted",
    "contacted_share": "share contacted",
    "median_days_to_contact": "median days to contact",
    "contacted_within_7_days": "contacted within 7 days",
    "risk_band": "risk band",
    "n_contacted": "contacted",
    "at_risk_rate_contacted": "struggled (contacted)",
    "n_not_contacted": "not contacted",
    "at_risk_rate_not_contacted": "struggled (not contacted)",
    "difference": "difference",
    "column": "column",
    "group": "group",
    "n_flagged": "flagged",
    "gap_to_all": "gap to all flagged",
}
SHARES = {
    "contacted_share",
    "at_risk_rate_contacted",
    "at_risk_rate_not_contacted",
    "difference",
    "gap_to_all",
}


def sections(follow_up: dict | None, which: tuple[str, ...]) -> list[dict]:
    """The findings named in `which` that were measured: title, rows with worded columns, sentences."""
    out = []
    for name in which:
        found = (follow_up or {}).get(name)
        if not found:
            continue
        rows = [
            {WORDS.get(k, k): (pct(v, 1) if k in SHARES and v is not None else v) for k, v in r.items()}
            for r in found["table"]
        ]
        out.append({"title": TITLES[name], "rows": rows, "sentences": found["sentences"]})
    return out
