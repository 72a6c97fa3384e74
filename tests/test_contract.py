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
    sid = small_demo.history.student_id.iloc[5]
    msg = _check(
        tmp_path,
        df,
        demo_config.dataset,
        "train",
        "column 'student_id' repeats students within a cohort: line 3202 repeats line 7.",
        "remove the duplicate rows",
    )
    assert sid not in msg  # line numbers only: no student id in an error message (issue 15 item 6)


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


# --- issue 13: every problem in one pass, names as written; issue 15 item 4: cohorts as identifiers ---


def _owndata_contract(**kw) -> DatasetContract:
    base = {
        "id_column": "Student ID",
        "cohort_column": "Year",
        "outcome_column": "Target",
        "at_risk_values": ["Dropout"],
        "outcome_values": ["Dropout", "Graduate"],
        "numeric_features": ["Daytime/evening attendance", "Admission grade"],
        "categorical_features": ["Course"],
    }
    return DatasetContract(**{**base, **kw})


def _owndata_rows(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Student ID": [f"s{i}" for i in range(n)],
            "Year": ["2024"] * n,
            "Daytime/evening attendance\t": ["1"] * n,
            "Admission grade": ["120.5"] * n,
            "Course": ["9500"] * n,
            "Target": ["Dropout", "Graduate"] * (n // 2),
        }
    )


def test_tab_in_header_gets_a_near_match_and_every_problem_is_listed(tmp_path):
    """Friction 2: the check stopped at the first problem, and the near match was never shown."""
    df = _owndata_rows().assign(full_name="x")
    df.loc[2, "Admission grade"] = "n/a"
    df.loc[4, "Student ID"] = "s1"
    df.loc[3, "Target"] = "Unknown"
    msg = _check(tmp_path, df, _owndata_contract(), "train", name="export.csv")
    assert msg == (
        f"{tmp_path / 'export.csv'}: 5 problems; nothing was written. Fix them all, then run again:\n"
        "  1. missing column(s) ['Daytime/evening attendance']. The file's header has near matches: for "
        "'Daytime/evening attendance' did you mean 'Daytime/evening attendance\\t'? Write each name in the settings "
        "file exactly as in the header (or rename the header).\n"
        "  2. unexpected column(s) ['full_name']. Add them to drop_columns (or to the features) in the settings file, "
        "or remove them from the file.\n"
        "  3. column 'Student ID' repeats students within a cohort: line 6 repeats line 3. Each student appears once "
        "per cohort: remove the duplicate rows.\n"
        "  4. column 'Admission grade' must be numeric but has ['n/a'] at line 4. Fix those values (leave a cell empty "
        "if unknown), or list the column under categorical_features.\n"
        "  5. column 'Target' has value(s) ['Unknown'] at line 5; allowed: ['Dropout', 'Graduate']. Fix them or "
        "extend outcome_values."
    )


def test_near_match_for_case_and_spaces_and_all_missing_listed(tmp_path):
    df = _owndata_rows().rename(
        columns={"Course": "course ", "Daytime/evening attendance\t": "Daytime/evening attendance"}
    )
    contract = _owndata_contract(numeric_features=["Daytime/evening attendance", "Admission grade", "Age"])
    msg = _check(tmp_path, df, contract, "train")
    assert (
        "missing column(s) ['Age', 'Course']. The file's header has near matches: for 'Course' did you mean 'course '?"
        in msg
    )
    assert "The settings file also expects ['Age']: add them to the file, or remove them" in msg
    assert "unexpected column" not in msg  # 'course ' is explained by the near match, not listed twice


def test_empty_ids_and_cohorts_and_outcome_at_score_listed_together(tmp_path):
    df = _owndata_rows().rename(columns={"Daytime/evening attendance\t": "Daytime/evening attendance"})
    df.loc[1, "Student ID"] = ""
    df.loc[2, "Year"] = ""
    msg = _check(tmp_path, df, _owndata_contract(), "score")
    assert "3 problems" in msg
    assert "column 'Student ID' is empty at line 3. Every row needs a Student ID." in msg
    assert "column 'Year' is empty at line 4. Every row needs a Year." in msg
    assert "column 'Target' (the outcome) is present in an intake to score" in msg


def test_cohort_written_as_decimal_is_read_as_whole_number_with_a_note(tmp_path, caplog):
    """Issue 15 item 4: `2025.0` silently became a second cohort and duplicated its students."""
    df = _owndata_rows().rename(columns={"Daytime/evening attendance\t": "Daytime/evening attendance"})
    df.loc[[1, 3], "Year"] = "2024.0"
    out = validate(df, _owndata_contract(), stage="train", source="export.csv")
    assert out["Year"].unique().tolist() == ["2024"]
    assert out.attrs["notes"] == [
        "export.csv: column 'Year' writes cohort(s) ['2024.0'] as decimals at line 3, line 5; read as whole numbers "
        "(2025.0 is cohort 2025). Export the column as text or whole numbers to silence this."
    ]
    assert "writes cohort(s) ['2024.0'] as decimals" in caplog.text
    df.loc[3, "Student ID"] = "s0"  # the same student as 2024 and as 2024.0: now caught as a duplicate
    msg = _check(tmp_path, df, _owndata_contract(), "train")
    assert "column 'Student ID' repeats students within a cohort: line 5 repeats line 2." in msg


def test_cohort_values_must_be_printable_and_short(tmp_path):
    df = _owndata_rows().rename(columns={"Daytime/evening attendance\t": "Daytime/evening attendance"})
    df.loc[1, "Year"] = "20\t24"
    df.loc[2, "Year"] = "2" * 70
    df.loc[3, "Year"] = "2025/26"  # a normal academic-year label: fine
    df.loc[4, "Year"] = "../../../escaped"  # odd but printable: fine, paths are made with safe_name
    msg = _check(tmp_path, df, _owndata_contract(), "train")
    assert (
        "column 'Year' has cohort value(s) ['20\\t24', '2222222222222222222222222222222222222...'] at line 3, line 4 "
        "that cannot name a cohort: a cohort is printable text (no tabs, line breaks or control characters) of at "
        "most 64 characters, such as 2025, 2025/26 or 2014J. Fix those values."
    ) in msg
    assert "1 problem" not in msg and msg.count("cohort value") == 1


def test_numeric_sensitive_feature_stays_numeric_and_bands_check():
    c = _owndata_contract(
        numeric_features=["Admission grade", "Age"],
        sensitive_columns=["Age", "Gender"],
        sensitive_as_features=["Age"],
        bands={"Age": [17, 21, 25]},
        value_labels={"Gender": {"1": "male", "0": "female"}},
    )
    assert c.features == ["Admission grade", "Age", "Course"] and c.categorical == ["Course"]
    df = pd.DataFrame(
        {"Student ID": ["a", "b"], "Year": ["2024", "2024"], "Admission grade": ["1", "2"], "Age": ["17", "45"]}
    ).assign(Course="9500", Gender=["1", "0"])
    out = validate(df, c, stage="score", source="intake")
    assert out["Age"].dtype == "float64" and out["Gender"].tolist() == ["1", "0"]
    with pytest.raises(
        ValueError, match="listed under both numeric_features and sensitive_columns: keep one, or list it"
    ):
        _owndata_contract(sensitive_columns=["Admission grade"])
    with pytest.raises(ValueError, match=r"bands for 'Age' must be increasing cut points, e.g. \[17, 21, 25\]; got"):
        _owndata_contract(
            numeric_features=["Age"], sensitive_columns=["Age"], sensitive_as_features=["Age"], bands={"Age": [21, 17]}
        )
    with pytest.raises(ValueError, match="bands names 'Course', which is not in sensitive_columns"):
        _owndata_contract(bands={"Course": [1, 2]})
    with pytest.raises(ValueError, match=r"value_labels names \['Gender '\], which the contract does not list"):
        _owndata_contract(value_labels={"Gender ": {"1": "male"}})


def test_doubtful_kinds_get_notes_not_errors():
    """Friction 4/5: codes read as numbers, and an age read as one category per year, are pointed out."""
    n = 60
    c = _owndata_contract(
        numeric_features=["Course code"],
        categorical_features=[],
        sensitive_columns=["Age"],
        sensitive_as_features=["Age"],
        outcome_values=None,
    )
    df = pd.DataFrame(
        {
            "Student ID": [str(i) for i in range(n)],
            "Year": "2024",
            "Course code": [str([33, 171, 9500, 9238][i % 4]) for i in range(n)],
            "Age": [str(17 + i % 40) for i in range(n)],
        }
    )
    notes = validate(df, c, stage="score", source="intake").attrs["notes"]
    assert notes == [
        "intake: column 'Course code' is numeric but holds 4 distinct whole numbers (33, 171, 9238, 9500, ...): if "
        "they are codes, not quantities, list it under categorical_features.",
        "intake: column 'Age' is read as categories but holds 40 distinct numbers: the model gets one category per "
        "value and fairness reports one group per value. If it is a quantity (an age, a grade), list it under "
        "numeric_features too (it stays in sensitive_as_features).",
    ]
