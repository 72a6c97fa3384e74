"""Value labels, bands and visible names: what fairness reports and factors call (issue 13, friction 5 and 9)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract
from risk_model.labels import band, band_labels, display_name, label_value


def _contract() -> DatasetContract:
    return DatasetContract(
        id_column="id",
        cohort_column="Year",
        outcome_column="Target",
        at_risk_values=["Dropout"],
        numeric_features=["Admission grade", "Age at enrollment"],
        categorical_features=["Course"],
        sensitive_columns=["Age at enrollment", "Gender"],
        sensitive_as_features=["Age at enrollment"],
        value_labels={"Gender": {"1": "male", "0": "female"}, "Course": {"9500": "Nursing"}},
        bands={"Age at enrollment": [17, 21, 25]},
    )


def test_label_value_reads_codes_however_they_arrive():
    c = _contract()
    assert [label_value(c, "Gender", v) for v in ("1", 1, 1.0, " 0 ", "1.0")] == [
        "male",
        "male",
        "male",
        "female",
        "male",
    ]
    assert label_value(c, "Gender", None) == "missing" and label_value(c, "Gender", np.nan) == "missing"
    assert label_value(c, "Gender", "2") == "2"  # unlabelled codes stay visible as themselves
    assert label_value(c, "Course", 9500) == "Nursing" and label_value(c, "Course", 33) == "33"


def test_band_slices_a_numeric_sensitive_column():
    c = _contract()
    ages = pd.Series([16, 17, 20, 21, 24, 25, 70, None, "unknown"], index=range(10, 19))
    groups = band(c, "Age at enrollment", ages)
    assert groups.index.tolist() == list(range(10, 19))
    assert groups.tolist() == ["under 17", "17-20", "17-20", "21-24", "21-24", "25+", "25+", "missing", "unknown"]
    assert band(c, "Gender", pd.Series(["1", "0", None])).tolist() == ["male", "female", "missing"]  # no bands: labels


def test_band_labels_for_whole_and_fractional_edges():
    assert band_labels([17, 21, 25]) == ["17-20", "21-24", "25+"]
    assert band_labels([0, 1, 2, 5]) == ["0", "1", "2-4", "5+"]
    assert band_labels([1.5, 2.5]) == ["1.5-<2.5", "2.5+"]


def test_display_name_keeps_names_and_shows_hidden_characters():
    assert display_name("Mother's qualification") == "Mother's qualification"
    assert display_name("Curricular units 1st sem (credited)") == "Curricular units 1st sem (credited)"
    assert display_name("Année") == "Année"
    assert display_name("Daytime/evening attendance\t") == '"Daytime/evening attendance\\t"'
    assert display_name("Gender ") == '"Gender "'
