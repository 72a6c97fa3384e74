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
from risk_model.registry import Registry
from risk_model.schema import ContractError, category_text, check_records, key_text, number, validate
from risk_model.score import probabilities, score_rows, unseen_categories, unseen_lines


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
