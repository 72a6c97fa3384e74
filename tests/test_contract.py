"""The dataset contract and validation: every bad input gets one message naming file,
column, rows and the fix; nothing is written when validation fails."""

from __future__ import annotations

import pandas as pd
import pytest

from risk_model.config import ConfigError, DatasetContract, load_config
from risk_model.schema import ContractError, read_table, unseen_categories, validate


def _csv(tmp_path, df: pd.DataFrame, name="data.csv"):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def _check(tmp_path, df, contract, stage, *expected, name="data.csv"):
    path = _csv(tmp_path, df, name)
    with pytest.raises(ContractError) as err:
        validate(read_table(path), contract, stage=stage, source=str(path))
    msg = str(err.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


def test_valid_history_is_typed(demo_config, small_demo):
    df = validate(small_demo.history, demo_config.dataset, stage="train", source="h")
    assert df["prior_gpa"].dtype == "float64"
    assert set(df["cohort"]) == {"2019", "2020", "2021", "2022"}


def test_missing_column(tmp_path, demo_config, small_demo):
    _check(
        tmp_path,
        small_demo.history.drop(columns=["prior_gpa"]),
        demo_config.dataset,
        "train",
        "missing column(s) ['prior_gpa']",
        "settings file",
    )


def test_extra_column(tmp_path, demo_config, small_demo):
    df = small_demo.history.assign(full_name="x")
    _check(tmp_path, df, demo_config.dataset, "train", "unexpected column(s) ['full_name']", "drop_columns")


def test_wrong_type_names_rows(tmp_path, demo_config, small_demo):
    df = small_demo.history.copy().astype({"prior_gpa": object})
    df.loc[[3, 7], "prior_gpa"] = "three"
    _check(tmp_path, df, demo_config.dataset, "train", "'prior_gpa' must be numeric", "['three']", "line 5, line 9")


def test_unknown_cohort(tmp_path, demo_config, small_demo):
    contract = demo_config.dataset.model_copy(update={"cohort_order": ["2019", "2020", "2021", "2022"]})
    df = small_demo.history.copy()
    df.loc[10, "cohort"] = "1999"
    _check(tmp_path, df, contract, "train", "unknown cohort(s) ['1999']", "line 12", "cohort_order")


def test_duplicate_student_in_cohort(tmp_path, demo_config, small_demo):
    df = pd.concat([small_demo.history, small_demo.history.iloc[[5]]], ignore_index=True)
    _check(
        tmp_path,
        df,
        demo_config.dataset,
        "train",
        "repeats student(s) within a cohort",
        "line 7",
        "remove the duplicate",
    )


def test_same_student_in_two_cohorts_is_fine(demo_config, small_demo):
    df = small_demo.history.copy()
    df.loc[df.cohort == "2020", "student_id"] = df.loc[df.cohort == "2019", "student_id"].to_numpy()
    validate(df, demo_config.dataset, stage="train", source="h")


def test_empty_file(tmp_path, demo_config):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(ContractError, match="empty.csv: the file is empty"):
        read_table(path)
    header_only = tmp_path / "header.csv"
    header_only.write_text("student_id,cohort\n")
    with pytest.raises(ContractError, match="header.csv: the file has no rows"):
        validate(read_table(header_only), demo_config.dataset, stage="score", source=str(header_only))


def test_outcome_present_when_scoring(tmp_path, demo_config, small_demo):
    _check(
        tmp_path,
        small_demo.history,
        demo_config.dataset,
        "score",
        "'outcome' (the outcome) is present",
        "remove the column",
    )


def test_outcome_absent_when_training(tmp_path, demo_config, small_demo):
    _check(tmp_path, small_demo.intake, demo_config.dataset, "train", "missing column(s) ['outcome']")


def test_outcome_empty_or_unknown(tmp_path, demo_config, small_demo):
    df = small_demo.history.copy()
    df.loc[4, "outcome"] = None
    _check(tmp_path, df, demo_config.dataset, "train", "'outcome' (the outcome) is empty at line 6")
    df.loc[4, "outcome"] = "passed"
    _check(tmp_path, df, demo_config.dataset, "train", "['passed']", "outcome_values")


def test_unseen_category_is_counted_not_fatal(demo_config, small_demo):
    intake = small_demo.intake.copy()
    intake.loc[:9, "entry_qualification"] = "Apprenticeship"
    df = validate(intake, demo_config.dataset, stage="score", source="intake")
    levels = {"entry_qualification": ["A-levels", "BTEC"], "age_band": ["18-20", "21-24", "25+"]}
    found = unseen_categories(df, levels)
    assert found["entry_qualification"]["Apprenticeship"] == 10
    assert "age_band" not in found


def test_cohort_natural_order():
    c = DatasetContract(
        id_column="i", cohort_column="c", outcome_column="o", at_risk_values=["f"], numeric_features=["x"]
    )
    assert c.sort_cohorts(["2014B", "2013J", "2013B", "2014J"]) == ["2013B", "2013J", "2014B", "2014J"]
    assert c.sort_cohorts(["2020", "2019", "2100", "999"]) == ["999", "2019", "2020", "2100"]
    assert c.sort_cohorts(["A1", "2019"]) == ["2019", "A1"]


def test_bad_settings_file_names_key(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(
        '[dataset]\nid_column = "id"\ncohort_column = "c"\noutcome_column = "o"\nat_risk_values = []\n'
        'numeric_features = ["x"]\n[training]\ntop_k_percent = 0\n'
    )
    with pytest.raises(ConfigError) as err:
        load_config(p)
    assert "dataset.at_risk_values" in str(err.value) and "training.top_k_percent" in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_column_in_two_roles_rejected():
    with pytest.raises(ValueError, match="'x' is listed under both numeric_features and sensitive_columns"):
        DatasetContract(
            id_column="i",
            cohort_column="c",
            outcome_column="o",
            at_risk_values=["f"],
            numeric_features=["x"],
            sensitive_columns=["x"],
        )
