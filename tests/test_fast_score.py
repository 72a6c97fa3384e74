"""The per-record scoring path (`check_records`, `score_rows`) against the frame path built for files
(`validate`, `probabilities`): same values, same probabilities, same factors, same messages."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from risk_model.config import ScoringConfig
from risk_model.features import feature_matrix, over_levels
from risk_model.registry import Registry
from risk_model.schema import ContractError, category_text, check_records, key_text, number, validate
from risk_model.score import (
    booster_out,
    probabilities,
    probability,
    record_codes,
    score_rows,
    unseen_categories,
    unseen_lines,
)


@pytest.fixture(scope="module")
def model(trained_home, demo_config, small_demo):
    bundle = Registry(trained_home["settings"].registry_dir).load(contract=demo_config.dataset)
    records = json.loads(small_demo.intake.head(300).to_json(orient="records"))
    return bundle, demo_config.dataset, records


def mixed_records(bundle, contract, records: list[dict], seed: int = 0) -> list[dict]:
    """Intake records with missing numbers (also of features never missing in training), unseen and
    missing categories, numbers sent for categories, and spaces around text."""
    rng = random.Random(seed)
    out = []
    for i, r in enumerate(records):
        r = dict(r)
        for col in contract.numeric_features:
            if rng.random() < 0.15:
                r[col] = None
        for col in contract.categorical:
            roll = rng.random()
            if roll < 0.1:
                r[col] = None
            elif roll < 0.2:
                r[col] = f"never seen {rng.randint(0, 3)}"
            elif roll < 0.3:
                r[col] = rng.choice([3, 2.5, 0])  # a number where a category belongs
            elif roll < 0.4:
                r[col] = f"  {r[col]} "
        if i % 25 == 0:  # every feature unknown
            r.update({col: None for col in contract.features})
        r[contract.cohort_column] = f" {r[contract.cohort_column]}"
        out.append(r)
    return out


def both_paths(bundle, contract, records: list[dict], factors: bool = True):
    s = ScoringConfig()
    frame = validate(pd.DataFrame(records), contract, stage="score", source="request")
    p_frame, f_frame = probabilities(bundle, frame, contract, s, factors=factors, progress=lambda m: None)
    rows = check_records(records, contract, source="request")
    p_rows, f_rows, unseen = score_rows(bundle, rows, s, factors=factors)
    return frame, (p_frame, f_frame), rows, (p_rows, f_rows), unseen


def test_record_path_gives_the_frame_path_probabilities_and_factors(model):
    bundle, contract, records = model
    records = mixed_records(bundle, contract, records)
    assert bundle.fill, "the demo model should fill some never-missing feature"
    frame, (p_frame, f_frame), rows, (p_rows, f_rows), unseen = both_paths(bundle, contract, records)
    assert len(p_rows) == len(records)
    assert np.max(np.abs(p_rows - p_frame)) <= 1e-9
    assert f_rows == f_frame
    assert unseen == unseen_categories(frame, bundle.levels) and unseen  # the same counts
    assert unseen_lines(unseen) == unseen_lines(unseen_categories(frame, bundle.levels))
    # the typed values too
    for col in frame.columns:
        a, b = frame[col].tolist(), [r[col] for r in rows]
        assert all((x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(a, b, strict=True)), col


def test_record_path_without_factors_and_one_record_at_a_time(model):
    bundle, contract, records = model
    records = mixed_records(bundle, contract, records[:60], seed=1)
    _, (p_frame, f_frame), _, (p_rows, f_rows), _ = both_paths(bundle, contract, records, factors=False)
    assert np.max(np.abs(p_rows - p_frame)) <= 1e-9 and f_rows == f_frame == [[] for _ in records]
    for record in records:
        _, (p1, f1), _, (p2, f2), _ = both_paths(bundle, contract, [record])
        assert abs(p1[0] - p2[0]) <= 1e-9 and f1 == f2


@pytest.mark.parametrize(
    "change",
    [
        {"student_id": "  "},
        {"cohort": ""},
        {"cohort": "20\t25"},
        {"cohort": "x" * 65},
        {"prior_gpa": "high"},
        {"prior_gpa": "1_000"},
        {"prior_gpa": "nan"},
        {"prior_gpa": "inf"},
        {"prior_gpa": math.inf},
        {"outcome": "pass"},
        {"unexpected": 1},
    ],
)
def test_record_path_refuses_with_the_frame_paths_message(model, change):
    bundle, contract, records = model
    recs = [dict(r) for r in records[:4]]
    recs[1].update(change)
    recs[3] = {**recs[3], "prior_gpa": "bad", contract.id_column: recs[0][contract.id_column]}  # more problems
    with pytest.raises(ContractError) as frame_error:
        validate(pd.DataFrame(recs), contract, stage="score", source="request")
    with pytest.raises(ContractError) as record_error:
        check_records(recs, contract, source="request")
    assert str(record_error.value) == str(frame_error.value)
    assert record_error.value.problems == frame_error.value.problems


def test_record_path_refuses_a_repeated_student_and_an_unaccepted_cohort(model):
    bundle, contract, records = model
    recs = [dict(records[0]), dict(records[0])]
    with pytest.raises(ContractError, match="repeats students within a cohort"):
        check_records(recs, contract, source="request")
    with pytest.raises(ContractError) as frame_error:
        validate(pd.DataFrame(records[:2]), contract, stage="score", source="request", allowed_cohorts=["1999"])
    with pytest.raises(ContractError) as record_error:
        check_records(records[:2], contract, source="request", allowed_cohorts=["1999"])
    assert str(record_error.value) == str(frame_error.value)


def test_cohort_written_as_decimal_reads_as_whole_number_both_ways(model):
    bundle, contract, records = model
    recs = [{**records[0], contract.cohort_column: "2025.0"}, {**records[1], contract.cohort_column: "+2025.00"}]
    frame = validate(pd.DataFrame(recs), contract, stage="score", source="request")
    rows = check_records(recs, contract, source="request")
    assert frame[contract.cohort_column].tolist() == [r[contract.cohort_column] for r in rows] == ["2025", "2025"]


CELLS = [
    " 5 ",
    "1e5",
    "1_000",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "+3",
    "0x10",
    "1,5",
    ".5",
    "5.",
    "",
    " ",
    "١٢",
    "1 000",
    "infinity",
    "1e400",
    "abc",
    True,
    3,
    2.5,
    None,
    float("nan"),
    -0.0,
    10**20,
]


def test_number_reads_cells_as_the_frame_path_does():
    frame = pd.to_numeric(pd.Series(CELLS, dtype=object), errors="coerce").astype("float64")
    for cell, expected in zip(CELLS, frame, strict=True):
        blank = cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == ""
        try:
            got = number(cell)
        except ValueError:
            assert math.isnan(expected) and not blank, cell  # the frame path calls it not a number too
            continue
        assert got == expected or (math.isnan(got) and math.isnan(expected) and blank), cell


def test_text_rules_match_the_former_vectorised_expressions():
    cells = pd.Series([" a ", "b", "", "  ", None, float("nan"), 3, 2.5, True, "3", pd.NA], dtype=object)
    old_key = cells.astype(str).str.strip().where(~(cells.isna() | (cells.astype(str).str.strip() == "")), None)
    old_category = cells.astype("string").str.strip().astype(object).where(cells.notna(), None)
    for rule, old in ((key_text, old_key), (category_text, old_category)):
        got = [rule(v) for v in cells]
        assert all(a == b or (pd.isna(a) and pd.isna(b)) for a, b in zip(got, old.tolist(), strict=True)), rule


def test_records_get_the_tier_of_the_stored_cohorts_floors():
    """POST /v1/score tiers a record by the newest stored cohort's boundaries: at or above a floor is that
    tier, high wins over medium; no stored cohort, no tier."""
    from api.scoring import tiers_of

    p = np.array([0.95, 0.8, 0.79999, 0.5, 0.1])
    assert tiers_of(p, {"high": 0.8, "medium": 0.5}).tolist() == ["high", "high", "medium", "medium", "low"]
    assert tiers_of(p, {"high": 0.8}).tolist() == ["high", "high", "low", "low", "low"]
    assert tiers_of(p, {}).tolist() == [None] * 5


def test_over_levels_averages_unknown_rows_over_the_levels_by_their_shares():
    """By hand: predict = 10 * column 0 + column 1; column 0 mixed over codes 0 and 1 (shares 0.25 and 0.75),
    column 1 over codes 2 and 4 (shares 0.5 each)."""
    mix = [(0, np.array([0.0, 1.0]), np.array([0.25, 0.75])), (1, np.array([2.0, 4.0]), np.array([0.5, 0.5]))]
    X = np.array([[1.0, 2.0], [np.nan, 4.0], [7.0, 2.0], [0.0, np.nan], [np.nan, np.nan]])
    calls: list[int] = []

    def predict(Z):  # reads a missing value as 0
        calls.append(len(Z))
        return 10 * np.nan_to_num(Z[:, 0]) + np.nan_to_num(Z[:, 1])

    got = over_levels(predict, X, mix)
    # row 0 known; row 1: 10 * 0.75 + 4; row 2: code 7 is no level, so unknown too: 7.5 + 2;
    # row 3: 0 + the mean of 2 and 4; row 4: both unknown, 7.5 + 3
    assert got.tolist() == [12.0, 11.5, 9.5, 3.0, 10.5]
    # pred_contrib-shaped output (a row per student, a column per feature and the expected value) averages alike
    contrib = over_levels(lambda Z: np.stack([10 * Z[:, 0], Z[:, 1], np.ones(len(Z))], axis=1), X, mix)
    assert np.allclose(contrib.sum(axis=1), got + 1) and contrib[1].tolist() == [7.5, 4.0, 1.0]
    assert over_levels(predict, X[[0]], []).tolist() == [12.0]  # no mixed column: predict as it is
    # within 3 predictions a row: row 4's second column (2 x 2 combinations) stays missing, read as 0
    assert over_levels(predict, X, mix, budget=3).tolist() == [12.0, 11.5, 9.5, 3.0, 7.5]
    calls.clear()
    over_levels(predict, np.full((1, 2), np.nan), mix, budget=1)  # no column fits: one plain prediction each
    assert sum(calls) == 1


def test_an_unseen_category_scores_as_the_training_mix_on_every_path(model):
    """A category the model never saw, in a column never missing in training, gets the share-weighted average
    of the log-odds of the levels it saw, on the record path, the frame path and in the factors (which still
    add up to the log-odds), and the warning says so."""
    bundle, contract, records = model
    assert bundle.mix, "the demo model should have a categorical feature never missing in training"
    col, shares = next(iter(bundle.mix.items()))
    assert abs(sum(shares.values()) - 1) < 1e-9 and set(shares) <= set(bundle.levels[col])
    codes = record_codes(bundle)

    def inputs(value):
        rows = check_records([{**r, col: value} for r in records[:40]], contract, source="request")
        return rows, feature_matrix(rows, bundle.features, codes, bundle.fill)[0]

    expected = sum(w * bundle.booster.predict(inputs(level)[1], raw_score=True) for level, w in shares.items())
    rows, X = inputs("a level never seen")
    assert np.isnan(X[:, bundle.features.index(col)]).all()
    got = booster_out(bundle, X, 1)
    assert np.allclose(got, expected)
    assert not np.allclose(got, bundle.booster.predict(X, raw_score=True))  # not the missing-value branch
    assert np.allclose(booster_out(bundle, X, 1, contrib=True).sum(axis=1), got)
    linear, weight = bundle.linear
    p_rows, _, unseen = score_rows(bundle, rows, ScoringConfig())
    frame = validate(pd.DataFrame([{**r, col: "a level never seen"} for r in records[:40]]), contract, stage="score")
    assert np.allclose(probability(bundle, frame), p_rows)
    if linear is None:
        assert np.allclose(p_rows, bundle.calibrator(expected))
    assert "average over the categories seen in training" in unseen_lines(unseen, bundle.mix)[0]
