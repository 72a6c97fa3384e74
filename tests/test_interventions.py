"""Interventions, a student's history and a cohort's alerts over the API (SQLite and PostgreSQL): scopes,
audit rows, keyset pages; notes never in a log. And what happened after, on planted follow-up data."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api import keys
from api.app import create_app
from api.settings import ApiSettings
from risk_model import advising, alerts, followup, store
from risk_model.config import AlertConfig
from tests.test_alerts import COHORT, two_points

NOTE = "spoke about childcare; call back Friday"


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'scores.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store.upgrade(url)  # the deploy step (`student-risk db upgrade`): connect only checks
    engine = store.connect(url)
    day30, day60, recency = two_points()
    store.write_scores(engine, day30, {})
    store.write_scores(engine, day60, {})
    found = alerts.compute_alerts(day60, alerts.previous_scores(day30), AlertConfig(), recency=recency)
    advising.write_alerts(engine, COHORT, "day60", found)
    made = {scope: keys.create_key(engine, name=f"t-{scope}", scope=scope)[1] for scope in keys.SCOPES}
    settings = ApiSettings(home=tmp_path / "runtime", store_url=url, api_key_cache_seconds=0)
    with TestClient(create_app(settings)) as client:
        yield client, engine, made, found
    engine.dispose()


def audit_actions(engine, student_id: str) -> list[str]:
    with engine.connect() as conn:
        q = select(store.audit_log.c.action).where(store.audit_log.c.student_id == student_id)
        return list(conn.execute(q.order_by(store.audit_log.c.id)).scalars())


def flush(client) -> None:
    client.app.state.api.audit.flush()


def test_interventions_need_write_or_admin_and_are_audited(api, caplog):
    client, engine, made, _ = api
    body = {"kind": "call", "date": str(date.today()), "staff_id": "staff-17", "note": NOTE}
    url = "/v1/students/R0/interventions"
    assert client.post(url, json=body).status_code == 401
    for scope in ("read", "score"):
        r = client.post(url, json=body, headers={"X-API-Key": made[scope]})
        assert r.status_code == 403 and "needs 'write'" in r.json()["detail"]
    with caplog.at_level(logging.DEBUG):
        for scope in ("write", "admin"):
            r = client.post(url, json=body, headers={"X-API-Key": made[scope]})
            assert r.status_code == 201, r.text
            assert r.json()["cohort"] == COHORT and r.json()["kind"] == "call" and r.json()["note"] is None
    assert NOTE not in caplog.text
    flush(client)
    assert audit_actions(engine, "R0") == ["intervention", "intervention"]
    w = {"X-API-Key": made["write"]}
    assert client.post("/v1/students/nobody/interventions", json=body, headers=w).status_code == 404
    future = {**body, "date": str(date.today() + timedelta(days=5))}
    assert client.post(url, json=future, headers=w).status_code == 422
    assert client.post(url, json={**body, "kind": "carrier pigeon"}, headers=w).status_code == 422
    assert client.post(url, json={**body, "note": "x" * 501}, headers=w).status_code == 422


def test_student_shows_history_alerts_and_interventions_audited(api):
    client, engine, made, _ = api
    w, r = {"X-API-Key": made["write"]}, {"X-API-Key": made["read"]}
    body = {"kind": "meeting", "date": str(date.today()), "staff_id": "staff-3", "note": NOTE}
    assert client.post("/v1/students/R0/interventions", json=body, headers=w).status_code == 201
    assert client.get("/v1/students/R0", headers=w).status_code == 403  # write does not read
    got = client.get("/v1/students/R0", headers=r)
    assert got.status_code == 200
    doc = got.json()
    assert [(s["point"], s["probability"]) for s in doc["scores"]] == [("day60", 0.61), ("day30", 0.31)]
    assert doc["alerts"][0]["kinds"] == ["high", "rise"] and doc["alerts"][0]["previous_point"] == "day30"
    assert doc["interventions"][0]["note"] == NOTE and doc["interventions"][0]["staff_id"] == "staff-3"
    assert client.get("/v1/students/nobody", headers=r).status_code == 404
    flush(client)
    assert audit_actions(engine, "R0") == ["intervention", "student"]


def test_cohort_alerts_are_paged_newest_and_largest_first_and_audited(api):
    client, engine, made, found = api
    r = {"X-API-Key": made["read"]}
    seen, cursor = [], None
    while True:
        page = client.get(
            f"/v1/cohorts/{COHORT}/alerts", params={"limit": 5, **({"cursor": cursor} if cursor else {})}, headers=r
        )
        assert page.status_code == 200, page.text
        seen += page.json()["alerts"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            break
    assert [a["student_id"] for a in seen] == list(found.student_id)  # largest rise first, ties by id
    assert [a["rise"] for a in seen] == sorted((a["rise"] for a in seen), reverse=True)
    assert client.get(f"/v1/cohorts/{COHORT}/alerts", params={"cursor": "nope"}, headers=r).status_code == 422
    assert client.get(f"/v1/cohorts/{COHORT}/alerts", headers={"X-API-Key": made["write"]}).status_code == 403
    flush(client)
    assert audit_actions(engine, "Q0") == ["alerts"]
    # a newer batch (another point re-scored later) comes first
    later = found.head(1).assign(point="day90", previous_point="day60")
    advising.write_alerts(engine, COHORT, "day90", later, now=datetime.now(UTC) + timedelta(minutes=1))
    first = client.get(f"/v1/cohorts/{COHORT}/alerts", params={"limit": 1}, headers=r).json()["alerts"][0]
    assert first["point"] == "day90"
    only = client.get(f"/v1/cohorts/{COHORT}/alerts", params={"point": "day60"}, headers=r).json()["alerts"]
    assert len(only) == len(found) and {a["point"] for a in only} == {"day60"}


def planted_followup(seed: int = 5):
    """400 flagged students: within each risk band, contacted ones end at risk far less often (planted), and
    group A is contacted twice as often as group B."""
    rng = np.random.default_rng(seed)
    n = 400
    ids = [f"F{i}" for i in range(n)]
    group = np.where(np.arange(n) % 2 == 0, "A", "B")
    contacted = rng.random(n) < np.where(group == "A", 0.8, 0.4)
    prob = np.where(np.arange(n) % 4 < 2, 0.6, 0.8)
    at_risk = rng.random(n) < np.where(contacted, 0.2, 0.6)
    alerts_df = pd.DataFrame(
        {"student_id": ids, "probability": prob, "tier": "high", "created_at": pd.Timestamp("2026-10-01", tz="UTC")}
    )
    alerts_df = pd.concat([alerts_df, alerts_df.assign(created_at=pd.Timestamp("2026-10-20", tz="UTC"))])
    done = pd.DataFrame({"student_id": np.array(ids)[contacted], "on_date": date(2026, 10, 4)})
    early = pd.DataFrame({"student_id": ids[:3], "on_date": date(2026, 9, 1)})  # before the alert: not follow-up
    outcomes = pd.DataFrame({"student_id": ids, "at_risk": at_risk.astype(int)})
    groups = pd.DataFrame({"student_id": ids, "gender": group})
    return alerts_df, pd.concat([done, early]), outcomes, groups, contacted, at_risk, group


def test_what_happened_after_says_what_was_planted():
    alerts_df, done, outcomes, groups, contacted, at_risk, group = planted_followup()
    flagged = followup.flagged_high(alerts_df)
    assert len(flagged) == 400 and set(flagged.alerted_on) == {date(2026, 10, 1)}  # first alert counts
    summary = followup.contact_summary(flagged, done)
    row = summary.table.iloc[0]
    assert row.contacted == contacted.sum() and row.median_days_to_contact == 3
    assert (
        summary.sentences[0]
        == f"Of the 400 students flagged high, {contacted.sum()} ({contacted.mean():.0%}) were contacted after the alert."
    )
    by = followup.outcomes_by_contact(flagged, done, outcomes).table.set_index("risk_band")
    assert list(by.index) == ["0.50-0.70", "0.70-1.00"]
    for band in by.index:
        assert by.loc[band, "at_risk_rate_contacted"] < 0.3 < 0.5 < by.loc[band, "at_risk_rate_not_contacted"]
    band = np.where(np.arange(400) % 4 < 2, "0.50-0.70", "0.70-1.00") == "0.50-0.70"
    assert by.loc["0.50-0.70", "at_risk_rate_contacted"] == pytest.approx(at_risk[band & contacted].mean())
    words = followup.outcomes_by_contact(flagged, done, outcomes).sentences
    assert "association, not the effect of the outreach" in words[-1] and "not random" in words[-1]
    rates = followup.contact_rates_by_group(flagged, done, groups, ["gender"]).table.set_index("group")
    assert rates.loc["A", "contacted_share"] == pytest.approx(contacted[group == "A"].mean())
    assert rates.loc["A", "contacted_share"] > 0.7 > 0.5 > rates.loc["B", "contacted_share"]
    small = followup.contact_rates_by_group(flagged, done, groups, ["gender"], min_group_size=300).table
    assert list(small.group) == ["smaller groups"]  # no group under the size is shown on its own


def test_follow_up_with_no_alerts_says_so_and_serializes():
    empty = pd.DataFrame(columns=["student_id", "probability", "tier", "created_at"])
    found = followup.follow_up(empty, pd.DataFrame(columns=["student_id", "on_date"]), outcomes=None)
    assert list(found) == ["contact"]
    doc = followup.as_dict(found["contact"])
    assert doc["table"][0]["flagged_high"] == 0 and doc["table"][0]["median_days_to_contact"] is None
    assert doc["sentences"] == ["No student was flagged high by an alert, so there is no follow-up to count."]
