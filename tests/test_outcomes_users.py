"""Issue 13, item 8: outcomes as users have them.

`student-risk outcomes` takes a plain table (id, cohort and outcome columns as the contract names
them) or, on OULAD, the raw folder, and says so in `--help` and the README. On OULAD it records the
outcome of every registrant, not only of those on the day-0 list, so a student first scored at day 30
is judged too. Every outcome row is matched to a scored student or counted and named by its line
(never by id), per cohort and per prediction point; a re-run replaces, never duplicates.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from risk_model import jobs, store
from risk_model.config import Settings, load_config
from risk_model.demo import make_demo
from risk_model.sources.oulad import build_table, outcome_table
from tests.conftest import REPO

REAL = REPO.parent / "shared" / "data" / "oulad"
OULAD = REPO / "risk_model" / "examples" / "oulad.toml"
DEMO = REPO / "risk_model" / "examples" / "demo.toml"
UNKNOWN = [f"NEVER-SCORED-{i}" for i in range(7)]
UNKNOWN_AT = [0, 10, 400, 401, 700, 785, 786]  # their positions among the file's rows (line = position + 2)


@pytest.fixture
def scored(trained_home, tmp_path) -> Settings:
    """A copy of the shared runtime: cohort 2023 (800 students) scored at the single default point."""
    shutil.copytree(trained_home["settings"].home, tmp_path / "rt")
    return Settings(home=tmp_path / "rt")


def _partial_outcomes(small_demo, path: Path) -> tuple[Path, pd.DataFrame]:
    """The cohort's outcomes without its first 20 students, with 7 ids never scored among the rows."""
    known = small_demo.outcomes.iloc[20:].reset_index(drop=True)
    rows = known.to_dict("records")
    for sid, at in zip(UNKNOWN, UNKNOWN_AT, strict=True):
        rows.insert(at, {"student_id": sid, "cohort": "2023", "outcome": "withdrawn"})
    frame = pd.DataFrame(rows)
    assert frame.index[frame.student_id.isin(UNKNOWN)].tolist() == UNKNOWN_AT
    frame.to_csv(path, index=False)
    return path, frame


def _at_risk(frame: pd.DataFrame) -> int:
    return int(frame.outcome.isin(["fail", "withdrawn"]).sum())


def _lines(recorded: dict, cohort: str) -> list[str]:
    return recorded["by_cohort"][cohort]["lines"]


# --- a plain CSV ---------------------------------------------------------------------------


def test_every_outcome_row_is_matched_or_named_by_its_line(scored, demo_config, small_demo, tmp_path):
    path, frame = _partial_outcomes(small_demo, tmp_path / "outcomes.csv")
    recorded = jobs.record_outcomes(scored, demo_config, jobs.prepare(demo_config, path, stage="outcomes"))
    assert _lines(recorded, "2023") == [
        f"2023: 787 outcomes recorded ({_at_risk(frame)} at risk: fail, withdrawn)",
        "  matched to scored students: 780 of 800 scored",
        "  scored students with no outcome in this file: 20; left out of the performance figures",
        "  7 not matched to any scored student (no student scored in this cohort has that id): outcomes.csv lines "
        "2, 12, 402, 403, 702 and 2 more; recorded, but not used in performance figures",
    ]
    c = recorded["by_cohort"]["2023"]
    assert c["points"] == {"default": {"n_scored": 800, "n_matched": 780}}
    assert c["n_unmatched"] == 7 and c["unmatched_rows"][-1] == "outcomes.csv line 702"
    assert not any(sid in line for line in c["lines"] for sid in [*UNKNOWN, *frame.student_id])  # never an id


def test_all_matched_and_a_rerun_replaces_without_duplicates(scored, demo_config, small_demo, tmp_path):
    path = tmp_path / "outcomes-2023.csv"
    small_demo.outcomes.to_csv(path, index=False)
    at_risk = _at_risk(small_demo.outcomes)
    first = jobs.record_outcomes(scored, demo_config, jobs.prepare(demo_config, path, stage="outcomes"))
    assert _lines(first, "2023") == [
        f"2023: 800 outcomes recorded ({at_risk} at risk: fail, withdrawn)",
        "  matched to scored students: 800 (every scored student)",
        "  every outcome matched a scored student",
    ]
    again = jobs.record_outcomes(scored, demo_config, jobs.prepare(demo_config, path, stage="outcomes"))
    assert _lines(again, "2023")[0] == (
        f"2023: 800 outcomes recorded ({at_risk} at risk: fail, withdrawn); they replace the 800 recorded before"
    )
    with store.opened(scored.resolved_store_url) as engine:
        stored = store.read_outcomes(engine, "2023")
        assert store.match_outcomes(engine, "2023").points == {"default": (800, 800)}
    assert len(stored) == 800 and stored.student_id.is_unique


def test_a_cohort_filter_keeps_the_file_line_numbers(scored, demo_config, small_demo, tmp_path):
    """Rows of another cohort before the scored one: unmatched rows are still named by their line in the file."""
    past = small_demo.history.loc[small_demo.history.cohort == "2022", ["student_id", "cohort", "outcome"]].head(50)
    _, frame = _partial_outcomes(small_demo, tmp_path / "part.csv")
    path = tmp_path / "two-cohorts.csv"
    pd.concat([past, frame], ignore_index=True).to_csv(path, index=False)
    df = jobs.prepare(demo_config, path, stage="outcomes", cohorts=["2023"])
    recorded = jobs.record_outcomes(scored, demo_config, df)
    assert recorded["cohorts"] == ["2023"]
    assert _lines(recorded, "2023")[-1] == (
        "  7 not matched to any scored student (no student scored in this cohort has that id): two-cohorts.csv "
        "lines 52, 62, 452, 453, 752 and 2 more; recorded, but not used in performance figures"
    )


@pytest.mark.slow  # the CLI end to end: outcomes, then their reports
def test_cli_outcomes_prints_the_matches_before_the_reports(scored, small_demo, tmp_path):
    path, _ = _partial_outcomes(small_demo, tmp_path / "outcomes.csv")
    res = CliRunner().invoke(app, ["outcomes", str(path), "-c", str(DEMO), "--home", str(scored.home)])
    assert res.exit_code == 0, res.output
    assert "\n2023: 787 outcomes recorded (" in res.output.split("[2023 outcomes]")[0]  # before any report
    for line in [
        "  matched to scored students: 780 of 800 scored",
        "  scored students with no outcome in this file: 20; left out of the performance figures",
        "  7 not matched to any scored student (no student scored in this cohort has that id): outcomes.csv lines "
        "2, 12, 402, 403, 702 and 2 more; recorded, but not used in performance figures",
    ]:
        assert line in res.output.splitlines(), res.output
    assert "[2023 outcomes]" in res.output and "NEVER-SCORED" not in res.output


def test_help_and_readme_show_outcomes_for_a_plain_csv_and_for_oulad():
    res = CliRunner().invoke(app, ["outcomes", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    shown = "\n".join(line.strip() for line in res.output.splitlines())  # without the panel's padding
    for text in [
        "student-risk outcomes runtime/demo/outcomes-2025.csv \\\n-c risk_model/examples/demo.toml --cohort 2025",
        "student-risk outcomes ../shared/data/oulad \\\n-c risk_model/examples/oulad.toml --cohort 2014B",
        "On OULAD, pass the raw folder, not a file: the final_result of every registrant of the presentation (its "
        "studentInfo.csv) is recorded, also of students who registered after day 0:",
        "the id_column, cohort_column and outcome_column of the settings file's [dataset] (the demo's: student_id, "
        "cohort, outcome)",
    ]:
        assert text in shown, text
    readme = (REPO / "README.md").read_text()
    assert (
        "student-risk outcomes runtime/demo/outcomes-2025.csv -c risk_model/examples/demo.toml --cohort 2025" in readme
    )
    assert "student-risk outcomes ../shared/data/oulad --config risk_model/examples/oulad.toml --cohort 2014B" in readme
    assert "`outcomes` takes the same raw folder, not a file" in readme
    # the plain example is what `student-risk demo` writes: runtime/demo/outcomes-<its intake cohort>.csv
    assert str(make_demo(n_per_cohort=20).intake.cohort.iloc[0]) == "2025"
    assert load_config(DEMO).dataset.id_column == "student_id"


# --- OULAD: every registrant's outcome, matched per prediction day ---------------------------

# (id_student, date_registration, date_unregistration, final_result); points day 0 and day 30
REGISTRANTS = [
    (101, -30.0, None, "Pass"),  # on every list
    (102, 15.0, None, "Fail"),  # registered after day 0: first scored at day 30
    (103, -20.0, -5.0, "Withdrawn"),  # left before day 0: on no list
    (104, -10.0, 10.0, "Withdrawn"),  # on the day-0 list only
    (105, 40.0, None, "Pass"),  # registered after the last point
]


def _oulad_folder(folder: Path) -> Path:
    """The five raw files `build_table` reads, for module AAA in 2014B (and one 2013J student first)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["code_module", "code_presentation", "id_student"]
    people = [("AAA", "2013J", 100, -5.0, None, "Pass")] + [("AAA", "2014B", *r) for r in REGISTRANTS]
    frame = pd.DataFrame(people, columns=[*key, "date_registration", "date_unregistration", "final_result"])
    info = frame[[*key]].assign(
        gender="F",
        region="Wales",
        highest_education="HE Qualification",
        imd_band="20-30%",
        age_band="0-35",
        num_of_prev_attempts=0,
        studied_credits=60,
        disability="N",
        final_result=frame["final_result"],
    )
    info.to_csv(folder / "studentInfo.csv", index=False)
    frame[[*key, "date_registration", "date_unregistration"]].to_csv(folder / "studentRegistration.csv", index=False)
    pd.DataFrame(
        {"code_module": "AAA", "code_presentation": ["2013J", "2014B"], "module_presentation_length": [200, 200]}
    ).to_csv(folder / "courses.csv", index=False)
    pd.DataFrame(
        {
            "code_module": "AAA",
            "code_presentation": "2014B",
            "id_assessment": [1, 2],
            "assessment_type": ["TMA", "Exam"],
            "date": [20.0, np.nan],
            "weight": [100.0, 100.0],
        }
    ).to_csv(folder / "assessments.csv", index=False)
    pd.DataFrame(
        {"id_assessment": [1], "id_student": [101], "date_submitted": [18], "is_banked": [0], "score": [70.0]}
    ).to_csv(folder / "studentAssessment.csv", index=False)
    return folder


def _score_lists(engine, folder: Path, cohort: str, days: list[int], extra: dict[int, list[str]]) -> None:
    """Store a score for every student on each day's list, as `student-risk score` would (no model needed),
    and for the `extra` ids of a day."""
    for day in days:
        ids = build_table(folder, day, with_outcome=False, presentations=[cohort])["enrolment_id"].tolist()
        ids += extra.get(day, [])
        frame = pd.DataFrame(
            {
                "cohort": cohort,
                "point": f"day{day}",
                "student_id": ids,
                "probability": 0.5,
                "tier": "low",
                "rank": range(1, len(ids) + 1),
                "factors": [[]] * len(ids),
                "model_version": "v-test",
                "scored_at": pd.Timestamp("2014-03-01", tz="UTC"),
            }
        )
        store.write_scores(engine, frame, {})


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'scores.db'}"
    return request.getfixturevalue("pg_url")


def test_oulad_outcomes_of_every_registrant_matched_per_day(url, tmp_path):
    """The student who registered on day 15 is scored at day 30 and gets an outcome (issue 13 item 8: only the
    day-0 list used to be recorded, silently); the ones on no list are named by their studentInfo.csv line."""
    folder = _oulad_folder(tmp_path / "oulad")
    config = load_config(OULAD)
    settings = Settings(home=tmp_path / "rt", store_url=url)
    store.upgrade(url)
    with store.opened(url) as engine:
        _score_lists(engine, folder, "2014B", [0, 30], extra={30: ["AAA-999"]})  # 999: scored, not in studentInfo
    df = jobs.prepare(config, folder, stage="outcomes", point=config.points[0], cohorts=["2014B"])
    assert sorted(df["enrolment_id"]) == [f"AAA-{r[0]}" for r in REGISTRANTS]
    recorded = jobs.record_outcomes(settings, config, df)
    assert _lines(recorded, "2014B") == [
        "2014B: 5 outcomes recorded (3 at risk: Fail, Withdrawn)",
        "  matched to scored students: 2 at day 0, 2 of 3 scored at day 30",
        "  scored students with no outcome in this file: 1 at day 30; left out of the performance figures of those "
        "points",
        "  2 not matched to any scored student (left before the first prediction point or registered after the last "
        "one, or an id no scored intake had): studentInfo.csv lines 5, 7; recorded, but not used in performance "
        "figures",
    ]
    with store.opened(url) as engine:
        judged = store.scored_outcomes(engine, "day30")
    assert len(judged) == 2 and judged.at_risk.sum() == 1  # 102 (Fail) is judged at day 30


def test_oulad_outcomes_of_a_presentation_never_scored_are_refused(tmp_path):
    """Without --cohort the folder holds 2013J too, which was never scored: refused, nothing written."""
    folder = _oulad_folder(tmp_path / "oulad")
    config = load_config(OULAD)
    settings = Settings(home=tmp_path / "rt")
    with store.opened(settings.resolved_store_url) as engine:
        _score_lists(engine, folder, "2014B", [0], extra={})
    df = jobs.prepare(config, folder, stage="outcomes", point=config.points[0])
    with pytest.raises(store.UnscoredCohortError) as err:
        jobs.record_outcomes(settings, config, df)
    assert str(err.value).startswith(
        f"Cohort(s) 2013J have no stored scores in {settings.resolved_store_url}: outcomes are recorded for a cohort "
        "that was scored, to compare them with its scores. Nothing was written."
    )
    with store.opened(settings.resolved_store_url) as engine:
        assert store.count_outcomes(engine, "2014B") == 0 and store.count_outcomes(engine, "2013J") == 0


def test_oulad_settings_name_the_folder_when_given_a_raw_file(tmp_path):
    folder = _oulad_folder(tmp_path / "oulad")
    config = load_config(OULAD)
    raw_file = folder / "studentInfo.csv"
    with pytest.raises(FileNotFoundError) as err:
        jobs.prepare(config, raw_file, stage="outcomes", point=config.points[0], cohorts=["2014B"])
    assert str(err.value) == (
        f'{raw_file} is one of OULAD\'s raw files; the settings ([source] kind = "oulad") read the folder that holds '
        f"them all: pass {folder} instead."
    )
    res = CliRunner().invoke(
        app, ["outcomes", str(raw_file), "-c", str(OULAD), "--home", str(tmp_path / "rt")], env={"COLUMNS": "400"}
    )
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == f"Error: {err.value}"
    other = tmp_path / "export.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(FileNotFoundError) as err:
        jobs.prepare(config, other, stage="train", point="day0")
    assert str(err.value) == (
        f'{other} is a file, but the settings ([source] kind = "oulad") read OULAD\'s raw files: pass the folder '
        "that holds them (studentInfo.csv, studentRegistration.csv, assessments.csv, studentAssessment.csv, "
        "courses.csv)."
    )


def test_oulad_settings_read_a_plain_table_of_outcomes(tmp_path):
    config = load_config(OULAD)
    path = tmp_path / "results.csv"
    path.write_text("enrolment_id,cohort,final_result\nAAA-1,2014B,Pass\nAAA-2,2014B,Withdrawn\n")
    df = jobs.prepare(config, path, stage="outcomes", point=config.points[0])
    assert df["final_result"].tolist() == ["Pass", "Withdrawn"]
    assert (df.attrs["row_word"], df.attrs["row_numbers"]) == ("results.csv line", [2, 3])


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real OULAD files not at {REAL}")
def test_real_oulad_every_student_scored_at_day_0_or_30_has_an_outcome():
    outcomes = outcome_table(REAL, presentations=["2014B"])
    info = pd.read_csv(REAL / "studentInfo.csv", usecols=["code_presentation"])
    assert len(outcomes) == int((info.code_presentation == "2014B").sum()) and outcomes.enrolment_id.is_unique
    assert (outcomes.index + 2).tolist() == (info.index[info.code_presentation == "2014B"] + 2).tolist()
    have = set(outcomes.enrolment_id)
    day0 = set(build_table(REAL, 0, with_outcome=False, presentations=["2014B"]).enrolment_id)
    day30 = set(build_table(REAL, 30, with_outcome=False, presentations=["2014B"]).enrolment_id)
    assert day0 <= have and day30 <= have
    assert len(day30 - day0) > 0  # registered after day 0: these outcomes used to be dropped
