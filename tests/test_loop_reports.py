"""The advisor's loop in the reports: alert counts in the index, what happened after the alerts in the
outcomes report, contact rates per group in the fairness report; never a note, never a student id."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pandas as pd

from api import keys
from reports import build
from risk_model import advising, jobs, store
from risk_model.alerts import ALERT_COLUMNS
from risk_model.config import Settings
from risk_model.schema import validate

NOTE = "talked about <b>xylophone-rent</b> and a night job"


def test_reports_show_the_loop_and_never_the_note(tmp_path, trained_home, demo_config, small_demo):
    settings = Settings(home=tmp_path / "runtime")
    shutil.copytree(trained_home["settings"].home, settings.home)
    c = demo_config.dataset
    jobs.record_outcomes(settings, demo_config, validate(small_demo.outcomes, c, stage="outcomes", source="outcomes"))
    engine = store.connect(settings.resolved_store_url)
    scores = store.read_scores(engine, str(trained_home["intake"][c.cohort_column].iloc[0]))
    cohort = str(scores.cohort.iloc[0])
    high = scores[scores.tier == "high"].head(60)
    planted = pd.DataFrame(
        {
            "cohort": cohort,
            "point": "default",
            "student_id": high.student_id.to_numpy(),
            "previous_point": "day0",
            "previous_probability": 0.2,
            "probability": high.probability.to_numpy(),
            "previous_tier": "medium",
            "tier": "high",
            "rise": high.probability.to_numpy() - 0.2,
            "kinds": "high,rise",
            "reason": "risk rose",
        }
    )[ALERT_COLUMNS]
    advising.write_alerts(engine, cohort, "default", planted)
    key_id = keys.create_key(engine, name="advising", scope="write")[0].id
    contacted = list(high.student_id[:40])
    for sid in contacted:
        advising.add_intervention(
            engine, sid, kind="call", on_date=date.today(), staff_id="staff-1", key_id=key_id, note=NOTE, cohort=cohort
        )
    engine.dispose()

    outcomes = build.outcomes_report(settings, demo_config, cohort)
    fairness = build.fairness_report(settings, demo_config, trained_home["intake"])
    index = build.rebuild_index(settings)

    contact = outcomes["follow_up"]["contact"]["table"][0]
    assert contact["flagged_high"] == 60 and contact["contacted"] == 40 and contact["median_days_to_contact"] == 0
    assert "association, not the effect" in outcomes["follow_up"]["outcomes_by_contact"]["sentences"][-1]
    by_group = fairness["follow_up"]["contact_by_group"]["table"]
    assert {r["column"] for r in by_group} == set(c.sensitive_columns)
    assert index["alerts"][0]["n_alerts"] == 60 and index["alerts"][0]["by_rule"]["high"] == 60
    pages = {
        "index": (settings.reports_dir / "index.html").read_text(),
        "outcomes": Path(outcomes["html"]).read_text(),
        "fairness": Path(fairness["html"]).read_text(),
    }
    assert "After the alerts: were flagged students contacted?" in pages["outcomes"]
    assert "Of the 60 students flagged high, 40 (67%) were contacted after the alert." in pages["outcomes"]
    assert "Contact after an alert, per group of flagged students" in pages["fairness"]
    assert (
        "Alerts between prediction points" in pages["index"]
        and '<td data-testid="alert-count">60</td>' in pages["index"]
    )
    for text in pages.values():
        assert "xylophone" not in text and "night job" not in text
        assert contacted[0] not in text
