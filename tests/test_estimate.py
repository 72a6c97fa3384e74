"""Expected performance before outcomes (CBPE) and the promise about an intake: hand-computed cases,
a simulation where probabilities are right, and the demo intake with covariate shift only."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from risk_model import evaluate
from risk_model.estimate import expected_performance, expected_recall_top_k, expected_roc_auc
from risk_model.promise import drifted_weight, make_promise


def test_expected_auc_by_hand():
    # each student counts as at risk with weight p and as fine with weight 1 - p; the weight of pairs
    # (at risk ranked above fine, ties half) over the weight of all pairs, written out term by term
    p = np.array([0.9, 0.5, 0.1])
    correctly_ordered = 0.9 * 0.5 + 0.9 * 0.9 + 0.5 * 0.9 * 0.1 + 0.5 * 0.9 + 0.5 * 0.5 * 0.5 + 0.5 * 0.1 * 0.9
    assert expected_roc_auc(p) == pytest.approx(correctly_ordered / (1.5 * 1.5))
    assert expected_roc_auc(np.array([0.2, 0.2])) == pytest.approx(0.5)


def test_expected_recall_and_rate_by_hand():
    p = np.array([0.9, 0.5, 0.1, 0.1])
    assert expected_recall_top_k(p, 25) == pytest.approx(0.9 / 1.6)  # top 25% of 4 = 1 student
    est = expected_performance(p, 50)
    assert est["at_risk_rate"] == pytest.approx(0.4) and est["recall_top_k"] == pytest.approx(1.4 / 1.6)
    # with the ranks scoring has already computed (the tie at 0.1 broken either way): the same figures
    assert expected_performance(p, 50, rank=np.array([1, 2, 4, 3])) == est
    assert expected_recall_top_k(p, 75, rank=np.array([1, 2, 4, 3])) == pytest.approx(1.5 / 1.6)


def test_estimate_matches_realised_auc_when_probabilities_are_right():
    rng = np.random.default_rng(0)
    for shift in (0.0, -1.0):  # the same mechanism on two different mixes of students
        x = rng.normal(shift, 1.0, 20_000)
        p = 1 / (1 + np.exp(-(1.5 * x - 0.5)))
        y = rng.random(len(p)) < p
        assert expected_roc_auc(p) == pytest.approx(roc_auc_score(y, p), abs=0.01)


def test_estimate_is_blind_to_a_changed_mechanism():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 20_000)
    p = 1 / (1 + np.exp(-(1.5 * x - 0.5)))  # what the model believes
    y = rng.random(len(p)) < 1 / (1 + np.exp(-(0.3 * x - 0.5)))  # what now happens
    assert expected_roc_auc(p) - roc_auc_score(y, p) > 0.15  # the outcomes report must catch this


METRICS = {
    "cv": {
        "lightgbm": {
            "2019": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.81},
            "2020": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.83},
            "2021": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.85},
        }
    },
    "backtest": {
        "lightgbm": {
            "2020": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.80},
            "2021": {"n": 2000, "base_rate": 0.3, "roc_auc": 0.84},
            "all": {"n": 4000, "base_rate": 0.3, "roc_auc": 0.82},
        }
    },
}


def test_promise_spans_backtest_and_intake_estimate_with_noise():
    p = make_promise(METRICS, {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.79})
    assert p.centre == pytest.approx(0.82) and p.estimate == pytest.approx(0.79)
    assert p.status == "holds" and p.low < 0.79 and p.high > 0.82
    assert p.noise_sd == pytest.approx(evaluate.auc_standard_error(0.82, 300, 700))
    assert p.contains(0.80) and not p.contains(0.70)
    assert f"{p.low:.2f}-{p.high:.2f}" in p.text


def test_promise_widened_then_withdrawn_by_weight_of_drifted_features():
    importance = {"a": 70.0, "b": 20.0, "c": 10.0}
    assert drifted_weight(importance, {"b": True, "c": True}) == pytest.approx(0.3)
    base = make_promise(METRICS, {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.8}, importance=importance)
    widened = make_promise(
        METRICS, {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.8}, importance=importance, drifted={"b": True}
    )
    assert widened.status == "widened" and widened.high - widened.low > base.high - base.low
    assert "Widened: features carrying 20%" in widened.text
    gone = make_promise(
        METRICS, {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.8}, importance=importance, drifted={"a": True}
    )
    assert gone.status == "withdrawn" and not gone.contains(0.8) and gone.text.startswith("No promise")
    # many drifted columns of little weight do not withdraw it: weight, not count
    few = make_promise(
        METRICS,
        {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.8},
        importance={"a": 90.0, **{f"x{i}": 1.0 for i in range(10)}},
        drifted={f"x{i}": True for i in range(10)},
    )
    assert few.status == "holds"


def test_drift_as_large_as_between_past_cohorts_keeps_the_promise_only_more_withdraws_it():
    """Past cohorts drifted from each other and the range's cohort-to-cohort spread already carries what
    that did: only drift beyond it widens or withdraws, compared in the whole percents printed."""
    importance = {"a": 60.0, "b": 25.0, "c": 15.0}
    intake = {"n": 1000, "at_risk_rate": 0.3, "roc_auc": 0.8}
    plain = make_promise(METRICS, intake, importance=importance)
    usual = make_promise(METRICS, intake, importance=importance, drifted={"a": True}, usual=0.55)
    assert usual.status == "holds" and (usual.low, usual.high) == (plain.low, plain.high)
    assert "drifted; past cohorts drifted from each other by up to 55%" in usual.text
    assert usual.usual_drifted_weight == 0.55 and usual.drifted_weight == pytest.approx(0.6)
    # 15 points beyond what past cohorts showed: fewer than the 20 that widen, and the words say so
    near = make_promise(METRICS, intake, importance=importance, drifted={"a": True}, usual=0.45)
    assert near.status == "holds" and (near.low, near.high) == (plain.low, plain.high)
    assert "the 15 points beyond that are fewer than the 20 that widen the range" in near.text
    # 85% drifted where 60% is usual: 25 points beyond, widened (and the text gives both figures)
    more = make_promise(METRICS, intake, importance=importance, drifted={"a": True, "b": True}, usual=0.6)
    assert more.status == "widened" and "drifted, against at most 60% between past cohorts." in more.text
    # the same 60% with nothing drifting between past cohorts: withdrawn, as without the measure
    alone = make_promise(METRICS, intake, importance=importance, drifted={"a": True}, usual=0.0)
    assert (
        alone.status == "withdrawn" == make_promise(METRICS, intake, importance=importance, drifted={"a": True}).status
    )
    # compared at the printed rounding: 79.6% beyond 59.7% prints 80% and 60%, a 20-point gap: widened
    edge = make_promise(METRICS, intake, importance={"a": 79.6, "b": 20.4}, drifted={"a": True}, usual=0.597)
    assert edge.status == "widened" and "80%" in edge.text and "60%" in edge.text
