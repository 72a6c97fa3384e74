"""The advising API over a real store: SQLite and PostgreSQL (each test runs on both).

The champion is trained once per session on a small demo with a one-point grid and
single-threaded LightGBM (seconds, even on a busy machine); each test gets its own copy of
the registry and a fresh store holding the scored intake and its outcomes.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, func, select

from api import keys
from api.app import create_app, decode_cursor, encode_cursor
from api.settings import ApiSettings
from risk_model import store
from risk_model.config import Settings
from risk_model.registry import Registry
from risk_model.schema import validate
from tests.conftest import World

V1_GETS = ["/v1/students/S1/risk", "/v1/cohorts", "/v1/cohorts/2023/students", "/v1/model", "/v1/reports"]
HYPO = hsettings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A store on each backend, migrated as `student-risk db upgrade` does (connect only checks)."""
    url = f"sqlite:///{tmp_path / 'scores.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store.upgrade(url)
    return url


@dataclass
class Api:
    client: TestClient
    engine: Engine
    settings: Settings
    keys: dict[str, str]  # scope -> key
    key_ids: dict[str, int]
    world: World

    @property
    def intake_cohort(self) -> str:
        return str(self.world.scores.cohort.iloc[0])

    def get(self, url: str, scope: str = "read", **kw):
        return self.client.get(url, headers={"X-API-Key": self.keys[scope]}, **kw)

    def post(self, url: str, scope: str = "score", **kw):
        return self.client.post(url, **{"headers": {"X-API-Key": self.keys[scope]}, **kw})


@pytest.fixture
def api(world, store_url, tmp_path) -> Api:
    home = tmp_path / "runtime"
    shutil.copytree(world.registry_dir, home / "models")
    settings = ApiSettings(home=home, store_url=store_url, api_champion_ttl_seconds=0, api_key_cache_seconds=0)
    engine = store.connect(store_url)
    store.write_scores(engine, world.scores, world.summary)
    store.write_outcomes(engine, world.outcomes)
    made = {scope: keys.create_key(engine, name=f"test-{scope}", scope=scope) for scope in keys.SCOPES}
    with TestClient(create_app(settings)) as client:
        yield Api(
            client,
            engine,
            settings,
            {s: k for s, (_, k) in made.items()},
            {s: a.id for s, (a, _) in made.items()},
            world,
        )
    engine.dispose()


def records(world: World, n: int) -> list[dict]:
    return json.loads(world.intake.head(n).to_json(orient="records"))


def audit_rows(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [r._asdict() for r in conn.execute(select(store.audit_log).order_by(store.audit_log.c.id))]


def scores_frame(
    cohort: str, point: str, probabilities: list[float], ids: list[str] | None = None, version: str = "v-test"
) -> pd.DataFrame:
    """A scored cohort written by hand: tiers by probability, rank by risk, one factor each."""
    p = np.asarray(probabilities, dtype=float)
    rank = np.empty(len(p), dtype=int)
    rank[np.argsort(-p, kind="stable")] = np.arange(1, len(p) + 1)
    return pd.DataFrame(
        {
            "cohort": cohort,
            "point": point,
            "student_id": ids or [f"S{i:03d}" for i in range(len(p))],
            "probability": p,
            "tier": np.where(p >= 0.9, "high", np.where(p >= 0.5, "medium", "low")),
            "rank": rank,
            "factors": [[{"feature": "prior_gpa", "direction": "raises", "contribution": 0.1, "value": 2.0}]] * len(p),
            "model_version": version,
            "scored_at": pd.Timestamp("2026-09-01", tz="UTC"),
        }
    )


# --- operations ------------------------------------------------------------------------------


def test_health_ready_and_openapi(api):
    assert api.client.get("/health").json() == {"status": "alive"}
    ready = api.client.get("/ready")
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    assert list(ready.json()["champions"]) == ["default"]
    spec = api.client.get("/openapi.json").json()
    assert {
        "/v1/students/{student_id}/risk",
        "/v1/cohorts",
        "/v1/cohorts/{cohort}/students",
        "/v1/score",
        "/v1/model",
        "/v1/reports",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = spec["components"]["schemas"]["ScoreRequest"]["properties"]["records"]
    assert body["maxItems"] == api.settings.api_max_records


def test_ready_without_champion(tmp_path, store_url):
    settings = ApiSettings(home=tmp_path / "empty", store_url=store_url)
    with TestClient(create_app(settings)) as client:
        r = client.get("/ready")
    assert r.status_code == 503 and r.json()["champions"] == {}


# --- auth --------------------------------------------------------------------------------------


def test_auth_missing_unknown_revoked_and_scope(api):
    for url in V1_GETS:
        assert api.client.get(url).status_code == 401, url
        assert api.client.get(url, headers={"X-API-Key": "srk_not-a-key"}).status_code == 401, url
        assert api.get(url, scope="score").status_code == 403, url
    assert api.client.post("/v1/score", json={"records": records(api.world, 1)}).status_code == 401
    assert api.post("/v1/score", scope="read", json={"records": records(api.world, 1)}).status_code == 403
    assert api.post("/v1/score", scope="admin", json={"records": records(api.world, 1)}).status_code == 200
    assert api.get("/v1/cohorts", scope="admin").status_code == 200
    r = api.client.get("/v1/cohorts", params={"api_key": api.keys["read"]})
    assert r.status_code == 401  # a key in the URL is never accepted (it would land in access logs)

    keys.revoke_key(api.engine, api.key_ids["read"])
    assert api.get("/v1/cohorts").status_code == 401


def test_keys_are_stored_hashed_and_never_logged(api, caplog):
    caplog.set_level(logging.DEBUG)
    sid = api.world.scores.student_id.iloc[0]
    api.get(f"/v1/students/{sid}/risk")
    api.get("/v1/cohorts", scope="score")
    api.post("/v1/score", json={"records": records(api.world, 2)})
    api.post("/v1/score", json={"records": [{"bad": 1}]})
    r = api.client.get("/v1/model", headers={"X-API-Key": api.keys["read"] + "x"})
    assert api.keys["read"] not in r.text
    for key in api.keys.values():
        assert key not in caplog.text
        assert key[4:20] not in caplog.text
    with api.engine.connect() as conn:
        stored = conn.execute(select(store.api_keys.c.key_hash, store.api_keys.c.prefix)).all()
    assert {h for h, _ in stored} == {keys.hash_key(k) for k in api.keys.values()}
    assert all(len(p) == 10 for _, p in stored)


# --- student lookup ----------------------------------------------------------------------------


def test_student_risk_returns_latest_score_with_labelled_factors(api):
    row = api.world.scores.sort_values("rank").iloc[0]
    r = api.get(f"/v1/students/{row.student_id}/risk")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {
        "student_id",
        "cohort",
        "point",
        "probability",
        "tier",
        "rank",
        "factors",
        "model_version",
        "scored_at",
    }
    assert body["probability"] == pytest.approx(row.probability) and body["tier"] == row.tier and body["rank"] == 1
    assert body["model_version"] == row.model_version and body["scored_at"].endswith("Z")
    labels = api.world.config.dataset.feature_labels
    for f, stored in zip(body["factors"], row.factors, strict=True):
        assert set(f) == {"feature", "direction", "label"}  # no raw rows, no contribution numbers
        assert f["label"] == stored["text"]  # the words made at scoring, the same as in the CSV export
        assert f["label"].startswith(f"{labels[stored['feature']]}: ") and f["label"].endswith(
            f"{stored['direction']} risk"
        )


def test_student_risk_picks_latest_cohort_and_point_unless_asked(api):
    sid = "S-multi"
    for cohort, point, p in [
        ("2024", "day0", 0.2),
        ("2024", "day30", 0.4),
        ("2025", "day0", 0.6),
        ("2025", "day30", 0.95),
        ("2025", "default", 0.1),
    ]:
        store.write_scores(api.engine, scores_frame(cohort, point, [p], [sid]), {})
    body = api.get(f"/v1/students/{sid}/risk").json()
    assert (body["cohort"], body["point"], body["probability"]) == ("2025", "day30", 0.95)
    body = api.get(f"/v1/students/{sid}/risk", params={"cohort": "2024"}).json()
    assert (body["cohort"], body["point"]) == ("2024", "day30")
    body = api.get(f"/v1/students/{sid}/risk", params={"point": "day0"}).json()
    assert (body["cohort"], body["point"]) == ("2025", "day0")
    assert api.get(f"/v1/students/{sid}/risk", params={"cohort": "2023"}).status_code == 404
    assert api.get("/v1/students/nobody/risk").status_code == 404
    assert api.get(f"/v1/students/{sid}/risk", params={"point": "../x"}).status_code == 422


def test_each_lookup_is_audited(api):
    sid = api.world.scores.student_id.iloc[3]
    api.get(f"/v1/students/{sid}/risk")
    api.get(f"/v1/students/{sid}/risk", scope="admin", params={"cohort": "1999"})  # not found: still audited
    api.client.get(f"/v1/students/{sid}/risk")  # no key: not a lookup
    api.client.app.state.api.audit.flush()
    rows = audit_rows(api.engine)
    assert [(r["key_id"], r["student_id"], r["action"], r["cohort"]) for r in rows] == [
        (api.key_ids["read"], sid, "risk", None),
        (api.key_ids["admin"], sid, "risk", "1999"),
    ]
    assert all(r["at"] is not None for r in rows)
    page = api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"limit": 5}).json()
    api.client.app.state.api.audit.flush()  # on SQLite a row queued behind a refused key's is written by a thread
    listed = [r for r in audit_rows(api.engine) if r["action"] == "list"]
    assert [r["student_id"] for r in listed] == [s["student_id"] for s in page["students"]]
    assert {r["key_id"] for r in listed} == {api.key_ids["read"]}


# --- cohorts -----------------------------------------------------------------------------------


def test_cohorts_list_counts_per_tier(api):
    store.write_scores(api.engine, scores_frame("2026", "day30", [0.95, 0.5, 0.1, 0.1]), {})
    body = api.get("/v1/cohorts").json()["cohorts"]
    assert [(c["cohort"], c["point"]) for c in body] == [("2026", "day30"), (api.intake_cohort, "default")]
    assert body[0]["tiers"] == {"high": 1, "medium": 1, "low": 2} and body[0]["n_students"] == 4
    expected = api.world.scores.tier.value_counts().to_dict()
    assert body[1]["tiers"] == {t: expected.get(t, 0) for t in ("high", "medium", "low")}
    assert body[1]["model_version"] == api.world.scores.model_version.iloc[0]


def test_cohort_students_filters_and_sorts(api):
    s = api.world.scores
    body = api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"tier": "high", "limit": 1000}).json()
    got = body["students"]
    assert [g["student_id"] for g in got] == s[s.tier == "high"].sort_values(
        ["probability", "student_id"], ascending=[False, True]
    ).student_id.tolist()
    assert body["next_cursor"] is None and body["point"] == "default"
    body = api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"min_probability": 0.5, "limit": 1000}).json()
    assert len(body["students"]) == int((s.probability >= 0.5).sum())
    assert all(set(g) == {"student_id", "probability", "tier", "rank"} for g in body["students"])
    assert api.get("/v1/cohorts/1999/students").status_code == 404
    assert api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"cursor": "garbage"}).status_code == 422
    assert api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"limit": 0}).status_code == 422
    assert api.get(f"/v1/cohorts/{api.intake_cohort}/students", params={"tier": "extreme"}).status_code == 422


def test_cursor_round_trips_floats_exactly_and_rejects_forgeries():
    for p in (0.1 + 0.2, 1e-300, 0.0, 1.0, 0.123456789012345678):
        assert decode_cursor(encode_cursor(p, "S/é")) == (p, "S/é")
    for forged in ([10**400, "S"], [True, "S"], ["0.5", "S"], [0.5], {"p": 1, "s": 2}, [0.5, "a\x00"]):
        raw = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        with pytest.raises(RequestValidationError):
            decode_cursor(raw)


probabilities = st.lists(
    st.one_of(st.sampled_from([0.95, 0.5, 0.5, 0.2, 0.2]), st.floats(0, 1)), min_size=1, max_size=40
)


@HYPO
@given(
    ps=probabilities,
    size=st.integers(1, 8),
    tier=st.sampled_from([None, "high", "medium", "low"]),
    floor=st.sampled_from([None, 0.5]),
    seed=st.integers(0, 10),
)
def test_pagination_never_skips_or_repeats(api, ps, size, tier, floor, seed):
    ids = [f"S{i:03d}" for i in np.random.default_rng(seed).permutation(len(ps))]
    frame = scores_frame("TIES", "default", ps, ids)
    store.write_scores(api.engine, frame, {})  # replaces the previous example's cohort
    expected = frame[(frame.tier == tier) if tier else frame.tier.notna()]
    if floor is not None:
        expected = expected[expected.probability >= floor]
    expected = expected.sort_values(["probability", "student_id"], ascending=[False, True]).student_id.tolist()
    seen, cursor = [], None
    params = {k: v for k, v in {"limit": size, "tier": tier, "min_probability": floor}.items() if v is not None}
    for _ in range(len(ps) + 2):
        page = api.get("/v1/cohorts/TIES/students", params={**params, **({"cursor": cursor} if cursor else {})}).json()
        assert len(page["students"]) <= size
        seen += [s["student_id"] for s in page["students"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected


# --- scoring -----------------------------------------------------------------------------------


def test_score_records_without_storing(api):
    before = len(store.read_scores(api.engine, api.intake_cohort))
    recs = records(api.world, 3)
    r = api.post("/v1/score", json={"records": recs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["point"] == "default" and body["tier_basis"].startswith(
        f"tier boundaries of cohort {api.intake_cohort} "
    )
    assert [x["student_id"] for x in body["results"]] == [x["student_id"] for x in recs]
    stored = api.world.scores.set_index("student_id")
    for x in body["results"]:
        assert x["probability"] == pytest.approx(stored.probability[x["student_id"]], abs=1e-6)
        assert x["tier"] == stored.tier[x["student_id"]]
        # by default only records in the tiers the stored cohort explained at scoring get factors
        acted_on = x["tier"] in ("high", "medium")
        assert x["explained"] is acted_on and len(x["factors"]) == (3 if acted_on else 0)
    assert len(store.read_scores(api.engine, api.intake_cohort)) == before
    every = api.post("/v1/score", params={"factors": "all"}, json={"records": recs}).json()
    assert all(len(x["factors"]) == 3 and x["explained"] for x in every["results"])
    quick = api.post("/v1/score", params={"factors": "false"}, json={"records": recs}).json()
    assert all(x["factors"] == [] and not x["explained"] for x in quick["results"])


def test_score_validation_names_record_and_field(api):
    recs = records(api.world, 3)
    recs[2]["prior_gpa"] = "high"
    del recs[1]["entry_points"]
    r = api.post("/v1/score", json={"records": recs})
    assert r.status_code == 422
    locs = [tuple(e["loc"]) for e in r.json()["detail"]]
    assert ("body", "records", 2, "prior_gpa") in locs and ("body", "records", 1, "entry_points") in locs
    assert all("input" not in e for e in r.json()["detail"])  # a record is not echoed back

    outcome = records(api.world, 1)
    outcome[0]["outcome"] = "pass"
    r = api.post("/v1/score", json={"records": outcome})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records", 0, "outcome"]

    dup = records(api.world, 1) * 2
    r = api.post("/v1/score", json={"records": dup})
    assert r.status_code == 422 and "repeats student" in r.json()["detail"][0]["msg"]

    assert api.post("/v1/score", json={"records": []}).status_code == 422
    too_many = records(api.world, 1) * (api.settings.api_max_records + 1)
    r = api.post("/v1/score", json={"records": too_many})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "records"]
    assert api.post("/v1/score", params={"point": "day999"}, json={"records": records(api.world, 1)}).status_code == 404


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.sampled_from(["NaN", "Infinity", "1e400", "", " "]),
    st.lists(st.integers(), max_size=2),
)


@HYPO
@given(data=st.data())
def test_score_fuzzed_records_never_error(api, data):
    recs = records(api.world, 2)
    for rec in recs:
        for col in data.draw(st.lists(st.sampled_from(list(rec)), max_size=3)):
            rec[col] = data.draw(values)
    body = json.dumps({"records": recs}, allow_nan=True)  # NaN / Infinity tokens too: Python's parser accepts them
    r = api.post(
        "/v1/score",
        content=body,
        headers={"Content-Type": "application/json", "X-API-Key": api.keys["score"]},
        params={"factors": data.draw(st.booleans())},
    )
    assert r.status_code in (200, 422), r.text


# --- model, reports, hot swap --------------------------------------------------------------------


def test_model_info_with_real_performance(api):
    body = api.get("/v1/model").json()
    version = Registry(api.settings.registry_dir).champion()
    assert body["version"] == version and body["point"] == "default" and body["points"] == ["default"]
    assert body["training_cohorts"] == ["2019", "2020", "2021"]
    assert body["validation"]["kind"] == "backtest" and set(body["validation"]["by_cohort"]) == {"2020", "2021"}
    real = body["real_performance"]
    assert [(x["cohort"], x["model_version"], x["n"]) for x in real] == [
        (api.intake_cohort, version, len(api.world.outcomes))
    ]
    assert 0.5 < real[0]["roc_auc"] <= 1
    assert body["model_card"].startswith("# Model card")
    assert api.get("/v1/model", params={"point": "day30"}).status_code == 404


def test_reports_index_newest_first(api):
    root = api.settings.reports_dir
    for i, (cohort, warning) in enumerate([("2024", False), ("2025", True)]):
        path = root / cohort / "default" / "v1" / "intake_drift.json"
        path.parent.mkdir(parents=True)
        path.write_text(
            json.dumps(
                {
                    "report": "intake_drift",
                    "cohort": cohort,
                    "model_version": "v1",
                    "verdict": f"verdict {cohort}",
                    "warning": warning,
                }
            )
        )
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
    (root / "broken.json").write_text("{not json")
    os.utime(root / "broken.json", (1_600_000_000, 1_600_000_000))
    body = api.get("/v1/reports").json()["reports"]
    assert [(r["cohort"], r["verdict"], r["warning"]) for r in body] == [
        ("2025", "verdict 2025", True),
        ("2024", "verdict 2024", False),
        (None, None, None),
    ]
    assert body[0]["path"] == "2025/default/v1/intake_drift.json"
    assert len(api.get("/v1/reports", params={"limit": 1}).json()["reports"]) == 1


def test_new_champion_is_served_without_restart(api):
    registry = Registry(api.settings.registry_dir)
    old = registry.champion()
    assert api.get("/v1/model").json()["version"] == old
    new = "29991231-235959-hotswap0"
    versions = registry.root / "default" / "versions"
    shutil.copytree(versions / old, versions / new)
    md = json.loads((versions / new / "metadata.json").read_text())
    (versions / new / "metadata.json").write_text(json.dumps({**md, "version": new}))
    registry.promote(new, force=True)
    assert api.get("/v1/model").json()["version"] == new
    assert api.post("/v1/score", json={"records": records(api.world, 1)}).json()["model_version"] == new
    assert api.client.get("/ready").json()["champions"] == {"default": new}
    # stored scores keep naming the version that made them, with its labels
    sid = api.world.scores.student_id.iloc[0]
    assert api.get(f"/v1/students/{sid}/risk").json()["model_version"] == old


def test_values_the_database_refuses_are_422(api):
    for url in [
        "/v1/students/a%00b/risk",
        f"/v1/students/{api.world.scores.student_id.iloc[0]}/risk?cohort=%00",
        "/v1/cohorts/%00/students",
        "/v1/cohorts/2025/students?cursor=WzAuNSwiXHUwMDAwIl0",
    ]:
        assert api.get(url).status_code == 422, url


def test_store_outage_is_503_not_500(api):
    state = api.client.app.state.api
    state.engine.dispose()
    state.engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    if state.lookup_pool is not None:
        api.client.portal.call(state.lookup_pool.close)
    assert api.get("/v1/cohorts").status_code == 503
    assert api.get("/v1/students/S1/risk").status_code == 503
    assert api.client.get("/ready").status_code == 503


def test_key_cache_keeps_checks_off_the_store(api, monkeypatch):
    state = api.client.app.state.api
    monkeypatch.setattr(state.settings, "api_key_cache_seconds", 60.0)
    calls = []
    real = keys.find_key
    monkeypatch.setattr(keys, "find_key", lambda engine, key: calls.append(1) or real(engine, key))
    for _ in range(3):
        assert api.get("/v1/cohorts").status_code == 200
    assert len(calls) == 1


def test_cli_keys(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app

    runner = CliRunner()
    home = str(tmp_path / "runtime")  # not there yet: the first command makes it
    made = runner.invoke(app, ["keys", "create", "--scope", "score", "--name", "nightly-sync", "--home", home])
    assert made.exit_code == 0, made.output
    secret = made.output.strip().splitlines()[-1]
    engine = store.connect(f"sqlite:///{tmp_path / 'runtime' / 'scores.db'}")
    found = keys.find_key(engine, secret)
    assert found is not None and found.scope == "score" and found.name == "nightly-sync"
    listed = runner.invoke(app, ["keys", "list", "--home", home])
    assert "nightly-sync" in listed.output and secret not in listed.output and "active" in listed.output
    assert runner.invoke(app, ["keys", "revoke", str(found.id), "--home", home]).exit_code == 0
    assert keys.find_key(engine, secret) is None
    assert "revoked" in runner.invoke(app, ["keys", "list", "--home", home]).output
    assert runner.invoke(app, ["keys", "create", "--scope", "root", "--name", "x", "--home", home]).exit_code == 2
    assert runner.invoke(app, ["keys", "revoke", "999", "--home", home]).exit_code == 2
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.api_keys)).scalar() == 1
    engine.dispose()


def test_model_info_expected_before_any_report(api):
    body = api.get("/v1/model").json()
    exp, stored = body["expected"], api.world.summary["by_cohort"][api.intake_cohort]["expected"]
    assert exp["cohort"] == api.intake_cohort and exp["promise"] is None and "no intake report yet" in exp["source"]
    assert exp["roc_auc"] == pytest.approx(stored["roc_auc"]) and exp["n"] == stored["n"]
    assert exp["at_risk_rate"] == pytest.approx(stored["at_risk_rate"])


def test_model_info_expected_numbers_and_promise_from_the_intake_report(api):
    from reports import build

    c = api.world.config.dataset
    intake = validate(api.world.intake, c, stage="score", source="intake")
    report = build.intake_report(api.settings, api.world.config, intake)
    body = api.get("/v1/model").json()
    exp, promise = body["expected"], report["promise"]
    assert exp["model_version"] == report["model_version"] and "intake report of cohort" in exp["source"]
    for m in ("roc_auc", "recall_top_k", "at_risk_rate"):
        assert exp[m] == pytest.approx(report["expected"][m])
    assert exp["promise"]["status"] == promise["status"] and exp["promise"]["text"] == promise["text"]
    assert (exp["promise"]["low"], exp["promise"]["high"]) == pytest.approx((promise["low"], promise["high"]))
    assert body["validation"]["auc"] is not None  # the old fields stay
