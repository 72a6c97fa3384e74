"""The staff reports: verdicts that say what was planted in the data, numbers that match a
direct computation, pages that need nothing from the network and hold no student row."""

from __future__ import annotations

import json
import re
import shutil
from html import unescape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from reports.generalization import build_generalization_report
from reports.index import build_index
from risk_model import evaluate, store
from risk_model.bootstrap import _weighted, bootstrap_metrics, calibration_curve, paired_auc_difference
from risk_model.config import ReportConfig, TrainingConfig
from risk_model.fairness import OTHER, Z, column_report, merge_small_groups

REPORTS = ("intake_drift", "outcomes", "generalization", "fairness")


# ------------------------------------------------------------------------------------ statistics


@pytest.mark.parametrize("n,ties", [(37, True), (600, True), (2000, False)])
def test_weighted_metrics_with_unit_weights_equal_scikit_learn(n, ties):
    rng = np.random.default_rng(n)
    p = rng.random(n)
    if ties:
        p = p.round(1)
    y = (rng.random(n) < p).astype(float)
    order = np.lexsort((-np.arange(n), p))
    ys, ps = y[order], p[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    n_top = int(np.ceil(n * 0.1))
    got = _weighted(np.ones((1, n)), ys, ps, starts, n_top, np.array([0, n // 2]))
    assert got["roc_auc"][0] == pytest.approx(roc_auc_score(y, p))
    assert got["pr_auc"][0] == pytest.approx(average_precision_score(y, p))
    assert got["brier"][0] == pytest.approx(brier_score_loss(y, p))
    assert got["recall_top_k"][0] == pytest.approx(evaluate.recall_at_top_k(y, p, 10))
    if not ties:  # (tied risks may fall on either side of the group edge)
        assert got["ece"][0] == pytest.approx(evaluate.expected_calibration_error(y, p, n_bins=2))


def test_paired_auc_difference_is_sklearns_and_pairing_narrows_it():
    rng = np.random.default_rng(1)
    n = 3000
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-signal))).astype(int)
    better, worse = signal + rng.normal(0, 0.5, n), signal + rng.normal(0, 0.6, n)  # close, strongly correlated
    r = paired_auc_difference(y, better, np.round(worse, 1), n_boot=300)  # rounding makes ties
    assert r["value"] == pytest.approx(roc_auc_score(y, better) - roc_auc_score(y, np.round(worse, 1)))
    assert r["low"] <= r["value"] <= r["high"]
    # Unpaired, each AUC alone is uncertain by more than the whole paired interval's width.
    alone = bootstrap_metrics(y, better, k_percent=10, n_boot=300)["metrics"]["roc_auc"]
    assert r["high"] - r["low"] < alone["high"] - alone["low"]
    same = paired_auc_difference(y, better, better * 2 + 1, n_boot=50)  # same ranking: no difference at all
    assert same == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_bootstrap_intervals_cover_the_value_and_shrink_with_more_students():
    rng = np.random.default_rng(0)
    widths = []
    for n in (400, 6400):
        p = rng.random(n)
        y = (rng.random(n) < p).astype(int)
        r = bootstrap_metrics(y, p, k_percent=10, n_boot=200, n_bins=5)
        for m in ("roc_auc", "pr_auc", "brier", "recall_top_k", "ece"):
            v = r["metrics"][m]
            assert v["low"] <= v["value"] <= v["high"], (m, v)
        assert r["metrics"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(y, p))
        assert [c["n"] for c in r["calibration"]] == [n // 5] * 5
        # well calibrated by construction: each bin's interval holds its mean predicted risk (or nearly)
        assert (
            sum(c["observed_low"] - 0.03 <= c["mean_predicted"] <= c["observed_high"] + 0.03 for c in r["calibration"])
            >= 4
        )
        widths.append(r["metrics"]["roc_auc"]["high"] - r["metrics"]["roc_auc"]["low"])
    assert widths[1] < widths[0] / 2.5  # about 1/sqrt(16) = 1/4


def test_calibration_curve_bins_have_equal_size():
    p = np.linspace(0, 1, 100)
    curve = calibration_curve((p > 0.5).astype(int), p, 4)
    assert [c["n"] for c in curve] == [25] * 4
    assert [c["observed"] for c in curve] == [0, 0, 1, 1]


# ------------------------------------------------------------------------------------ fairness units


def test_small_groups_are_merged_and_hidden_when_still_small():
    s = pd.Series(["A"] * 50 + ["B"] * 40 + ["C"] * 20 + ["D"] * 15 + [None] * 3)
    merged, info = merge_small_groups(s, 30)
    assert merged.value_counts().to_dict() == {"A": 50, "B": 40, OTHER: 38}
    assert info["merged"] == ["(missing)", "C", "D"] and info["hidden"] == 0
    merged, info = merge_small_groups(pd.Series(["A"] * 50 + ["B"] * 10 + ["C"] * 5), 30)
    assert merged.isna().sum() == 15 and info["hidden"] == 15
    assert set(merged.dropna()) == {"A"}


def _two_groups(rng, n: int, noisy_b: bool):
    g = np.where(rng.random(n) < 0.5, "A", "B")
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(int)
    risk = np.where((g == "B") & noisy_b, rng.permutation(p), p)  # B: the scores carry no information
    flagged = np.zeros(n, dtype=int)
    flagged[np.argsort(-risk)[: n // 10]] = 1
    return y, risk, flagged, pd.Series(g)


def test_fairness_flags_and_names_a_planted_gap():
    rng = np.random.default_rng(3)
    y, risk, flagged, g = _two_groups(rng, 4000, noisy_b=True)
    r = column_report(y, risk, flagged, g, min_group_size=30, fairness_gap=0.1, calibration_gap=0.05)
    assert "roc_auc" in r["to_review"] and "tpr" in r["to_review"]
    assert r["gaps"]["roc_auc"]["low_group"] == "B" and r["gaps"]["tpr"]["low_group"] == "B"
    rows = {row["group"]: row for row in r["groups"]}
    b = (g == "B").to_numpy()
    assert rows["B"]["students"] == b.sum()
    assert rows["B"]["roc_auc"] == pytest.approx(roc_auc_score(y[b], risk[b]))
    assert rows["B"]["tpr"] == pytest.approx(flagged[b & (y == 1)].mean())
    assert rows["B"]["fpr"] == pytest.approx(flagged[b & (y == 0)].mean())
    assert rows["B"]["mean_predicted"] == pytest.approx(risk[b].mean())


def test_fairness_does_not_flag_groups_served_alike():
    rng = np.random.default_rng(4)
    y, risk, flagged, g = _two_groups(rng, 4000, noisy_b=False)
    r = column_report(y, risk, flagged, g, min_group_size=30, fairness_gap=0.1, calibration_gap=0.05)
    assert r["to_review"] == []


def test_a_small_group_with_a_large_difference_is_not_flagged_by_chance_alone():
    rng = np.random.default_rng(5)
    y, risk, flagged, g = _two_groups(rng, 2000, noisy_b=False)
    g = pd.Series(np.where(np.arange(2000) < 40, "tiny", "big"))
    r = column_report(y, risk, flagged, g, min_group_size=30, fairness_gap=0.01, calibration_gap=0.01)
    for metric in r["to_review"]:
        assert r["gaps"][metric]["gap"] > Z * r["gaps"][metric]["se"]  # flagged only beyond chance
    assert r["to_watch"]  # above the (tiny) thresholds, but a group of 40 cannot tell it from chance
    for metric in r["to_watch"]:
        assert r["gaps"][metric]["gap"] <= Z * r["gaps"][metric]["se"]


# ------------------------------------------------------------------------------------ generalization unit


def _metadata(train_auc: float, val_auc: float) -> dict:
    by = {
        c: {
            "n": 100,
            "base_rate": 0.3,
            "roc_auc": val_auc,
            "pr_auc": 0.5,
            "brier": 0.2,
            "log_loss": 0.5,
            "recall_top_k": 0.3,
        }
        for c in ("2021", "2022")
    }
    train = {c: {**v, "roc_auc": train_auc} for c, v in {"2020": by["2021"], **by}.items()}
    return {
        "version": "v1",
        "training_cohorts": ["2020", "2021", "2022"],
        "top_k_percent": 10,
        "metrics": {
            "train": {"lightgbm": {**train, "all": train["2020"]}},
            "cv": {"lightgbm": by, "logistic": by, "base_rate": by},
            "backtest": {
                "lightgbm": by,
                "logistic": {c: {**v, "roc_auc": 0.7} for c, v in by.items()},
                "base_rate": {c: {**v, "roc_auc": 0.5} for c, v in by.items()},
            },
        },
        "summary": {
            "train_auc": train_auc,
            "validation_auc": val_auc,
            "validation": "backtest",
            "logistic_auc": 0.7,
            "cv_auc": val_auc,
        },
    }


@pytest.mark.parametrize(
    "train_auc,val_auc,word,warning",
    [(0.96, 0.78, "overfits", True), (0.60, 0.58, "underfits", True), (0.83, 0.80, "generalizes", False)],
)
def test_generalization_verdict_states_the_fit_with_its_gap(tmp_path, train_auc, val_auc, word, warning):
    t = TrainingConfig()
    r = build_generalization_report(_metadata(train_auc, val_auc), t, ReportConfig(), tmp_path, cohort="2023")
    assert r["status"] == word and r["warning"] is warning
    assert r["verdict"].startswith(f"The model {word}")
    assert f"{train_auc:.2f}" in r["verdict"] and f"{val_auc:.2f}" in r["verdict"]
    assert r["evidence"]["gap"] == pytest.approx(train_auc - val_auc)
    assert [p["n_cohorts"] for p in r["learning_curve"]] == [1, 2]
    assert json.loads((tmp_path / "generalization.json").read_text())["verdict"] == r["verdict"]


# ------------------------------------------------------------------------------------ the reports on demo data


def test_intake_verdict_says_what_was_planted(built_reports):
    planted = built_reports["planted"]["reports"]["intake_drift"]
    assert planted["warning"] and planted["verdict"].startswith("Drift detected")
    assert {"entry_points", "prior_gpa"} <= set(planted["drifted_features"])
    assert planted["drift_share"] >= ReportConfig().drift_share
    clean = built_reports["clean"]["reports"]["intake_drift"]
    assert not clean["warning"] and clean["verdict"].startswith("No drift")
    assert clean["drift_share"] < ReportConfig().drift_share


def test_intake_report_names_empty_columns_instead_of_failing(demo_config, small_demo, tmp_path):
    """A feature with no value anywhere (OULAD's weighted score on day 0: nothing due yet) is
    named as not compared; one emptied only in the intake is drift, not a crash."""
    from reports.intake import build_intake_report

    c = demo_config.dataset
    rng = np.random.default_rng(0)
    ref = small_demo.history.assign(risk=rng.uniform(size=len(small_demo.history)), early_assessment_score=np.nan)
    cur = small_demo.history.sample(1000, random_state=1).assign(
        risk=rng.uniform(size=1000), early_assessment_score=np.nan, vle_hours_per_week=np.nan
    )
    out = build_intake_report(ref, cur, c, ReportConfig(), tmp_path, cohort="2099", model_version="v")
    assert out["not_compared"] == ["early_assessment_score"]
    assert "early_assessment_score" not in out["features"]
    assert out["features"]["vle_hours_per_week"]["empty_in"] == "intake"
    assert "vle_hours_per_week" in out["drifted_features"]
    html = (tmp_path / "intake_drift.html").read_text()
    assert f"Not compared, no values in training or in this intake: {c.label('early_assessment_score')}" in html


def test_a_feature_of_the_whole_cohort_is_drift_only_when_its_value_is_new(demo_config, small_demo, tmp_path):
    """A feature with one value per training cohort (the month a cohort starts) always differs between one
    intake and the pooled cohorts: drift only if the intake's value was never seen in training."""
    from reports.intake import build_intake_report

    c = demo_config.dataset
    f = c.categorical[0]
    hist = small_demo.history
    months = dict(zip(sorted(hist[c.cohort_column].unique()), ["February", "October"] * 10, strict=False))
    rng = np.random.default_rng(0)
    ref = hist.assign(risk=rng.uniform(size=len(hist)), **{f: hist[c.cohort_column].map(months)})
    cur = hist.sample(1000, random_state=1).assign(risk=rng.uniform(size=1000))
    importance = {x: (100.0 if x == f else 1.0) for x in c.features}
    same = build_intake_report(
        ref, cur.assign(**{f: "October"}), c, ReportConfig(), tmp_path / "same", cohort="2099", model_version="v"
    )
    assert same["features"][f] == {
        "method": "cohort attribute: a value seen in training",
        "score": 0.0,
        "threshold": None,
        "drifted": False,
    }
    assert f not in same["drifted_features"]
    new = build_intake_report(
        ref, cur.assign(**{f: "June"}), c, ReportConfig(), tmp_path / "new", cohort="2099", model_version="v"
    )
    assert new["features"][f]["drifted"] and new["drifted_features"][0] == f
    assert "a value never seen in training" in (tmp_path / "new" / "intake_drift.html").read_text()
    # the promise discounts what the model leans on only when it drifted
    from risk_model.promise import drifted_weight

    drifted = {x: v["drifted"] for x, v in same["features"].items()}
    assert (
        drifted_weight(importance, drifted)
        < 0.5
        <= drifted_weight(importance, {x: v["drifted"] for x, v in new["features"].items()})
    )


def test_the_promise_counts_only_drift_beyond_what_past_cohorts_showed(demo_config, small_demo, tmp_path):
    """An intake that differs from the pooled past cohorts as much as they differ from each other keeps its
    promise (the cohort-to-cohort spread already carries that) and the verdict says so; the same drift with
    no such measure widens it, and drift far beyond it withdraws it."""
    from reports.intake import build_intake_report

    c = demo_config.dataset
    hist, num = small_demo.history, c.numeric_features
    cohorts = c.sort_cohorts(hist[c.cohort_column])
    step = hist[c.cohort_column].astype(str).map({k: i for i, k in enumerate(cohorts)})
    # each past cohort further along every numeric feature
    moving = hist.assign(**{f: hist[f] + step * 3 * hist[f].std() for f in num})
    rng = np.random.default_rng(0)
    ref = moving.assign(risk=rng.uniform(size=len(hist)))
    importance = {f: (0.4 / len(num) if f in num else 0.6 / len(c.categorical)) for f in c.features}
    by_cohort = {
        k: {"n": 800, "base_rate": 0.3, "roc_auc": a} for k, a in zip(cohorts, [0.78, 0.8, 0.81, 0.79], strict=True)
    }
    metrics = {"cv": {"lightgbm": by_cohort}, "backtest": {"lightgbm": dict(list(by_cohort.items())[1:])}}

    def report(reference: pd.DataFrame, cur: pd.DataFrame, name: str) -> dict:
        return build_intake_report(
            reference,
            cur.assign(risk=rng.uniform(size=len(cur))),
            c,
            ReportConfig(),
            tmp_path / name,
            cohort="2099",
            model_version="v",
            metrics=metrics,
            importance=importance,
        )

    latest = moving[step == len(cohorts) - 1]
    like_past = report(ref, latest, "like_past")
    assert set(like_past["usual_drift"]) == set(cohorts[-3:])
    p = like_past["promise"]
    assert set(num) <= set(like_past["drifted_features"]) and p["drifted_weight"] == pytest.approx(0.4)
    usual = p["usual_drifted_weight"]
    assert usual >= p["drifted_weight"] and usual == pytest.approx(max(like_past["usual_drift"].values()))
    assert p["status"] == "holds" and f"past cohorts drifted from each other by up to {usual:.0%}" in p["text"]
    # the verdict above the range does not doubt it: drift is named, and that past cohorts moved as much
    assert like_past["verdict"].startswith("Drift detected") and "Past cohorts differed" in like_past["verdict"]
    assert "may no longer hold" not in like_past["verdict"]
    unmeasured = report(ref.drop(columns=c.cohort_column), latest, "unmeasured")
    assert unmeasured["usual_drift"] == {} and unmeasured["promise"]["status"] == "widened"
    assert "may no longer hold" in unmeasured["verdict"]
    rare = {f: hist[f].value_counts().index[-1] for f in c.categorical}  # every student in the rarest group
    far = report(ref, latest.assign(**rare), "far")
    assert far["promise"]["drifted_weight"] - usual >= 0.5 and far["promise"]["status"] == "withdrawn"
    assert f"against at most {usual:.0%} between past cohorts" in far["promise"]["text"]
    assert "may no longer hold" in far["verdict"]


def test_past_cohort_drift_is_measured_once_per_model_version(demo_config, small_demo, tmp_path, monkeypatch):
    """The drift between past cohorts depends only on the model version and the settings: kept at `usual_path`,
    a second report reads it instead of running Evidently again; other report settings, other importance or
    a damaged file measure again."""
    import reports.intake as intake

    c = demo_config.dataset
    rng = np.random.default_rng(3)
    ref = small_demo.history.assign(risk=rng.uniform(size=len(small_demo.history)))
    importance = {f: 1.0 for f in c.features}
    path = tmp_path / "cache" / "v.json"
    runs: list[int] = []
    measured = intake.usual_drift

    def counted(*args, **kwargs):
        runs.append(1)
        return measured(*args, **kwargs)

    monkeypatch.setattr(intake, "usual_drift", counted)
    first = intake.usual_drift_kept(path, ref, c, ReportConfig(), importance)
    assert len(runs) == 1 and set(first) == set(c.sort_cohorts(ref[c.cohort_column])[-3:])
    assert intake.usual_drift_kept(path, ref, c, ReportConfig(), importance) == first and len(runs) == 1
    intake.usual_drift_kept(path, ref, c, ReportConfig(drift_share=0.9), importance)
    assert len(runs) == 2  # other settings: measured again (and kept in their place)
    intake.usual_drift_kept(path, ref, c, ReportConfig(drift_share=0.9), {**importance, c.features[0]: 2.0})
    assert len(runs) == 3
    assert intake.usual_drift_kept(path, ref, c, ReportConfig(), importance) == first and len(runs) == 4
    assert intake.usual_drift_kept(path, ref, c, ReportConfig(), importance) == first and len(runs) == 4
    path.write_text('{"key": ')  # a crash can't leave this (written via a rename), a disk fault can
    assert intake.usual_drift_kept(path, ref, c, ReportConfig(), importance) == first and len(runs) == 5
    assert intake.usual_drift_kept(path, ref, c, ReportConfig(), importance) == first and len(runs) == 5


def test_the_numbers_only_drift_measure_gives_the_pages_numbers(demo_config, small_demo):
    """`usual_drift` runs Evidently without the data-drift preset's page: the same tests must come out, column
    by column (method, score, threshold, verdict), on an intake with planted drift."""
    from reports.intake import measure

    c = demo_config.dataset
    rng = np.random.default_rng(2)
    ref = small_demo.history.assign(risk=rng.uniform(size=len(small_demo.history)))
    cur = small_demo.intake.assign(risk=rng.uniform(0.2, 1, size=len(small_demo.intake)))
    with_page, _ = measure(ref, cur, c, ReportConfig())
    numbers, _ = measure(ref, cur, c, ReportConfig(), page=False)
    assert with_page["drifted_features"] and 0 < len(with_page["drifted_features"]) < len(with_page["features"])
    assert numbers == with_page


def _real(variant: dict) -> pd.DataFrame:
    engine = store.connect(variant["settings"].resolved_store_url)
    try:
        scores = store.read_scores(engine, variant["cohort"], "default")
    finally:
        engine.dispose()
    outcomes = variant["demo"].outcomes
    y = outcomes.set_index("student_id")["outcome"].isin(["fail", "withdrawn"]).astype(int)
    return scores.assign(at_risk=scores.student_id.map(y))


def test_outcomes_report_says_the_planted_drop_with_the_right_numbers(built_reports, demo_config):
    v = built_reports["planted"]
    r = v["reports"]["outcomes"]
    real = _real(v)
    assert r["n_students"] == len(real) == 800
    assert r["real"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(real.at_risk, real.probability))
    assert r["real"]["brier"]["value"] == pytest.approx(brier_score_loss(real.at_risk, real.probability), abs=1e-9)
    assert r["base_rate"] == pytest.approx(real.at_risk.mean())
    promised = r["promised"]["metrics"]["roc_auc"]["value"]
    assert promised == pytest.approx(v["reports"]["generalization"]["evidence"]["validation_auc"])
    auc = r["real"]["roc_auc"]
    assert auc["low"] < auc["value"] < auc["high"] < promised
    assert promised - auc["value"] > demo_config.reports.performance_drop
    assert r["status"] == "dropped" and r["warning"]
    assert r["verdict"].startswith("Performance dropped") and f"{auc['value']:.2f}" in r["verdict"]
    assert f"{promised:.2f} promised" in r["verdict"]
    # Evidently's own ROC AUC on the same students agrees
    assert r["evidently"]["RocAuc"] == pytest.approx(auc["value"], abs=1e-6)


def test_outcomes_report_says_generalized_when_nothing_was_planted(built_reports, demo_config):
    r = built_reports["clean"]["reports"]["outcomes"]
    auc, promised = r["real"]["roc_auc"], r["promised"]["metrics"]["roc_auc"]["value"]
    assert r["status"] == "generalized" and not r["warning"]
    assert r["verdict"].startswith("The model generalized")
    assert promised - auc["value"] < demo_config.reports.performance_drop
    assert auc["low"] <= auc["value"] <= auc["high"]
    # calibrated on a cohort like the past ones: predicted and observed rates agree within a few points
    assert abs(r["mean_predicted"] - r["base_rate"]) < 0.05


def test_generalization_report_on_demo_data(built_reports):
    planted = built_reports["planted"]["reports"]
    g = planted["generalization"]
    md_bt = g["by_cohort"]
    assert g["warning"] and g["verdict"].startswith("The model did not generalize to 2023")
    assert g["evidence"]["new_auc"] == pytest.approx(planted["outcomes"]["real"]["roc_auc"]["value"])
    assert [p["n_cohorts"] for p in g["learning_curve"]] == [1, 2, 3, 4]
    assert g["learning_curve"][-1]["new"] == pytest.approx(g["evidence"]["new_auc"])
    backtest = {r["cohort"]: r["backtest"] for r in md_bt if r.get("backtest") is not None}
    assert [p["lightgbm"] for p in g["learning_curve"][:3]] == [backtest[c] for c in ("2020", "2021", "2022")]
    clean = built_reports["clean"]["reports"]["generalization"]
    assert not clean["warning"] and clean["verdict"].startswith("The model generalizes")
    assert "in line with validation" in clean["verdict"]


def test_generalization_report_measures_the_new_cohort_itself_when_not_given_the_outcomes(
    built_reports, demo_config, tmp_path
):
    from reports import build
    from risk_model.config import Settings

    v = built_reports["planted"]
    settings = Settings(home=tmp_path / "runtime")
    shutil.copytree(v["settings"].home, settings.home)
    g = build.generalization_report(settings, demo_config, v["cohort"])
    real = v["reports"]["outcomes"]["real"]["roc_auc"]
    assert g["evidence"]["new_auc"] == pytest.approx(real["value"])
    assert g["new_cohort"]["low"] == pytest.approx(real["low"], abs=0.01)
    assert g["new_cohort"]["high"] == pytest.approx(real["high"], abs=0.01)
    assert g["verdict"] == v["reports"]["generalization"]["verdict"]


def test_fairness_report_on_real_outcomes(built_reports, demo_config):
    v = built_reports["clean"]
    f = v["reports"]["fairness"]
    assert "real outcomes" in f["source"] and f["n_students"] == 800
    # nothing planted beyond chance; whatever is above a threshold is named as worth watching
    assert f["verdict"].startswith(("No large gaps", "No clear gaps")) and not f["warning"] and not f["to_review"]
    for col, r in f["columns"].items():
        if r["to_watch"]:
            assert f"{demo_config.dataset.label(col)} (group" in f["verdict"] and "worth watching" in f["verdict"]
    assert set(f["columns"]) == set(demo_config.dataset.sensitive_columns)
    real = _real(v).merge(v["intake"][["student_id", "disability", "gender"]], on="student_id")
    rows = {g["group"]: g for g in f["columns"]["disability"]["groups"]}
    y = real[real.disability == "Y"]
    assert rows["Y"]["students"] == len(y)
    assert rows["Y"]["tpr"] == pytest.approx((y[y.at_risk == 1].tier == "high").mean())
    assert rows["Y"]["mean_predicted"] == pytest.approx(y.probability.mean())
    for col in f["columns"].values():
        shown = sum(g["students"] for g in col["groups"])
        assert shown + col["hidden"] == 800
        assert min(g["students"] for g in col["groups"]) >= demo_config.reports.min_group_size
    # gender X (about 2% of 800) is never shown on its own
    assert "X" not in {g["group"] for g in f["columns"]["gender"]["groups"]}


def test_fairness_report_without_outcomes_uses_the_training_reference(trained_home, demo_config, tmp_path):
    from reports import build
    from risk_model.config import Settings

    settings = Settings(home=tmp_path / "runtime")
    shutil.copytree(trained_home["settings"].home, settings.home)
    f = build.fairness_report(settings, demo_config, trained_home["intake"])
    assert "training cohorts" in f["source"] and "no real outcomes yet" in f["source"]
    assert f["n_students"] == len(_reference(settings))
    html = Path(f["html"]).read_text()
    assert "training cohorts" in html and "out-of-fold" in html


def _reference(settings) -> pd.DataFrame:
    from risk_model.registry import Registry

    return Registry(settings.registry_dir).load().reference()


SRCDOC = re.compile(r'\ssrcdoc="([^"]*)"')  # an iframe's document, escaped into the attribute (Evidently's page)


def documents(page: str) -> list[str]:
    """A page and each document of its srcdoc iframes, unescaped: what the browser parses. Read as written,
    Evidently's escaped page could load anything from the network unseen by REMOTE_LOAD."""
    return [SRCDOC.sub(' srcdoc=""', page), *(unescape(d) for d in SRCDOC.findall(page))]


REMOTE_LOAD = re.compile(
    r"""<(?:script|img|iframe|link|source|audio|video|embed|object)\b[^>]*\b(?:src|href|data)\s*=\s*["']?(?:https?:)?//"""
    r"""|\bfetch\(\s*["'](?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import\s+["']?(?:url\()?["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def test_reports_are_self_contained_and_hold_no_student(built_reports):
    for name, v in built_reports.items():
        d = v["demo"]
        ids = set(d.history.student_id) | set(d.intake.student_id)
        files = sorted(v["settings"].reports_dir.rglob("*.*"))
        assert {f"{r}.{ext}" for r in REPORTS for ext in ("html", "json")} <= {f.name for f in files}
        for f in files:
            text = f.read_text(encoding="utf-8")
            leaked = set(re.findall(r"S\d{10}", text)) & ids
            assert not leaked, f"{name}/{f.name} shows student ids {sorted(leaked)[:3]}"
            if f.suffix == ".html":
                remote = [url for doc in documents(text) for url in REMOTE_LOAD.findall(doc)]
                assert not remote, f"{name}/{f.name} loads from the network: {remote[:3]}"
                assert "Content-Security-Policy" in text
        for r in v["reports"].values():
            page = Path(r["html"]).read_text(encoding="utf-8")
            assert 'data-testid="verdict"' in page
            assert json.loads(Path(r["html"]).with_suffix(".json").read_text())["verdict"] == r["verdict"]
            assert r["verdict"].replace("'", "&#x27;") in page


def test_remote_load_pattern_catches_what_a_browser_would_fetch():
    for bad in (
        '<script src="https://cdn.x/y.js">',
        "<img src='//x.org/a.png'>",
        '<link rel=stylesheet href="http://x">',
        "fetch('https://api.x/')",
        "background:url(https://x/y.png)",
        '@import "https://x/y.css"',
    ):
        assert REMOTE_LOAD.search(bad), bad
    for fine in ('<a href="https://plotly.com/">', '"topojsonURL":"https://cdn.plot.ly/"', '<script src="data:,">'):
        assert not REMOTE_LOAD.search(fine), fine
    framed = '<p>x</p><iframe srcdoc="&lt;script src=&quot;https://cdn.x/y.js&quot;&gt;&lt;/script&gt;"></iframe>'
    assert not REMOTE_LOAD.search(framed)  # escaped as written: only the document inside shows it
    assert [bool(REMOTE_LOAD.search(d)) for d in documents(framed)] == [False, True]


def test_index_lists_every_report_newest_first(built_reports, tmp_path):
    index = built_reports["planted"]["index"]
    assert [e["report"] for e in index["reports"]] == list(REPORTS)
    assert index["warning"] and index["verdict"].startswith("Performance dropped")
    assert "2 other reports need attention: Intake drift, Generalization" in index["verdict"]
    html = (built_reports["planted"]["settings"].reports_dir / "index.html").read_text()
    for e in index["reports"]:
        assert f'href="{e["href"]}"' in html
        assert (built_reports["planted"]["settings"].reports_dir / e["href"]).exists()
    assert not built_reports["clean"]["index"]["warning"]
    assert built_reports["clean"]["index"]["verdict"].startswith("The model generalized")
    assert "No other report raised a warning" in built_reports["clean"]["index"]["verdict"]
    # two cohorts and two versions: newest cohort first, then newest version
    for cohort, version, warn in (
        ("2024", "20250101-000000-aaaa", True),
        ("2025", "20250101-000000-aaaa", False),
        ("2025", "20260101-000000-bbbb", False),
        ("2024J", "20250101-000000-aaaa", False),
    ):
        d = tmp_path / cohort / "default" / version
        d.mkdir(parents=True)
        (d / "fairness.html").write_text("<p>page</p>")
        (d / "fairness.json").write_text(
            json.dumps({"report": "fairness", "verdict": f"v {cohort} {version}", "warning": warn})
        )
    got = build_index(tmp_path)
    assert [(e["cohort"], e["version"]) for e in got["reports"]] == [
        ("2025", "20260101-000000-bbbb"),
        ("2025", "20250101-000000-aaaa"),
        ("2024J", "20250101-000000-aaaa"),
        ("2024", "20250101-000000-aaaa"),
    ]
    assert not got["warning"] and got["verdict"].startswith("Cohort 2025: no report raised a warning")
    (tmp_path / "2025" / "default" / "20260101-000000-bbbb" / "fairness.json").write_text(
        json.dumps({"report": "fairness", "verdict": "gap", "warning": True})
    )
    assert (
        "1 of 2 reports needs attention before its risk scores are trusted (Fairness)"
        in build_index(tmp_path)["verdict"]
    )


def test_outcomes_report_samples_a_large_cohort_and_says_so(built_reports, tmp_path):
    from reports.outcomes import build_outcomes_report
    from risk_model.registry import Registry

    bundle = Registry(built_reports["clean"]["settings"].registry_dir).load()
    rng = np.random.default_rng(0)
    p = rng.beta(2, 5, 5000)
    current = pd.DataFrame({"at_risk": (rng.random(5000) < p).astype(int), "risk": p, "tier": "low"})
    cfg = ReportConfig(max_rows=1000, bootstrap=50)
    r = build_outcomes_report(current, bundle.reference(), bundle.metadata, cfg, tmp_path, cohort="2030")
    assert r["sampled"] and r["n_bootstrap_rows"] == 1000 and r["n_students"] == 5000
    assert r["real"]["roc_auc"]["value"] == pytest.approx(roc_auc_score(current.at_risk, p))
    assert "random sample of 1000 of the 5000 students" in (tmp_path / "outcomes.html").read_text()


# ------------------------------------------------------------------------------------ flows and CLI


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _copy(variant: dict, tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path / "runtime"
    shutil.copytree(variant["settings"].home, home)
    shutil.rmtree(home / "reports")
    d = variant["demo"]
    intake, outcomes = tmp_path / "intake.csv", tmp_path / "outcomes.csv"
    d.intake.to_csv(intake, index=False)
    d.outcomes.to_csv(outcomes, index=False)
    return home, intake, outcomes


@pytest.mark.slow
def test_flows_end_in_a_visible_warning_state_and_strict_exits_3(built_reports, tmp_path, prefect_harness):
    from typer.testing import CliRunner

    from cli.main import app
    from risk_model.demo import example_config

    demo_config_path = example_config("demo")
    from flows.pipeline import outcomes_flow, report_flow

    home, intake, outcomes = _copy(built_reports["planted"], tmp_path / "planted")
    state = outcomes_flow(str(demo_config_path), str(outcomes), str(home), "2023", str(intake), return_state=True)
    assert state.name == "Warning" and state.is_completed()
    assert "Performance dropped" in state.message
    out = state.result()
    assert {r["report"] for r in out["reports"]} == {"outcomes", "generalization", "fairness"}
    assert out["recorded"]["by_cohort"]["2023"]["lines"][-1] == "  every outcome matched a scored student"
    assert (home / "reports" / "index.html").exists()
    state = report_flow(str(demo_config_path), str(intake), str(home), "2023", return_state=True)
    assert state.name == "Warning"
    assert {r["report"] for r in state.result()} == set(REPORTS)

    result = CliRunner().invoke(
        app,
        [
            "outcomes",
            "--cohort",
            "2023",
            str(outcomes),
            "--config",
            str(demo_config_path),
            "--home",
            str(home),
            "--strict",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "Performance dropped" in result.output

    home, intake, outcomes = _copy(built_reports["clean"], tmp_path / "clean")
    state = report_flow(str(demo_config_path), str(intake), str(home), "2023", return_state=True)
    assert state.name == "Completed", state.message
    result = CliRunner().invoke(
        app,
        [
            "outcomes",
            "--cohort",
            "2023",
            str(outcomes),
            "--config",
            str(demo_config_path),
            "--home",
            str(home),
            "--strict",
        ],
    )
    assert result.exit_code == 0, result.output
