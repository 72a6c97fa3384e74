"""The score store on SQLite and PostgreSQL: migrations, concurrent start-up, the job's writes
and reads, and API keys."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, func, inspect, select

from api import keys
from risk_model import store


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request, tmp_path) -> str:
    """An empty store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def url(fresh_url) -> str:
    """A store migrated by the deploy step (`student-risk db upgrade`): `connect` only checks."""
    store.upgrade(fresh_url)
    return fresh_url


def scored(cohort: str, n: int, point: str = "default", version: str = "v1") -> pd.DataFrame:
    p = [round(1 - i / n, 6) for i in range(n)]
    return pd.DataFrame(
        {
            "cohort": cohort,
            "point": point,
            "student_id": [f"S{i}" for i in range(n)],
            "probability": p,
            "tier": ["high" if i < n // 10 else "low" for i in range(n)],
            "rank": range(1, n + 1),
            "factors": [[{"feature": "prior_gpa", "direction": "lowers", "contribution": -0.2, "value": 3.1}]] * n,
            "model_version": version,
            "scored_at": pd.Timestamp("2026-09-01 10:00", tz="UTC"),
        }
    )


def test_upgrade_migrates_to_the_tables_store_py_declares(fresh_url):
    url = fresh_url
    assert store.upgrade(url) == store.upgrade(url)  # the second is a no-op
    engine = store.connect(url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == store.migrate(engine)
        assert compare_metadata(MigrationContext.configure(conn), store.metadata) == []
    indexes = {i["name"] for i in inspect(engine).get_indexes("scores")}
    assert {
        "ix_scores_student",
        "ix_scores_cohort_rank",
        "ix_scores_cohort_risk",
        "ix_scores_cohort_tier_risk",
    } <= indexes
    engine.dispose()


def test_connect_refuses_a_store_behind_the_code_and_names_the_fix(fresh_url):
    with pytest.raises(store.StoreError, match="none.*student-risk db upgrade"):
        store.connect(fresh_url)
    assert store.revisions(fresh_url)[0] is None
    store.upgrade(fresh_url)
    engine = store.connect(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0000'")
    engine.dispose()
    with pytest.raises(store.StoreError, match="revision 0000.*student-risk db upgrade"):
        store.connect(fresh_url)


def test_the_embedded_store_is_migrated_by_the_job_step_a_server_store_is_not(fresh_url):
    if fresh_url.startswith("sqlite"):
        with store.opened(fresh_url) as engine:
            assert store.current(engine) == store.revisions(fresh_url)[1]
    else:
        with pytest.raises(store.StoreError, match="db upgrade"), store.opened(fresh_url):
            pass


def test_store_made_before_migrations_is_adopted(fresh_url):
    url = fresh_url
    """A store created by the old `metadata.create_all` keeps its rows and gains the new tables."""
    old = MetaData()
    for name in ("scores", "score_runs", "outcomes"):
        store.metadata.tables[name].to_metadata(old)
    for index in list(old.tables["scores"].indexes):
        if index.name not in ("ix_scores_student", "ix_scores_cohort_rank"):
            old.tables["scores"].indexes.discard(index)
    legacy = create_engine(url)
    old.create_all(legacy)
    store.write_scores(legacy, scored("2024", 5), {})
    legacy.dispose()
    store.upgrade(url)
    engine = store.connect(url)
    assert len(store.read_scores(engine, "2024")) == 5
    assert {"api_keys", "audit_log"} <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_processes_starting_at_once_migrate_once(fresh_url):
    url = fresh_url
    errors, engines = [], []
    barrier = threading.Barrier(4)

    def start() -> None:
        try:
            barrier.wait()
            store.upgrade(url)  # e.g. the worker's and the API's start
            engines.append(store.connect(url))
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=start, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "migrations deadlocked: is the migration lock taken?"
    assert errors == []
    with engines[0].connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.metadata.tables["scores"])).scalar() == 0
        assert len(conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()) == 1
    for e in engines:
        e.dispose()


def test_write_scores_replaces_a_cohort_point_and_reads_back(url, tmp_path):
    engine = store.connect(url)
    store.write_scores(engine, scored("2024", 30), {"n_students": 30})
    store.write_scores(engine, scored("2024", 30, point="day30"), {})
    store.write_scores(engine, scored("2024", 20, version="v2"), {"n_students": 20})
    back = store.read_scores(engine, "2024", "default")
    assert len(back) == 20 and set(back.model_version) == {"v2"} and list(back["rank"]) == list(range(1, 21))
    assert back.factors.iloc[0][0]["feature"] == "prior_gpa"
    assert len(store.read_scores(engine, "2024")) == 50
    assert store.cohort_points(engine, "2024") in (["default", "day30"], ["day30", "default"])
    out = tmp_path / "x.csv"
    store.export_csv(back, out)
    assert pd.read_csv(out).factor_1.iloc[0] == "prior_gpa (lowers risk)"
    engine.dispose()


def test_failed_write_leaves_the_store_as_it_was(url):
    engine = store.connect(url)
    store.write_scores(engine, scored("2024", 10), {})
    bad = scored("2024", 10)
    bad.loc[5, "student_id"] = bad.loc[4, "student_id"]  # breaks the unique constraint mid-insert
    with pytest.raises(Exception, match="(?i)unique"):
        store.write_scores(engine, bad, {})
    assert len(store.read_scores(engine, "2024")) == 10
    engine.dispose()


def test_outcomes_replace_per_cohort(url):
    engine = store.connect(url)
    frame = pd.DataFrame(
        {
            "cohort": ["2024"] * 3,
            "student_id": ["a", "b", "c"],
            "outcome": ["pass", "fail", "pass"],
            "at_risk": [0, 1, 0],
        }
    )
    store.write_scores(engine, scored("2024", 3), {})  # outcomes belong to a scored cohort
    store.write_outcomes(engine, frame)
    store.write_outcomes(engine, frame.iloc[:2])
    back = store.read_outcomes(engine, "2024")
    assert sorted(back.student_id) == ["a", "b"] and back.at_risk.sum() == 1
    joined = store.scored_outcomes(engine, "default")
    assert len(joined) == 0  # outcome ids a, b vs score ids S0..S2: nothing joins
    engine.dispose()


def test_tier_floors_and_summaries(url):
    engine = store.connect(url)
    store.write_scores(engine, scored("2024", 50), {})
    floors = store.tier_floors(engine, "2024", "default")
    assert set(floors) == {"high", "low"} and floors["high"] == pytest.approx(1 - 4 / 50)
    (summary,) = store.cohort_summaries(engine)
    assert summary["tiers"] == {"high": 5, "low": 45} and summary["model_version"] == "v1"
    engine.dispose()


def test_keys_are_hashed_scoped_and_revocable(url):
    engine = store.connect(url)
    info, secret = keys.create_key(engine, name="dashboard", scope="read")
    assert secret.startswith("srk_") and len(secret) > 40 and info.prefix == secret[:10]
    with engine.connect() as conn:
        stored = conn.execute(select(store.api_keys)).mappings().one()
    assert secret not in stored.values() and stored["key_hash"] == keys.hash_key(secret)
    found = keys.find_key(engine, secret)
    assert found is not None and found.allows("read") and not found.allows("score")
    assert keys.find_key(engine, secret + "x") is None
    _, admin = keys.create_key(engine, name="ops", scope="admin")
    assert keys.find_key(engine, admin).allows("score") and keys.find_key(engine, admin).allows("read")
    keys.revoke_key(engine, info.id)
    assert keys.find_key(engine, secret) is None
    assert [k.revoked_at is not None for k in keys.list_keys(engine)] == [True, False]
    with pytest.raises(ValueError, match="scope"):
        keys.create_key(engine, name="x", scope="delete")
    writer = keys.create_key(engine, name="advising-tool", scope="write")[0]
    assert writer.allows("write") and not writer.allows("read")  # interventions only
    with pytest.raises(ValueError, match="no API key"):
        keys.revoke_key(engine, 999)
    engine.dispose()


def test_serving_engine_autocommits_and_audits_in_one_statement(url):
    engine = store.connect(url, serving=True, durable_audit=False)
    store.write_scores(engine, scored("2024", 3), {})
    key, _ = keys.create_key(engine, name="t", scope="read")
    rows = store.student_scores(engine, "S1", key_id=key.id)
    assert [r["cohort"] for r in rows] == ["2024"] and rows[0]["factors"][0]["direction"] == "lowers"
    assert store.student_scores(engine, "S1", key_id=key.id, cohort="2024", point="day0") == []
    with engine.connect() as conn:
        audited = conn.execute(select(store.audit_log.c.student_id, store.audit_log.c.point)).all()
    assert audited == [("S1", None), ("S1", "day0")]
    engine.dispose()
