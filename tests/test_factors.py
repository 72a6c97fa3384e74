"""Factors where they are read: computed at scoring for the tiers advisors act on, on first lookup (then
kept in the store) for everyone else, always the factors a full pass gives; the CSV says who carries
them; an alerted student outside those tiers is explained before the alert says why."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import create_engine, insert, select
from test_api import Api, api, records, store_url  # noqa: F401  (shared fixtures; world is in conftest)

import risk_model.score
from risk_model import advising, jobs, store
from risk_model.config import ScoringConfig, Settings
from risk_model.registry import Registry
from risk_model.schema import validate
from risk_model.score import explain_inputs, probabilities, score

ACTED_ON = ("high", "medium")


def every_tier(s: ScoringConfig) -> ScoringConfig:
    return s.model_copy(update={"factor_tiers": ["high", "medium", "low"]})


@pytest.fixture(scope="module")
def bundle(trained_home, demo_config):
    return Registry(trained_home["settings"].registry_dir).load(contract=demo_config.dataset)


@pytest.fixture(scope="module")
def awkward_intake(trained_home, bundle):
    """The intake with values a full pass must show as given: a feature never missing in training left
    empty (the model reads its training median), categories never seen in training."""
    intake = trained_home["intake"].copy()
    fill = next(iter(bundle.fill))
    intake.loc[intake.index[::7], fill] = np.nan
    intake.loc[intake.index[::11], "entry_qualification"] = "Apprenticeship"
    return intake


@pytest.fixture(scope="module")
def full_pass(bundle, awkward_intake, demo_config):
    """Every student explained at scoring: what the chosen tiers and the lookups must agree with."""
    return score(bundle, awkward_intake, demo_config.dataset, every_tier(demo_config.scoring)).scores


@pytest.mark.parametrize("factor_tiers", [["high", "medium"], ["high"], ["low"]])
def test_factors_present_exactly_for_the_chosen_tiers(bundle, awkward_intake, demo_config, full_pass, factor_tiers):
    s = demo_config.scoring.model_copy(update={"factor_tiers": factor_tiers})
    scores = score(bundle, awkward_intake, demo_config.dataset, s).scores
    chosen = scores["tier"].isin(factor_tiers).to_numpy()
    assert 0 < chosen.sum() < len(scores)
    assert all(len(f) == s.n_factors for f in scores.factors[chosen])
    assert all(f == [] for f in scores.factors[~chosen])
    assert scores.inputs[chosen].isna().all() and all(isinstance(i, dict) for i in scores.inputs[~chosen])
    # everything else is what a full pass gives, and the explained students' factors are its factors
    cols = ["student_id", "probability", "tier", "rank"]
    pd.testing.assert_frame_equal(scores[cols], full_pass[cols])
    assert scores.factors[chosen].tolist() == full_pass.factors[chosen].tolist()


def test_without_factors_nobody_gets_them_now_or_later(bundle, awkward_intake, demo_config):
    for s, factors in ((demo_config.scoring, False), (demo_config.scoring.model_copy(update={"n_factors": 0}), True)):
        scores = score(bundle, awkward_intake, demo_config.dataset, s, factors=factors).scores
        assert all(f == [] for f in scores.factors) and scores.inputs.isna().all()


def test_kept_inputs_give_the_factors_of_a_full_pass(bundle, awkward_intake, demo_config, full_pass):
    scores = score(bundle, awkward_intake, demo_config.dataset, demo_config.scoring).scores
    later = scores.inputs.map(lambda i: isinstance(i, dict)).to_numpy()
    kept = scores.inputs[later].tolist()
    assert explain_inputs(bundle, kept) == full_pass.factors[later].tolist()
    # one at a time, as the API explains a looked-up student, and after a JSON round trip, as stored
    for i in np.flatnonzero(later)[:40]:
        assert explain_inputs(bundle, [json.loads(json.dumps(scores.inputs[i]))]) == [full_pass.factors[i]]
    # the kept values are as given: the empty number not filled in, the unseen category not recorded
    at = [bundle.features.index(next(iter(bundle.fill))), bundle.features.index("entry_qualification")]
    assert all(any(i["values"][j] is None for i in kept) for j in at)


def test_csv_export_says_who_carries_factors(trained_home, demo_config, tmp_path):
    settings = Settings(home=tmp_path / "runtime")
    shutil.copytree(trained_home["settings"].home / "models", settings.home / "models")
    out = jobs.score_and_store(settings, demo_config, trained_home["intake"])
    csv = pd.read_csv(out["export"], keep_default_na=False, dtype=str)
    acted_on = csv["tier"].isin(ACTED_ON)
    assert (csv["explained"] == np.where(acted_on, "yes", "")).all()
    assert (csv["factor_1"] != "").eq(acted_on).all() and (csv["factor_3"] != "").eq(acted_on).all()
    assert out["factors"] == {
        "tiers": list(ACTED_ON),
        "n_explained": int(acted_on.sum()),
        "n_pending": int((~acted_on).sum()),
    }


def test_a_merge_explains_students_whose_new_tier_is_acted_on(trained_home, demo_config, bundle, tmp_path):
    """Merging students into a stored cohort re-tiers it whole: kept students who move into an acted-on tier
    get their factors in the same transaction, those of a full pass."""
    settings = Settings(home=tmp_path / "runtime")
    shutil.copytree(trained_home["settings"].home / "models", settings.home / "models")
    c, intake = demo_config.dataset, trained_home["intake"]
    jobs.score_and_store(settings, demo_config, intake)
    first = store_frame(settings, intake)
    # the 120 riskiest students now look like the least risky one: 120 others move up into medium
    order = first.sort_values("rank")
    riskiest, safest = order.student_id.head(120), order.student_id.iloc[-1]
    ids = intake[c.id_column].astype(str)
    calmer = intake[ids.isin(riskiest)].copy()
    safe = intake[ids == safest].iloc[0]
    for col in c.features:
        calmer[col] = safe[col]
    jobs.score_and_store(settings, demo_config, calmer, partial="merge")
    after = store_frame(settings, intake)
    acted_on = after.tier.isin(ACTED_ON)
    moved_up = acted_on & ~first.tier.isin(ACTED_ON)
    assert moved_up.sum() >= 100
    assert after.inputs[acted_on].isna().all() and all(len(f) == 3 for f in after.factors[acted_on])
    whole = score(bundle, intake, c, every_tier(demo_config.scoring)).scores.set_index("student_id")
    assert after.factors[moved_up].tolist() == whole.factors[after.student_id[moved_up]].tolist()


def store_frame(settings: Settings, intake: pd.DataFrame) -> pd.DataFrame:
    """The stored scores of the intake's cohort, in the intake's order."""
    engine = store.connect(settings.resolved_store_url)
    try:
        cohort = str(intake["cohort"].iloc[0])
        stored = store.read_scores(engine, cohort).set_index("student_id")
    finally:
        engine.dispose()
    return stored.loc[intake["student_id"].astype(str)].reset_index()


def test_an_alerted_student_outside_the_tiers_gets_factors_and_a_reason(trained_home, demo_config, tmp_path):
    """A rise that stays in the low tier is an alert; its reason is in the words of the student's factors,
    computed for the alert (and kept), the same as a full pass."""
    settings = Settings(home=tmp_path / "runtime")
    models = settings.home / "models"
    shutil.copytree(trained_home["settings"].home / "models", models)
    shutil.copytree(models / "default", models / "day30")  # the same model serves point day30
    bundle = Registry(settings.registry_dir).load(point="day30")
    c, intake = demo_config.dataset, trained_home["intake"]
    now = score(bundle, intake, c, demo_config.scoring).scores.assign(point="day30")
    full = score(bundle, intake, c, every_tier(demo_config.scoring)).scores
    raising = full.factors.map(lambda fs: any(f["direction"] == "raises" for f in fs)).to_numpy()
    candidates = np.flatnonzero((now.tier == "low").to_numpy() & (now.probability >= 0.2).to_numpy() & raising)
    student = candidates[0]
    before = now.assign(point="day0", factors=[[]] * len(now), inputs=None)
    before.loc[student, "probability"] = round(float(now.probability[student]) - 0.2, 6)
    with store.opened(settings.resolved_store_url) as engine:
        store.write_scores(engine, before, {})
        store.write_scores(engine, now, {})
    out = jobs.alert_and_store(settings, demo_config, intake, point="day30")
    cohort = str(now.cohort[0])
    with store.opened(settings.resolved_store_url) as engine:
        alerted = store.read_scores(engine, cohort, "day30").set_index("student_id")
        found = advising.cohort_alerts(engine, cohort).set_index("student_id")
    sid = now.student_id[student]
    assert out["cohorts"][cohort]["n_alerts"] >= 1 and found.kinds[sid] == "rise" and found.tier[sid] == "low"
    assert alerted.factors[sid] == full.factors[student] and alerted.inputs[sid] is None  # kept in the store
    words = [f["text"] for f in full.factors[student] if f["direction"] == "raises"]
    assert words[0] in found.reason[sid]
    # students not alerted keep waiting for a lookup
    assert alerted.inputs[alerted.tier == "low"].map(lambda i: isinstance(i, dict)).sum() >= len(now) * 0.5


# --- the API: a lookup explains on first read and keeps the factors ----------------------------------


def full_factors(api: Api) -> pd.Series:  # noqa: F811
    """Every stored student's factors as a full pass at scoring gives them."""
    c = api.world.config.dataset
    bundle = Registry(api.settings.registry_dir).load(contract=c)
    intake = validate(api.world.intake, c, stage="score", source="intake")
    return score(bundle, intake, c, every_tier(api.world.config.scoring)).scores.set_index("student_id").factors


def stored_row(api: Api, student_id: str) -> dict:  # noqa: F811
    with api.engine.connect() as conn:
        row = conn.execute(select(store.scores).where(store.scores.c.student_id == student_id)).mappings().one()
    return dict(row)


def labels(factors: list[dict]) -> list[tuple]:
    return [(f["feature"], f["direction"], f["text"]) for f in factors]


def test_lookup_explains_on_first_read_keeps_it_and_reads_it_next_time(api, monkeypatch):  # noqa: F811
    scores = api.world.scores
    later = scores[scores.tier == "low"].student_id.tolist()
    assert later and all(isinstance(stored_row(api, sid)["inputs"], dict) for sid in later[:3])
    expected = full_factors(api)
    sid = later[0]
    first = api.get(f"/v1/students/{sid}/risk")
    assert first.status_code == 200
    got = [(f["feature"], f["direction"], f["label"]) for f in first.json()["factors"]]
    assert got == labels(expected[sid]) and len(got) == 3
    row = stored_row(api, sid)
    assert row["inputs"] is None and row["factors"] == expected[sid]  # kept: the full pass's factors exactly

    def no_explaining(*a, **k):
        raise AssertionError("a kept factor was computed again")

    monkeypatch.setattr(risk_model.score, "explain_inputs", no_explaining)
    second = api.get(f"/v1/students/{sid}/risk")
    assert second.status_code == 200 and second.json() == first.json()
    # a student of an acted-on tier was explained at scoring: read as stored
    top = scores.sort_values("rank").student_id.iloc[0]
    assert api.get(f"/v1/students/{top}/risk").json()["factors"]


def test_student_detail_explains_every_stored_point_on_first_read(api):  # noqa: F811
    scores = api.world.scores
    sid = scores[scores.tier == "low"].student_id.iloc[1]
    expected = full_factors(api)[sid]
    r = api.get(f"/v1/students/{sid}")
    assert r.status_code == 200
    (at_point,) = r.json()["scores"]
    assert [(f["feature"], f["direction"], f["label"]) for f in at_point["factors"]] == labels(expected)
    row = stored_row(api, sid)
    assert row["inputs"] is None and row["factors"] == expected
    again = api.get(f"/v1/students/{sid}/risk").json()
    assert [f["label"] for f in again["factors"]] == [f["text"] for f in expected]


def test_score_endpoint_explains_the_acted_on_tiers_as_the_frame_path(api):  # noqa: F811
    """`POST /v1/score` by default explains the records in the tiers the stored cohort explained: exactly
    those, with the frame path's factors (`factors=all` and `false` are `tests/test_fast_api.py`'s)."""
    c = api.world.config.dataset
    bundle = Registry(api.settings.registry_dir).load(contract=c)
    recs = records(api.world, 300)
    frame = validate(pd.DataFrame(recs), c, stage="score", source="request")
    p, factor_lists = probabilities(bundle, frame, c, ScoringConfig(), progress=lambda m: None)
    body = api.post("/v1/score", json={"records": recs}).json()
    results = body["results"]
    assert np.max(np.abs(np.array([x["probability"] for x in results]) - np.round(p, 6))) <= 1e-9
    acted_on = [x["tier"] in ACTED_ON for x in results]
    assert 0 < sum(acted_on) < len(results)
    for x, want, chosen in zip(results, factor_lists, acted_on, strict=True):
        assert x["explained"] is chosen
        assert [f["label"] for f in x["factors"]] == ([f["text"] for f in want] if chosen else [])


# --- the migration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migration_0004_keeps_stored_scores_and_they_read_as_explained(backend, tmp_path, request):
    """A store at revision 0003 with scores is upgraded by `student-risk db upgrade` (`store.upgrade`): the
    scores are kept, carry no inputs (their factors were stored), and a lookup reads them as they were."""
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = create_engine(url)
    cfg = store._alembic_config()
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.commit()
    factors = [{"feature": "prior_gpa", "direction": "raises", "contribution": 0.3, "value": 2.1, "text": "x"}]
    row = {
        "cohort": "2024",
        "point": "default",
        "student_id": "S1",
        "probability": 0.4,
        "tier": "low",
        "rank": 1,
        "factors": factors,
        "model_version": "v0",
        "scored_at": pd.Timestamp("2026-01-01", tz="UTC").to_pydatetime(),
    }
    old_scores = store.scores.c
    with engine.begin() as conn:
        conn.execute(insert(store.scores).values({k: row[k] for k in row if k in old_scores}))
    with pytest.raises(store.StoreError, match="db upgrade"):
        store.connect(url)
    engine.dispose()
    assert store.upgrade(url) == "0004"
    engine = store.connect(url)
    try:
        (found,) = store.student_scores(engine, "S1", key_id=None)
        assert found["factors"] == factors and found["inputs"] is None
    finally:
        engine.dispose()


# --- the scoring path's own arithmetic ------------------------------------------------------------------


def test_expected_auc_equals_scikit_learns_weighted_auc():
    """`estimate.expected_roc_auc` (NumPy, on the scoring path) is scikit-learn's weighted ROC AUC of each
    student counted at risk with weight p and fine with weight 1 - p, ties included."""
    from sklearn.metrics import roc_auc_score

    from risk_model.estimate import expected_roc_auc

    rng = np.random.default_rng(0)
    for n in (2, 7, 1500):
        for p in (rng.uniform(0, 1, n), rng.uniform(0, 1, n).round(2), rng.beta(0.5, 3, n).round(3)):
            y = np.r_[np.ones(n), np.zeros(n)]
            want = roc_auc_score(y, np.r_[p, p], sample_weight=np.r_[p, 1 - p])
            assert expected_roc_auc(p) == pytest.approx(want, abs=1e-12)


def _blended_bundle(small_demo, demo_config, tmp_path, monkeypatch):
    """A saved and loaded model that blends LightGBM with the linear part (trained on two demo cohorts)."""
    from risk_model import train as train_module

    monkeypatch.setattr(train_module, "BLENDS", (0.5,))
    history = small_demo.history[small_demo.history.cohort.isin(["2019", "2020"])]
    result = train_module.train(
        validate(history, demo_config.dataset, stage="train"), demo_config, progress=lambda _: None
    )
    assert result.model.linear is not None
    registry = Registry(tmp_path)
    return registry.load(registry.save(result, demo_config), contract=demo_config.dataset)


def test_a_blended_model_scores_records_as_the_frame_path(small_demo, demo_config, tmp_path, monkeypatch):
    """The per-record path applies the linear half of a blend from the records' lists (no frame): the same
    probabilities as the frame path, with missing numbers, unseen and missing categories."""
    import json as json_module

    from test_fast_score import mixed_records

    from risk_model.schema import check_records
    from risk_model.score import score_rows

    bundle = _blended_bundle(small_demo, demo_config, tmp_path, monkeypatch)
    c = demo_config.dataset
    recs = mixed_records(bundle, c, json_module.loads(small_demo.intake.head(200).to_json(orient="records")))
    frame = validate(pd.DataFrame(recs), c, stage="score", source="request")
    p_frame, f_frame = probabilities(bundle, frame, c, ScoringConfig(), progress=lambda m: None)
    p_rows, f_rows, _ = score_rows(bundle, check_records(recs, c, source="request"), ScoringConfig())
    assert np.max(np.abs(p_rows - p_frame)) <= 1e-9 and f_rows == f_frame
    one, _, _ = score_rows(bundle, check_records(recs[:1], c, source="request"), ScoringConfig())
    assert abs(one[0] - p_frame[0]) <= 1e-9


def test_a_blended_model_explains_the_blended_score(small_demo, demo_config, tmp_path, monkeypatch):
    """A blend's factors come from both halves: per student the contributions and the expected value add up
    to the blended log-odds (LightGBM's alone add up to its half only), and the student explained later
    (`explain_inputs`) gets the factors the scoring pass gives."""
    from risk_model.score import _linear_input, contributions, explain, explain_inputs, model_input, pending_inputs

    bundle = _blended_bundle(small_demo, demo_config, tmp_path, monkeypatch)
    linear, weight = bundle.linear
    assert linear is not None and weight == 0.5 and set(linear.centre) == {*linear.numeric, *linear.categorical}
    frame = validate(small_demo.intake.head(300), demo_config.dataset, stage="score")
    X, given = model_input(bundle, frame), _linear_input(frame, bundle)
    trees = bundle.booster.predict(X, raw_score=True)
    blended = weight * trees + (1 - weight) * linear.logit(given)
    contrib = contributions(bundle, X, given, 1)
    np.testing.assert_allclose(contrib.sum(axis=1), blended, atol=1e-9)
    assert np.max(np.abs(bundle.booster.predict(X, pred_contrib=True).sum(axis=1) - blended)) > 0.05
    found = explain(bundle, frame, 3)
    assert explain_inputs(bundle, pending_inputs(bundle, frame, 3)) == found
    # the factors are the blend's top contributions, in its order
    top = np.argsort(-np.abs(contrib[:, :-1]), axis=1)[:, :3]
    assert [[f["feature"] for f in row] for row in found] == [[bundle.features[j] for j in r] for r in top.tolist()]
