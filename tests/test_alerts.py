"""Alerts between prediction points: planted jumps give exactly those alerts, in plain words, stored once
per (cohort, point) with their webhook batches, on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from flows import steps
from risk_model import advising, alerts, jobs, outbox, store
from risk_model.config import AlertConfig, Settings
from risk_model.demo import make_demo

COHORT = "2025"
RULES = AlertConfig(rise=0.15, inactive_days=14)
RISE = ["R0", "R1", "R2", "R3", "R4"]  # +0.30: a rise (all but R2 also cross into high)
TO_HIGH = ["H0", "H1", "H2"]  # 0.45 -> 0.52: into the high tier, a small rise
GONE_QUIET = ["Q0", "Q1", "Q2", "Q3"]  # no activity for 20 days at day 60, active after day 30
LONG_QUIET = ["L0", "L1"]  # no activity for 50 days: already quiet at day 30, not new
TEXTS = [
    {
        "feature": "activity_days_since_last",
        "direction": "raises",
        "text": "days since the last activity: 20 (typical: 2)",
    },
    {"feature": "assessment_2_submitted", "direction": "raises", "text": "assessment 2 not submitted"},
    {"feature": "prior_gpa", "direction": "lowers", "text": "prior grades: 3.4 (typical: 3.0)"},
]


def two_points(n: int = 300, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Demo students scored at day30 and day60 (threshold tiers: high from 0.5) with planted changes."""
    rng = np.random.default_rng(seed)
    ids = make_demo(n_per_cohort=n, n_past=1, seed=seed).intake["student_id"].astype(str).tolist()[:n]
    planted = RISE + TO_HIGH + GONE_QUIET + LONG_QUIET
    ids = planted + ids[: n - len(planted)]
    p0 = rng.uniform(0.05, 0.44, n)
    p0[: len(RISE)] = [0.31, 0.25, 0.10, 0.28, 0.40]
    p0[len(RISE) : len(RISE) + len(TO_HIGH)] = 0.45
    p1 = np.clip(p0 + rng.uniform(-0.04, 0.04, n), 0.01, 0.49)
    p1[: len(RISE)] = p0[: len(RISE)] + 0.30
    p1[len(RISE) : len(RISE) + len(TO_HIGH)] = 0.52
    recency = pd.Series(5.0, index=ids)
    recency[GONE_QUIET] = 20.0
    recency[LONG_QUIET] = 50.0

    def frame(p: np.ndarray, point: str) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "cohort": COHORT,
                "point": point,
                "student_id": ids,
                "probability": p.round(6),
                "tier": np.where(p >= 0.5, "high", np.where(p >= 0.3, "medium", "low")),
                "rank": pd.Series(-p).rank(method="first").astype(int).to_numpy(),
                "factors": [TEXTS] * n,
                "model_version": "v1",
                "scored_at": pd.Timestamp("2026-10-01", tz="UTC"),
            }
        )

    return frame(p0, "day30"), frame(p1, "day60"), recency


def test_planted_jumps_give_exactly_those_alerts():
    day30, day60, recency = two_points()
    found = alerts.compute_alerts(day60, alerts.previous_scores(day30), RULES, recency=recency)
    kinds = dict(zip(found.student_id, found.kinds, strict=True))
    assert set(kinds) == set(RISE + TO_HIGH + GONE_QUIET)
    assert kinds["R2"] == "rise" and {kinds[s] for s in ("R0", "R1", "R3", "R4")} == {"high,rise"}  # 0.40 stays medium
    assert all(kinds[s] == "high" for s in TO_HIGH)
    assert all(kinds[s] == "inactive" for s in GONE_QUIET)
    assert list(found.rise) == sorted(found.rise, reverse=True)  # largest first
    r0 = found.set_index("student_id").loc["R0", "reason"]
    assert r0 == (
        "risk rose from 0.31 to 0.61 since day 30, now in the high tier: "
        "days since the last activity: 20 (typical: 2); assessment 2 not submitted"
    )
    q0 = found.set_index("student_id").loc["Q0", "reason"]
    assert "no activity in 20 days; assessment 2 not submitted" in q0 and "typical: 2" not in q0  # said once
    assert (
        found.set_index("student_id")
        .loc["H0", "reason"]
        .startswith("risk rose from 0.45 to 0.52 since day 30, now in the high tier: ")
    )


def test_without_recency_or_earlier_points_there_is_nothing_to_compare():
    day30, day60, _ = two_points()
    found = alerts.compute_alerts(day60, alerts.previous_scores(day30), RULES, recency=None)
    assert set(found.student_id) == set(RISE + TO_HIGH)
    assert alerts.compute_alerts(day30, alerts.previous_scores(day30.iloc[:0]), RULES).empty
    assert alerts.earlier_points(["day0", "day30", "day60", "default"], "day30") == ["day0", "default"]
    assert alerts.earlier_points(["default"], "default") == []


def test_previous_point_is_the_nearest_earlier_one_with_a_score():
    day30, day60, _ = two_points()
    day0 = day30.assign(point="day0", probability=0.9, tier="high")
    only_day0 = day0[day0.student_id == "R0"]
    prev = alerts.previous_scores(pd.concat([day0, day30[day30.student_id != "R1"]]))
    assert prev.set_index("student_id").loc["R0", "point"] == "day30"
    assert prev.set_index("student_id").loc["R1", "point"] == "day0"  # no day30 score: day 0 it is
    assert len(alerts.previous_scores(only_day0)) == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    return request.getfixturevalue("pg_url")


def test_score_step_stores_alerts_once_per_point_with_their_webhook_batches(url, tmp_path, demo_config):
    day30, day60, recency = two_points()
    settings = Settings(home=tmp_path / "runtime", store_url=url)
    config = demo_config.model_copy(update={"alerts": AlertConfig(batch_size=4)})
    store.upgrade(url)  # the deploy step (`student-risk db upgrade`): connect only checks
    engine = store.connect(url)
    outbox.add_subscriber(engine, name="case-management", url="http://127.0.0.1:9/hooks")
    intake = pd.DataFrame({"student_id": recency.index, "cohort": COHORT, "activity_days_since_last": recency.values})
    intake = pd.concat([intake, intake.assign(cohort="2024", activity_days_since_last=99.0)])  # same ids, unscored
    store.write_scores(engine, day30, {})
    first = jobs.alert_and_store(settings, config, intake, point="day30")
    assert first["cohorts"][COHORT]["n_alerts"] == 0 and first["cohorts"][COHORT]["webhook_rows_queued"] == 0
    store.write_scores(engine, day60, {})
    for _ in range(2):  # re-scoring the same point replaces its alerts and its undelivered batches
        out = jobs.alert_and_store(settings, config, intake, point="day60")
    assert out["cohorts"][COHORT]["n_alerts"] == 12 and out["cohorts"][COHORT]["by_rule"]["inactive"] == 4
    assert out["cohorts"]["2024"]["n_alerts"] == 0  # each cohort's recency is its own
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.alerts)).scalar() == 12
        assert conn.execute(select(func.sum(store.webhook_outbox.c.n_alerts))).scalar() == 12
        assert conn.execute(select(func.count()).select_from(store.webhook_outbox)).scalar() == 3  # 12 / 4 per batch
    page = advising.alert_page(engine, COHORT, limit=100)
    assert [r["student_id"] for r in page][:5] == sorted(RISE, key=lambda s: (-0.30, s))
    assert advising.alert_counts(engine)[0]["n_alerts"] == 12
    engine.dispose()


def test_score_step_runs_alerts_then_one_delivery(demo_config, settings):
    called = []

    def record(step, fn, *args, **kwargs):
        called.append(step)
        return {}

    steps.score(demo_config, settings, "intake.csv", run=record)
    assert called == ["validate", "score-and-store", "alerts", "webhooks"]
