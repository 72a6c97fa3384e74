"""Factors that say why (with the student's value and a typical one) and one ranking per cohort."""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk_model.explain import factor_text, format_value
from risk_model.registry import Registry
from risk_model.score import score


def test_factor_text_shows_value_comparison_and_direction():
    f = {"feature": "score_mean", "direction": "raises", "value": 42.0}
    assert factor_text(f, "average assessment score so far", typical=71.0) == (
        "average assessment score so far: 42 (typical: 71), raises risk"
    )
    coded = {"feature": "Tuition fees up to date", "direction": "raises", "value": "0"}
    assert factor_text(coded, "Tuition fees up to date", value_label="no") == "Tuition fees up to date: no, raises risk"
    missing = {"feature": "early", "direction": "raises", "value": None}
    assert factor_text(missing, "score in the first assessment", typical=60.0) == (
        "score in the first assessment: not recorded, raises risk"
    )
    # a label with brackets keeps its own and gets no second pair
    units = {"feature": "u", "direction": "lowers", "value": 6.0}
    assert (
        factor_text(units, "Curricular units 1st sem (approved)")
        == "Curricular units 1st sem (approved): 6, lowers risk"
    )


def test_values_read_as_people_write_them():
    assert [format_value(v) for v in (42.0, 3.5, 0.2712, 1250.4, 12.25, "BTEC", float("nan"))] == [
        "42",
        "3.5",
        "0.27",
        "1250",
        "12.2",
        "BTEC",
        "not recorded",
    ]


def test_scored_factors_carry_their_text(trained_home, demo_config):
    bundle = Registry(trained_home["settings"].registry_dir).load()
    res = score(bundle, trained_home["intake"].head(50), demo_config.dataset, demo_config.scoring)
    labels = demo_config.dataset.feature_labels
    for factors in res.scores.factors:
        for f in factors:
            assert f["text"].startswith(labels.get(f["feature"], f["feature"]) + ": ")
            assert f["text"].endswith(f"{f['direction']} risk")
    gpa = [f for fs in res.scores.factors for f in fs if f["feature"] == "prior_gpa" and f["value"] is not None]
    assert gpa and all("(typical: " in f["text"] for f in gpa)


def test_two_cohorts_in_one_file_are_ranked_and_tiered_apart(trained_home, demo_config):
    bundle = Registry(trained_home["settings"].registry_dir).load()
    a = trained_home["intake"].head(400)
    b = trained_home["intake"].tail(200).assign(cohort="2024")
    both = pd.concat([a, b], ignore_index=True)
    res = score(bundle, both, demo_config.dataset, demo_config.scoring, factors=False)
    alone = score(bundle, b.reset_index(drop=True), demo_config.dataset, demo_config.scoring, factors=False)
    s = res.scores
    for cohort, n in (("2023", 400), ("2024", 200)):
        part = s[s.cohort == cohort]
        assert sorted(part["rank"]) == list(range(1, n + 1))  # each cohort ranked on its own
        assert (part.tier == "high").sum() == round(0.10 * n)  # capacity per cohort, not of the pooled file
    pd.testing.assert_series_equal(
        s[s.cohort == "2024"].set_index("student_id").tier, alone.scores.set_index("student_id").tier
    )
    assert set(res.summary["by_cohort"]) == {"2023", "2024"}
    assert 0.5 < res.summary["by_cohort"]["2024"]["expected"]["roc_auc"] < 1
    assert np.isclose(res.summary["by_cohort"]["2024"]["expected"]["at_risk_rate"], alone.scores.probability.mean())
