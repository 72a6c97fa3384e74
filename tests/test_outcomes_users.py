"""Issue 13, item 8: outcomes as users have them.

`student-risk outcomes` takes a plain table (id, cohort and outcome columns as the contract names
them) or, on OULAD, the raw folder, and says so in `--help` and the README. On OULAD it records the
outcome of every registrant, not only of those on the day-0 list, so a student first scored at day 30
is judged too. Every outcome row is matched to a scored student or counted and named by its line
(never by id), per cohort and per prediction point; a re-run replaces, never duplicates.

A second outcomes file that lacks some students whose outcomes are recorded is refused, nothing written,
unless the user chooses --merge (keep the others') or --replace (keep only the file's), each in one
transaction on SQLite and PostgreSQL.
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
        f"2023: 800 outcomes recorded ({at_risk} at risk: fail, withdrawn); they replace the 800 recorded before "
        "(none changed)"
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


# --- a second outcomes file for a cohort with outcomes recorded ------------------------------

OUTCOMES = ["pass", "fail", "distinction", "withdrawn", "pass"]  # cycled over the students
PARTIAL_MESSAGE = (
    "{path}: cohort 2025 has 30 outcomes recorded, this file has 29 of its students (27 recorded before, 2 new), "
    "so 3 recorded before are missing from it. Nothing was written. To update this file's students and keep the "
    "other students' recorded outcomes, run outcomes with --merge (partial=\"merge\"); to keep only this file's "
    'outcomes, deleting the others recorded before, run outcomes with --replace (partial="replace").'
)


def _ids(first: int, last: int) -> list[str]:
    return [f"S{i:02d}" for i in range(first, last)]


def _hand_scored(url: str, tmp_path: Path, cohorts: dict[str, int]) -> Settings:
    """A store (SQLite or PostgreSQL) holding scores of S00, S01, ... per cohort, written by hand (no model)."""
    store.upgrade(url)
    with store.opened(url) as engine:
        for cohort, n in cohorts.items():
            frame = pd.DataFrame(
                {
                    "cohort": cohort,
                    "point": "default",
                    "student_id": _ids(0, n),
                    "probability": np.linspace(0.9, 0.1, n),
                    "tier": "low",
                    "rank": range(1, n + 1),
                    "factors": [[]] * n,
                    "model_version": "v-test",
                    "scored_at": pd.Timestamp("2025-09-01", tz="UTC"),
                }
            )
            store.write_scores(engine, frame, {})
    return Settings(home=tmp_path / "rt", store_url=url)


def _outcomes_file(path: Path, ids: list[str], cohort: str = "2025", flip: tuple[str, ...] = ()) -> Path:
    """An outcomes CSV of `ids`; the students in `flip` get the other side of pass/fail from the usual."""
    usual = {s: OUTCOMES[int(s[1:]) % len(OUTCOMES)] for s in ids}
    for s in flip:
        usual[s] = "pass" if usual[s] in ("fail", "withdrawn") else "fail"
    pd.DataFrame({"student_id": ids, "cohort": cohort, "outcome": [usual[s] for s in ids]}).to_csv(path, index=False)
    return path


def _record(settings: Settings, path: Path, partial: store.Partial = "refuse", **kw) -> dict:
    config = load_config(DEMO)
    return jobs.record_outcomes(settings, config, jobs.prepare(config, path, stage="outcomes", **kw), partial=partial)


def _recorded(settings: Settings, cohort: str = "2025") -> pd.DataFrame:
    with store.opened(settings.resolved_store_url) as engine:
        return store.read_outcomes(engine, cohort).sort_values("student_id").reset_index(drop=True)


@pytest.fixture
def recorded_30(url, tmp_path) -> tuple[Settings, pd.DataFrame]:
    """Cohort 2025: 40 students scored, outcomes of S00-S29 recorded."""
    settings = _hand_scored(url, tmp_path, {"2025": 40})
    first = _record(settings, _outcomes_file(tmp_path / "first.csv", _ids(0, 30)))
    assert _lines(first, "2025")[0] == "2025: 30 outcomes recorded (12 at risk: fail, withdrawn)"
    return settings, _recorded(settings)


def _second_file(tmp_path: Path) -> Path:
    """S03-S31: lacks S00-S02 (recorded), adds S30 and S31, and S10 and S11 changed outcome."""
    return _outcomes_file(tmp_path / "second.csv", _ids(3, 32), flip=("S10", "S11"))


def test_a_file_lacking_recorded_students_is_refused_and_writes_nothing(recorded_30, tmp_path):
    settings, before = recorded_30
    path = _second_file(tmp_path)
    with pytest.raises(store.PartialCohortError) as err:
        _record(settings, path)
    assert str(err.value) == PARTIAL_MESSAGE.format(path=path)
    pd.testing.assert_frame_equal(before, _recorded(settings))  # same rows, ids and recorded_at


def test_merge_updates_the_file_students_and_keeps_the_others(recorded_30, tmp_path):
    settings, before = recorded_30
    path = _second_file(tmp_path)
    merged = _record(settings, path, partial="merge")
    assert _lines(merged, "2025") == [
        "2025: 29 outcomes recorded (12 at risk: fail, withdrawn); merged with the 30 recorded before (2 changed, "
        "2 new): 3 not in this file kept, 32 now recorded",
        "  matched to scored students: 32 of 40 scored",
        "  scored students with no outcome recorded (in this file or kept): 8; left out of the performance figures",
        "  every outcome matched a scored student",
    ]
    after = _recorded(settings).set_index("student_id")
    old = before.set_index("student_id")
    assert list(after.index) == _ids(0, 32)
    kept = _ids(0, 3)
    assert after.loc[kept, ["outcome", "at_risk", "recorded_at"]].equals(
        old.loc[kept, ["outcome", "at_risk", "recorded_at"]]
    )
    assert (old.loc["S10", "outcome"], after.loc["S10", "outcome"]) == ("pass", "fail")
    assert (old.loc["S11", "outcome"], after.loc["S11", "outcome"]) == ("fail", "pass")
    unchanged = [s for s in _ids(3, 30) if s not in ("S10", "S11")]  # keep the time they were first recorded
    assert after.loc[unchanged, "recorded_at"].equals(old.loc[unchanged, "recorded_at"])
    assert (after.loc[["S10", "S11", "S30"], "recorded_at"] > old["recorded_at"].max()).all()
    # the same file merged again changes nothing and duplicates nothing
    again = _record(settings, path, partial="merge")
    assert _lines(again, "2025")[0] == (
        "2025: 29 outcomes recorded (12 at risk: fail, withdrawn); merged with the 32 recorded before (none "
        "changed): 3 not in this file kept, 32 now recorded"
    )
    pd.testing.assert_frame_equal(
        after.drop(columns="id"), _recorded(settings).set_index("student_id").drop(columns="id")
    )


def test_replace_keeps_only_the_file_students(recorded_30, tmp_path):
    settings, _ = recorded_30
    replaced = _record(settings, _second_file(tmp_path), partial="replace")
    assert _lines(replaced, "2025") == [
        "2025: 29 outcomes recorded (12 at risk: fail, withdrawn); they replace the 30 recorded before (2 changed, "
        "2 new): 3 not in this file deleted",
        "  matched to scored students: 29 of 40 scored",
        "  scored students with no outcome in this file: 11; left out of the performance figures",
        "  every outcome matched a scored student",
    ]
    assert _recorded(settings).student_id.tolist() == _ids(3, 32)
    assert replaced["by_cohort"]["2025"]["stored"]["action"] == "replaced-partly"


def test_the_same_file_twice_and_a_file_covering_everyone_are_accepted(recorded_30, tmp_path):
    settings, before = recorded_30
    again = _record(settings, tmp_path / "first.csv")  # the default (refuse): nothing is missing
    assert _lines(again, "2025")[0] == (
        "2025: 30 outcomes recorded (12 at risk: fail, withdrawn); they replace the 30 recorded before (none changed)"
    )
    pd.testing.assert_frame_equal(before.drop(columns="id"), _recorded(settings).drop(columns="id"))
    wider = _outcomes_file(tmp_path / "wider.csv", _ids(0, 33), flip=("S04",))  # everyone, 3 new, 1 changed
    out = _record(settings, wider)
    assert _lines(out, "2025")[0] == (
        "2025: 33 outcomes recorded (14 at risk: fail, withdrawn); they replace the 30 recorded before (1 changed, "
        "3 new)"
    )
    after = _recorded(settings)
    assert after.student_id.tolist() == _ids(0, 33) and after.student_id.is_unique


def test_every_partial_cohort_is_named_in_one_message(url, tmp_path):
    """Two cohorts in one file, both lacking recorded students: one refusal names both, nothing written."""
    settings = _hand_scored(url, tmp_path, {"2024": 10, "2025": 10})
    both = pd.concat(
        [pd.read_csv(_outcomes_file(tmp_path / f"{c}.csv", _ids(0, 10), cohort=c)) for c in ("2024", "2025")]
    )
    both.to_csv(tmp_path / "both.csv", index=False)
    _record(settings, tmp_path / "both.csv")
    part = both[~both.student_id.isin(["S00"]) & ~((both.cohort == 2025) & both.student_id.isin(["S01", "S02"]))]
    part.to_csv(tmp_path / "part.csv", index=False)
    with pytest.raises(store.PartialCohortError) as err:
        _record(settings, tmp_path / "part.csv")
    assert str(err.value).startswith(
        f"{tmp_path / 'part.csv'}: cohort 2024 has 10 outcomes recorded, this file has 9 of its students (9 recorded "
        "before, 0 new), so 1 recorded before are missing from it; cohort 2025 has 10 outcomes recorded, this file "
        "has 7 of its students (7 recorded before, 0 new), so 3 recorded before are missing from it. Nothing was "
        "written."
    )
    assert len(_recorded(settings, "2024")) == 10 and len(_recorded(settings, "2025")) == 10
    # --cohort: only that cohort's rows are recorded, so only its recorded students count
    out = _record(settings, tmp_path / "part.csv", partial="merge", cohorts=["2024"])
    assert out["cohorts"] == ["2024"] and len(_recorded(settings, "2024")) == 10


def test_steps_pass_the_choice_through(recorded_30, tmp_path):
    """`flows.steps.outcomes` (what the CLI and the Prefect flow run) records with the chosen `partial`."""
    from flows import steps

    settings, _ = recorded_30

    def only_recording(step, fn, /, *args, **kwargs):  # the reports need a model; recording does not
        return fn(*args, **kwargs) if step in ("validate", "record-outcomes") else {}

    config, path = load_config(DEMO), str(_second_file(tmp_path))
    with pytest.raises(store.PartialCohortError):
        steps.outcomes(config, settings, path, run=only_recording)
    recorded, _, _ = steps.outcomes(config, settings, path, partial="replace", run=only_recording)
    assert recorded["by_cohort"]["2025"]["stored"]["action"] == "replaced-partly"
    assert len(_recorded(settings)) == 29


def test_cli_options_reach_the_flow_and_the_deployment(monkeypatch, tmp_path):
    """With a Prefect server, the CLI runs the outcomes flow with `partial`; the deployment takes its default
    from STUDENT_RISK_DEPLOY_OUTCOMES_PARTIAL; --merge with --replace is refused."""
    import inspect

    from flows import deploy, pipeline
    from flows.settings import DeploySettings

    for name in ("settings.toml", "history.csv", "intake.csv"):
        (tmp_path / name).write_text("")
    paths = {"config_path": tmp_path / "settings.toml", "history_path": tmp_path / "history.csv"}
    paths["intake_path"] = tmp_path / "intake.csv"
    monkeypatch.delenv("STUDENT_RISK_DEPLOY_OUTCOMES_PARTIAL", raising=False)
    deps = {x.flow_name: x for x in deploy.build(DeploySettings(**paths))}
    assert deps["outcomes"].parameters["partial"] == "refuse"
    monkeypatch.setenv("STUDENT_RISK_DEPLOY_OUTCOMES_PARTIAL", "merge")
    deps = {x.flow_name: x for x in deploy.build(DeploySettings(**paths))}
    assert deps["outcomes"].parameters["partial"] == "merge"
    assert "partial" not in deps["score"].parameters  # scoring keeps its own default (refuse)
    assert DeploySettings().outcomes_partial == "merge"
    monkeypatch.setenv("STUDENT_RISK_DEPLOY_OUTCOMES_PARTIAL", "overwrite")
    with pytest.raises(ValueError, match="outcomes_partial"):
        DeploySettings()
    monkeypatch.delenv("STUDENT_RISK_DEPLOY_OUTCOMES_PARTIAL")

    path = _outcomes_file(tmp_path / "o.csv", _ids(0, 3))
    seen = {}
    signature = inspect.signature(pipeline.outcomes_flow.fn)

    def fake_flow(*args):
        seen.update(signature.bind(*args).arguments)
        return {"recorded": {"by_cohort": {}}, "reports": []}

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")  # never reached: the flow is replaced
    monkeypatch.setattr(pipeline, "outcomes_flow", fake_flow)
    for option, partial in [([], "refuse"), (["--merge"], "merge"), (["--replace"], "replace")]:
        res = CliRunner().invoke(app, ["outcomes", str(path), "-c", str(DEMO), "--home", str(tmp_path), *option])
        assert res.exit_code == 0, res.output
        assert seen["partial"] == partial and seen["outcomes_path"] == str(path)
    res = CliRunner().invoke(app, ["outcomes", str(path), "-c", str(DEMO), "--merge", "--replace"])
    assert res.exit_code == 2 and res.output.strip().splitlines()[-1] == (
        "Error: --merge and --replace exclude each other: choose one."
    )


def _all_recorded_then_a_part(scored: Settings, small_demo, tmp_path: Path) -> Path:
    """Every 2023 outcome recorded; returns a file of all but the first 100 of them (a partial file)."""
    full = tmp_path / "outcomes-2023.csv"
    small_demo.outcomes.to_csv(full, index=False)
    _record(scored, full)
    part = tmp_path / "late.csv"
    small_demo.outcomes.iloc[100:].to_csv(part, index=False)
    return part


@pytest.mark.slow  # the CLI end to end on a trained home: refused, then merged, with the reports after
def test_cli_partial_outcomes_refused_then_merged(scored, small_demo, tmp_path):
    part = _all_recorded_then_a_part(scored, small_demo, tmp_path)
    args = ["outcomes", str(part), "-c", str(DEMO), "--home", str(scored.home)]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "2000"})
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == (
        f"Error: {part}: cohort 2023 has 800 outcomes recorded, this file has 700 of its students (700 recorded "
        "before, 0 new), so 100 recorded before are missing from it. Nothing was written. To update this file's "
        'students and keep the other students\' recorded outcomes, run outcomes with --merge (partial="merge"); to '
        "keep only this file's outcomes, deleting the others recorded before, run outcomes with --replace "
        '(partial="replace").'
    )
    assert "[2023 outcomes]" not in res.output and len(_recorded(scored, "2023")) == 800
    res = CliRunner().invoke(app, [*args, "--merge"])
    assert res.exit_code == 0, res.output
    assert (
        "; merged with the 800 recorded before (none changed): 100 not in this file kept, 800 now recorded"
        in res.output
    )
    assert "  matched to scored students: 800 (every scored student)" in res.output.splitlines()
    assert "[2023 outcomes]" in res.output and len(_recorded(scored, "2023")) == 800


@pytest.mark.slow  # a Prefect run (test harness): the outcomes flow's `partial` parameter, as a deployment passes it
def test_outcomes_flow_refuses_then_replaces(scored, small_demo, tmp_path):
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import outcomes_flow

    part = _all_recorded_then_a_part(scored, small_demo, tmp_path)
    with prefect_test_harness(server_startup_timeout=120):
        state = outcomes_flow(str(DEMO), str(part), str(scored.home), return_state=True)
        assert state.is_failed() and len(_recorded(scored, "2023")) == 800
        with pytest.raises(store.PartialCohortError, match="so 100 recorded before are missing from it"):
            state.result()
        out = outcomes_flow(str(DEMO), str(part), str(scored.home), partial="replace")
    assert out["recorded"]["by_cohort"]["2023"]["lines"][0].endswith(
        "; they replace the 800 recorded before (none changed): 100 not in this file deleted"
    )
    assert len(_recorded(scored, "2023")) == 700
