"""Cohort and point values become file and folder names only through `safe_name` (issue 15 item 4)."""

from __future__ import annotations

import re

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from reports.build import report_dir
from risk_model import jobs
from risk_model.config import Settings
from risk_model.paths import safe_name, unsafe_name
from risk_model.score import ScoreResult


def test_safe_name_examples():
    assert safe_name("2025") == "2025" and safe_name("2014J") == "2014J" and safe_name("day30") == "day30"
    assert safe_name("2025/26") == "2025~2F26"
    assert safe_name("../../../escaped") == "~2E.~2F..~2F..~2Fescaped"
    assert safe_name(".") == "~2E" and safe_name("..") == "~2E." and safe_name("") == "~empty"
    assert safe_name("Année 1") == "Ann~C3~A9e~201"


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_safe_name_is_one_harmless_reversible_component(value):
    name = safe_name(value)
    assert re.fullmatch(r"[A-Za-z0-9._~-]+", name) and not name.startswith(".")
    if "~~" not in name:  # not cut to 120 characters
        assert unsafe_name(name) == value


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300), st.text(min_size=1, max_size=300))
def test_safe_name_never_collides_and_stays_short(a, b):
    assert len(safe_name(a)) <= 120
    if a != b:
        assert safe_name(a) != safe_name(b)


def _result(cohort: str) -> ScoreResult:
    scores = pd.DataFrame(
        {
            "student_id": ["a", "b"],
            "cohort": [cohort, cohort],
            "probability": [0.2, 0.7],
            "tier": ["low", "high"],
            "rank": [2, 1],
            "factors": [[], []],
            "model_version": "v1",
            "point": "default",
            "scored_at": pd.Timestamp("2026-01-01", tz="UTC"),
        }
    )
    summary = {
        "n_students": 2,
        "cohorts": [cohort],
        "model_version": "v1",
        "point": "default",
        "tiers": {"high": 1, "medium": 0, "low": 1},
        "mean_probability": 0.45,
        "unseen_categories": {},
        "n_unseen_category_values": 0,
    }
    return ScoreResult(scores, summary)


def test_cohort_paths_stay_inside_the_runtime_folder(tmp_path):
    """`2025/26` crashed writing the export; `../../../escaped` made reports write outside the runtime folder."""
    runtime = Settings(home=tmp_path / "runtime")
    home = runtime.home.resolve()
    for cohort in ("2025/26", "../../../escaped"):
        where = report_dir(runtime, cohort, "default", "v1").resolve()
        assert where.parent.parent.parent == home / "reports"
        out = jobs.store_scores(runtime, _result(cohort))
        export = tmp_path.joinpath(out["export"]).resolve()
        assert export.parent == home / "exports" and export.exists()
        assert pd.read_csv(export)["cohort"].tolist() == [cohort, cohort]
    assert sorted(p.name for p in (home / "exports").iterdir()) == [
        "scores-2025~2F26-default.csv",
        "scores-~2E.~2F..~2F..~2Fescaped-default.csv",
    ]
    assert not any(tmp_path.parent.glob("*escaped*")) and not any(tmp_path.glob("*escaped*"))
