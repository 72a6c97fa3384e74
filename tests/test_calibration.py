"""Calibration chosen out of time: each candidate judged on cohorts predicted by a model that never saw them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from risk_model import evaluate
from risk_model.calibration import Calibrator, Scores, Step, candidates, choose
from risk_model.promise import make_promise


def _scores(rng: np.random.Generator, n: int, *, slope: float, shift: float = 0.0) -> Scores:
    """Raw scores whose true log-odds are `slope * raw + shift` (slope < 1: the model is overconfident)."""
    raw = rng.normal(0, 2, n)
    return Scores(raw, (rng.random(n) < expit(slope * raw + shift)).astype(int))


def test_temperature_and_sigmoid_recover_a_known_miscalibration():
    rng = np.random.default_rng(0)
    s = _scores(rng, 40_000, slope=0.5)
    assert Calibrator.fit(s.raw, s.y, "temperature").params["t"] == pytest.approx(2.0, rel=0.05)
    sig = Calibrator.fit(s.raw, s.y, "sigmoid").params
    assert sig["a"] == pytest.approx(0.5, abs=0.03) and sig["b"] == pytest.approx(0.0, abs=0.05)
    assert Calibrator.fit(s.raw, s.y, "none")(np.array([0.0, 2.0])) == pytest.approx([0.5, expit(2.0)])
    with pytest.raises(ValueError, match="unknown calibration method 'platt'"):
        Calibrator.fit(s.raw, s.y, "platt")


def test_without_a_past_cohort_predicted_out_of_time_the_models_own_probabilities_stay():
    rng = np.random.default_rng(1)
    c = choose([], _scores(rng, 2000, slope=0.5))
    assert c.name == "none" and c.judged_on == [] and "one past cohort" in c.why
    forced = choose([], _scores(rng, 2000, slope=0.5), "sigmoid-recent")
    assert forced.name == "none" and "needs a past cohort predicted out of time" in forced.why


def test_an_overconfident_model_is_recalibrated_when_every_past_cohort_says_so():
    # the same overconfidence out of time in every backtest cohort: a one-parameter fix earns its place
    rng = np.random.default_rng(2)
    steps = [Step(str(y), _scores(rng, 3000, slope=1.0), _scores(rng, 3000, slope=0.5)) for y in (2021, 2022, 2023)]
    c = choose(steps, _scores(rng, 6000, slope=1.0))
    assert c.name == "temperature-recent", c.why
    assert c.judged_on == ["2022", "2023"]  # the -recent candidates need a cohort before the judged one
    assert c.ece["temperature-recent"] < c.ece["none"] - 0.03
    p = c.calibrator(steps[-1].test.raw)
    assert evaluate.expected_calibration_error(steps[-1].test.y, p) < 0.03


def test_a_recalibration_that_gains_less_than_its_noise_is_not_chosen():
    # out of time the model's own probabilities are right: anything fitted can only match them within noise
    rng = np.random.default_rng(3)
    steps = [Step(str(y), _scores(rng, 2000, slope=1.0), _scores(rng, 2000, slope=1.0)) for y in (2021, 2022, 2023)]
    c = choose(steps, _scores(rng, 4000, slope=1.0))
    assert c.name == "none", c.why
    assert min(c.ece.values()) <= c.ece["none"]  # a fitted one may be a hair lower on these cohorts...
    assert c.why.startswith("the simplest within one standard error")  # ...but not by more than the noise


def test_the_configured_method_is_used_and_still_measured():
    rng = np.random.default_rng(4)
    steps = [Step(str(y), _scores(rng, 2000, slope=1.0), _scores(rng, 2000, slope=0.5)) for y in (2021, 2022)]
    c = choose(steps, _scores(rng, 4000, slope=1.0), "isotonic")
    assert c.name == "isotonic" and c.calibrator.method == "isotonic" and c.why == "set in [training] calibration"
    assert set(c.ece) == set(candidates(steps[0].oof, steps[0].test))


def test_a_single_past_cohort_gives_no_promise_only_the_estimate():
    one = {"cv": {"lightgbm": {"2013B": {"n": 7000, "base_rate": 0.5, "roc_auc": 0.8}}}, "backtest": {}}
    p = make_promise(one, {"n": 7000, "at_risk_rate": 0.45, "roc_auc": 0.85})
    assert p.status == "withdrawn" and math.isnan(p.between_cohort_sd) and not p.contains(0.85)
    assert p.text.startswith("No promise for this intake: the model was validated on a single past cohort")
    assert "expects AUC about 0.85" in p.text


def test_resampled_ece_of_an_unweighted_draw_is_the_plain_ece():
    from risk_model.calibration import _ece_resampled

    rng = np.random.default_rng(5)
    p = rng.random(1000)
    y = (rng.random(1000) < p**2).astype(int)
    low = np.argsort(p)[:500]
    W = np.ones((2, 1000))
    W[1] = 0.0
    W[1, low] = 2.0  # the second resample: the 500 lowest risks, each drawn twice
    got = _ece_resampled(y, p, W)
    assert got[0] == pytest.approx(evaluate.expected_calibration_error(y, p))
    assert got[1] == pytest.approx(evaluate.expected_calibration_error(y[low], p[low]))
