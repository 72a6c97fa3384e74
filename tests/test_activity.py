"""Activity logs as a source, and prediction points for any source.

Features known by day N must not move when anything dated after day N is rewritten or
deleted (generic log and OULAD's clicks); the contract's [activity] and [[source.points]]
sections mean what they say; bad files fail with the file, the column and the fix.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from risk_model.config import Config, ConfigError, load_config
from risk_model.schema import ContractError, validate
from risk_model.sources import load_table
from risk_model.sources.activity import add_activity

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "oulad"
DAY = 30


def _students(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "student_id": [f"S{i}" for i in range(n)],
            "cohort": np.where(np.arange(n) < n // 2, "2023", "2024"),
            "course": rng.choice(["MATH", "HIST"], n),
            "prior_gpa": rng.normal(3, 0.4, n).round(2),
            "sem1_gpa": rng.normal(3, 0.5, n).round(2),
            "outcome": rng.choice(["pass", "fail"], n),
        }
    )


def _log(students: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    idx = rng.integers(0, len(students), n)
    return pd.DataFrame(
        {
            "user": students["student_id"].to_numpy()[idx],
            "term": students["cohort"].to_numpy()[idx],
            "day": rng.integers(-10, 100, n),
            "event": rng.choice(["view", "forum", "quiz"], n),
            "page": rng.integers(1, 40, n),
            "n": rng.integers(1, 5, n),
        }
    )


def _config(extra: str = "", points: str = "prediction_days = [0, 30, 60]") -> Config:
    text = f"""
[source]
{points}
[dataset]
id_column = "student_id"
cohort_column = "cohort"
outcome_column = "outcome"
at_risk_values = ["fail"]
numeric_features = ["prior_gpa", "sem1_gpa"]
categorical_features = ["course"]
[activity]
file = "activity.csv.gz"
id_column = "user"
cohort_column = "term"
day_column = "day"
type_column = "event"
count_column = "n"
resource_column = "page"
types = ["view", "forum", "quiz"]
section_columns = ["course"]
{extra}
"""
    return Config.model_validate(tomllib.loads(text))


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    students = _students()
    students.to_csv(tmp_path / "students.csv", index=False)
    _log(students).to_csv(tmp_path / "activity.csv.gz", index=False)
    return tmp_path


def _features(config: Config, folder: Path, day: int) -> pd.DataFrame:
    df = load_table(config, folder / "students.csv", point=f"day{day}", stage="train")
    return df.filter(like="activity_")


def test_activity_features_are_known_by_day_n_only(folder: Path) -> None:
    """Rewriting every row after day N, or deleting them, leaves the day-N table unchanged."""
    config = _config()
    before = _features(config, folder, DAY)
    log = pd.read_csv(folder / "activity.csv.gz")
    later = log["day"] > DAY
    assert later.any() and (~later).any()
    rewritten = log.copy()
    rewritten.loc[later, "n"] = 999
    rewritten.loc[later, "event"] = "quiz"
    rewritten.loc[later, "page"] = 12345
    rewritten.to_csv(folder / "activity.csv.gz", index=False)
    pd.testing.assert_frame_equal(_features(config, folder, DAY), before)
    log[~later].to_csv(folder / "activity.csv.gz", index=False)
    pd.testing.assert_frame_equal(_features(config, folder, DAY), before)
    # ...and the table does see a change at or before day N
    changed = log.copy()
    changed.loc[changed["day"] == DAY, "n"] += 100
    changed.to_csv(folder / "activity.csv.gz", index=False)
    assert not _features(config, folder, DAY).equals(before)


def test_activity_features_mean_what_they_say(tmp_path: Path) -> None:
    students = pd.DataFrame({"student_id": ["a", "b", "c"], "cohort": "2024", "course": ["X", "X", "Y"]})
    log = pd.DataFrame(
        {
            "user": ["a", "a", "a", "a", "b", "b"],
            "term": "2024",
            "day": [-3, 5, 25, 40, 29, 30],
            "event": ["view", "forum", "view", "view", "quiz", "view"],
            "page": [1, 2, 1, 3, 9, 9],
            "n": [2, 1, 4, 100, 3, 1],
        }
    )
    log.to_parquet(tmp_path / "log.parquet")
    config = _config().activity.model_copy(update={"file": "log.parquet"})
    out = add_activity(students, config, tmp_path, 30, id_column="student_id", cohort_column="cohort")
    a, b, c = out.iloc[0], out.iloc[1], out.iloc[2]
    assert (a.activity_total, a.activity_before_start, a.activity_days, a.activity_resources) == (7, 2, 3, 2)
    assert (a.activity_last7, a.activity_last14, a.activity_view, a.activity_forum) == (4, 4, 6, 1)
    assert a.activity_days_since_last == 5 and b.activity_days_since_last == 0
    assert (b.activity_total, b.activity_last7, b.activity_quiz, b.activity_resources) == (4, 4, 3, 1)
    assert c.activity_total == 0 and np.isnan(c.activity_days_since_last)
    # percentiles among classmates of the same course: a and b share X, c is alone in Y
    assert a.activity_total_pct == 1.0 and b.activity_total_pct == 0.5 and c.activity_total_pct == 1.0
    # trend: last 14 days vs days 0..16 (daily rates, log ratio)
    assert a.activity_trend == pytest.approx(np.log1p(4 / 14) - np.log1p(1 / 17))


def test_timestamps_and_cohort_start(tmp_path: Path) -> None:
    students = pd.DataFrame({"student_id": ["a", "b"], "cohort": ["2024", "2025"], "course": "X"})
    pd.DataFrame(
        {
            "user": ["a", "a", "b"],
            "term": ["2024", "2024", "2025"],
            "when": ["2024-09-01 10:00", "2024-10-15 23:59", "2025-08-30 08:00"],
        }
    ).to_csv(tmp_path / "log.csv", index=False)
    config = _config().activity.model_copy(
        update={
            "file": "log.csv",
            "day_column": None,
            "timestamp_column": "when",
            "cohort_start": {"2024": "2024-09-01", "2025": "2025-09-01"},
            "type_column": None,
            "count_column": None,
            "resource_column": None,
            "types": [],
        }
    )
    out = add_activity(students, config, tmp_path, 30, id_column="student_id", cohort_column="cohort")
    # a: day 0 counts (one row = one), day 44 is the future; b: two days before the start
    assert out.activity_total.tolist() == [1, 1]
    assert out.activity_before_start.tolist() == [0, 1]


def test_missing_file_and_column_are_named(folder: Path) -> None:
    config = _config()
    bad = config.model_copy(update={"activity": config.activity.model_copy(update={"file": "nope.csv"})})
    with pytest.raises(ContractError, match=r"nope\.csv.*not found.*data folder"):
        load_table(bad, folder / "students.csv", point="day0", stage="train")
    bad = config.model_copy(update={"activity": config.activity.model_copy(update={"count_column": "clicks"})})
    with pytest.raises(ContractError, match=r"activity\.csv\.gz: missing column\(s\) \['clicks'\]"):
        load_table(bad, folder / "students.csv", point="day0", stage="train")


def test_bad_day_values_are_shown(folder: Path) -> None:
    log = pd.read_csv(folder / "activity.csv.gz").astype({"day": object})
    log.loc[3, "day"] = "soon"
    log.to_csv(folder / "activity.csv.gz", index=False)
    with pytest.raises(ContractError, match=r"column 'day' has 1 row\(s\) that are not day numbers.*soon"):
        load_table(_config(), folder / "students.csv", point="day0", stage="train")


def test_contract_rejects_unusable_activity_settings() -> None:
    with pytest.raises(ValueError, match="exactly one of day_column or timestamp_column"):
        _config(extra='timestamp_column = "when"')
    with pytest.raises(ValueError, match="needs prediction points"):
        _config(points="")


def test_points_say_which_columns_are_known_when(folder: Path) -> None:
    """Enrolment point never sees semester-1 grades; the later point does; both from one table."""
    config = _config(
        points="""[[source.points]]
day = 0
label = "at enrolment"
[[source.points]]
day = 120
label = "after semester 1"
known = ["sem1_gpa"]"""
    )
    assert config.points == ["day0", "day120"]
    early, late = config.for_point("day0"), config.for_point("day120")
    assert "sem1_gpa" not in early.dataset.features and "sem1_gpa" in late.dataset.features
    assert config.for_point("day0").for_point("day0") == early
    students = pd.read_csv(folder / "students.csv")
    table = load_table(early, folder / "students.csv", point="day0", stage="train")
    clean = validate(table, early.dataset, stage="train")
    assert "sem1_gpa" not in clean.columns and "activity_total" in clean.columns
    # the enrolment intake need not have the later column at all
    intake = load_table(early, folder / "students.csv", point="day0", stage="score").drop(
        columns=["outcome", "sem1_gpa"]
    )
    validate(intake, early.dataset, stage="score")
    later = validate(
        load_table(late, folder / "students.csv", point="day120", stage="train"), late.dataset, stage="train"
    )
    assert later["sem1_gpa"].tolist() == students["sem1_gpa"].tolist()


def test_points_must_name_features() -> None:
    with pytest.raises(ValueError, match="known names \\['gpa2'\\]"):
        _config(points='[[source.points]]\nday = 0\n[[source.points]]\nday = 10\nknown = ["gpa2"]')


def test_config_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text((REPO / "risk_model" / "examples" / "oulad.toml").read_text().replace('day_column = "date"', ""))
    with pytest.raises(ConfigError, match="(?s)x.toml.*exactly one of day_column"):
        load_config(path)


# --- OULAD's clicks -----------------------------------------------------------------------------------


@pytest.mark.skipif(not (REAL / "studentVle.csv.gz").exists(), reason="OULAD files not here")
def test_oulad_clicks_after_day_n_change_nothing(tmp_path: Path) -> None:
    """On one real presentation: deleting every click after day N leaves the day-N table unchanged."""
    import duckdb

    for name in ["studentInfo", "studentRegistration", "assessments", "studentAssessment", "courses", "vle"]:
        (tmp_path / f"{name}.csv").symlink_to(REAL / f"{name}.csv")
    duckdb.execute(
        f"COPY (SELECT * FROM read_csv('{REAL / 'studentVle.csv.gz'}') WHERE code_module = 'AAA') "
        f"TO '{tmp_path / 'all.csv.gz'}' (HEADER)"
    )
    duckdb.execute(
        f"COPY (SELECT * FROM read_csv('{tmp_path / 'all.csv.gz'}') WHERE date <= {DAY}) "
        f"TO '{tmp_path / 'known.csv.gz'}' (HEADER)"
    )
    config = load_config(REPO / "risk_model" / "examples" / "oulad.toml")
    tables = []
    for name in ["all", "known"]:
        (tmp_path / "studentVle.csv.gz").unlink(missing_ok=True)
        (tmp_path / "studentVle.csv.gz").symlink_to(tmp_path / f"{name}.csv.gz")
        tables.append(load_table(config, tmp_path, point=f"day{DAY}", stage="train", cohorts=["2013J"]))
    full, known = tables
    assert full.loc[full.code_module == "AAA", "activity_total"].gt(0).mean() > 0.8
    pd.testing.assert_frame_equal(full, known)
    validate(full, config.dataset, stage="train")


def test_one_runtime_folder_trains_and_scores_every_point(tmp_path: Path) -> None:
    """A plain table with two points: one home, a champion per point, each scored with its own features."""
    from risk_model import jobs
    from risk_model.config import Settings
    from risk_model.registry import Registry
    from tests.conftest import tiny

    rng = np.random.default_rng(3)
    students = pd.concat([_students(400, seed=s).assign(cohort=str(2020 + s)) for s in range(3)], ignore_index=True)
    students["student_id"] = [f"S{i}" for i in range(len(students))]
    students["outcome"] = np.where(students.sem1_gpa + rng.normal(0, 0.3, len(students)) < 2.9, "fail", "pass")
    history, intake = students[students.cohort != "2022"], students[students.cohort == "2022"]
    history.to_csv(tmp_path / "history.csv", index=False)
    intake.drop(columns=["outcome"]).to_csv(tmp_path / "intake.csv", index=False)
    _log(students).to_csv(tmp_path / "activity.csv.gz", index=False)
    config = tiny(_config(points='[[source.points]]\nday = 0\n[[source.points]]\nday = 120\nknown = ["sem1_gpa"]'))
    settings = Settings(home=tmp_path / "runtime")
    for point in config.points:
        df = jobs.prepare(config, tmp_path / "history.csv", stage="train", point=point)
        jobs.train_and_register(settings, config, df, point=point, progress=lambda _: None)
        scored = jobs.score_and_store(
            settings,
            config,
            jobs.prepare(config, tmp_path / "intake.csv", stage="score", point=point),
            point=point,
            factors=False,
            progress=lambda _: None,
        )
        assert scored["n_students"] == len(intake)
    registry = Registry(settings.registry_dir)
    assert registry.points() == ["day0", "day120"]
    early, late = (registry.load(point=p).features for p in ["day0", "day120"])
    assert "sem1_gpa" not in early and "sem1_gpa" in late and "activity_total" in early
