"""The OULAD source: raw Open University files in, one student table per prediction day out.

`build_table(data_dir, day)` gives one row per student-module-presentation on the module's
list on day `day` (days from module start), with only what the university knew by then:
demographics and prior study, the registration date, and the assessments submitted so far.

When is a fact "known by day N"? Every date here is a whole day, so the rules are:
- a submission counts if `date_submitted <= N`; a banked result (carried over from an
  earlier attempt, `is_banked == 1`) counts from registration, whatever its date;
- an assessment is due by day N if its due date `<= N`; an exam without a date is due on
  the module's last day (`module_presentation_length`);
- a student is on the day-N list if registered on or before day N (or with no recorded
  registration date) and not unregistered *before* day N. Someone who unregisters on day N
  is still on that day's list: they can still be warned that day, and their row carries no
  trace of the unregistration. `date_unregistration` itself is never a feature.
`score_pct_peers` is the mean percentile of the student's scores among everyone's known
scores on the same assessments; `weighted_score_pct_peers` is the percentile of the weighted
score among the classmates on the same module's list that day (modules weigh and mark
differently, so the rank transfers where the raw figure does not). Scores: a "?" score is a
submission whose mark is unknown: it counts as submitted (not missing) but is left out of the score statistics and of `weighted_score`, where a due
assessment not submitted counts as 0. Weights and due dates come from the published
assessment plan; `weighted_score` uses only assessments due by day N. Where all of those
carry zero weight (module GGG's marked assignments) each counts equally, so the feature
means the same in every module; it is NaN only while nothing is due.
`final_result` is the outcome, returned only with `with_outcome=True`.

`outcome_table(data_dir)` gives the outcomes as users record them: the `final_result` of every
registrant of a presentation, whatever their registration dates, since a student who registered
on day 20 is scored from day 30 on and their outcome judges those scores. Each row keeps its
position in `studentInfo.csv` so a row that matches no scored student is named by its line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

KEY = ["code_module", "code_presentation", "id_student"]
MODULE = ["code_module", "code_presentation"]
DEMOGRAPHICS = ["gender", "region", "highest_education", "imd_band", "age_band", "disability"]
PRIOR_STUDY = ["num_of_prev_attempts", "studied_credits"]
ASSESSMENT_FEATURES = [
    "n_due",
    "n_submitted",
    "n_missing",
    "n_late",
    "n_banked",
    "score_mean",
    "score_min",
    "score_last",
    "weighted_score",
    "weighted_score_pct_peers",
    "score_vs_peers",
    "score_pct_peers",
    "days_since_last_submission",
]
OUTCOME = "final_result"
# The letter ending a code_presentation is the month the presentation starts (the dataset's documentation).
START_MONTH = {"B": "February", "J": "October"}
_FILES = ["studentInfo", "studentRegistration", "assessments", "studentAssessment", "courses"]
RAW_FILES = [f"{name}.csv" for name in [*_FILES, "studentVle", "vle"]]
OUTCOME_FILE = "studentInfo.csv"


def build_table(
    data_dir: Path,
    day: int,
    *,
    with_outcome: bool = True,
    presentations: list[str] | None = None,
) -> pd.DataFrame:
    """The student table on day `day` of each module: known facts only, one row per enrolment.

    Columns: `enrolment_id` ("{code_module}-{id_student}", unique within a presentation),
    `cohort` (the code_presentation, e.g. "2013J"), `code_module`, `start_month` (February for a B
    presentation, October for a J one: intakes of the same season resemble each other), demographics, prior
    study, `date_registration`, the assessment features and, if `with_outcome`,
    `final_result`. Numbers are float64 and categories strings; the columns are the same on
    every day (no assessment yet: counts 0, scores NaN). `presentations` keeps only those
    code_presentations (none of them in the data: an empty table with the same columns).
    """
    raw = _read(Path(data_dir))
    info = raw["studentInfo"]
    if presentations is not None:
        info = info[info["code_presentation"].isin(presentations)]

    people = info.merge(raw["studentRegistration"], on=KEY, how="left", validate="one_to_one")
    registered = people["date_registration"].isna() | (people["date_registration"] <= day)
    people = people[registered]
    # Students recorded by day N (those who left since included): their submissions are facts of the cohort.
    recorded = people[KEY]
    on_list = ~(people["date_unregistration"] < day)
    rows = people[on_list].drop(columns="date_unregistration")
    rows = rows.sort_values(["code_presentation", "code_module", "id_student"]).reset_index(drop=True)

    assessment = _assessments(raw["assessments"], raw["courses"])
    known = _known_submissions(raw["studentAssessment"], assessment, recorded, day)
    features = _assessment_features(rows[KEY], assessment, known, day)

    out = pd.DataFrame(
        {
            "enrolment_id": rows["code_module"] + "-" + rows["id_student"].astype(str),
            "cohort": rows["code_presentation"],
            "code_module": rows["code_module"],
            "start_month": rows["code_presentation"].str[-1].map(START_MONTH).fillna("unknown"),
        }
    )
    for col in DEMOGRAPHICS:
        out[col] = rows[col]
    out["imd_band"] = out["imd_band"].fillna("missing").replace({"10-20": "10-20%"})
    for col in [*PRIOR_STUDY, "date_registration"]:
        out[col] = rows[col].astype("float64")
    out = out.join(features)
    if with_outcome:
        out[OUTCOME] = rows[OUTCOME]
    return out


def outcome_table(data_dir: Path, *, presentations: list[str] | None = None) -> pd.DataFrame:
    """The outcome of every registrant: `enrolment_id`, `cohort`, `final_result`, one row per enrolment.

    Only `studentInfo.csv` is read. The index is each row's position among the file's data rows
    (line = position + 2), kept through the `presentations` filter."""
    data_dir = Path(data_dir)
    _check_folder(data_dir, [OUTCOME_FILE])
    info = pd.read_csv(
        data_dir / OUTCOME_FILE,
        usecols=[*KEY, OUTCOME],
        dtype={"code_module": str, "code_presentation": str, "id_student": "int64", OUTCOME: str},
    )
    if presentations is not None:
        info = info[info["code_presentation"].isin(presentations)]
    return pd.DataFrame(
        {
            "enrolment_id": info["code_module"] + "-" + info["id_student"].astype(str),
            "cohort": info["code_presentation"],
            OUTCOME: info[OUTCOME],
        },
        index=info.index,
    )


def is_raw_file(path: Path) -> bool:
    """Whether `path` is one of OULAD's raw files (given where its folder was meant)."""
    return Path(path).is_file() and Path(path).name.removesuffix(".gz") in RAW_FILES


def _check_folder(data_dir: Path, needed: list[str]) -> None:
    """FileNotFoundError naming the fix when `data_dir` is not a folder holding the `needed` raw files."""
    listed = ", ".join(f"{name}.csv" for name in _FILES)
    if is_raw_file(data_dir):
        raise FileNotFoundError(
            f'{data_dir} is one of OULAD\'s raw files; the settings ([source] kind = "oulad") read the folder '
            f"that holds them all: pass {data_dir.parent} instead."
        )
    if data_dir.is_file():
        raise FileNotFoundError(
            f'{data_dir} is a file, but the settings ([source] kind = "oulad") read OULAD\'s raw files: pass the '
            f"folder that holds them ({listed})."
        )
    missing = [name for name in needed if not (data_dir / name).exists()]
    if missing:
        raise FileNotFoundError(
            f"{data_dir}: missing OULAD file(s) {missing}. Pass the folder that holds the raw OULAD CSVs ({listed})."
        )


_CACHE: dict[tuple, dict[str, pd.DataFrame]] = {}


def _read(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The raw files, read once per process and file version: every prediction day reuses them."""
    _check_folder(data_dir, [f"{name}.csv" for name in _FILES])
    key = tuple((str((data_dir / f"{n}.csv").resolve()), (data_dir / f"{n}.csv").stat().st_mtime_ns) for n in _FILES)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _read_files(data_dir)
    return {name: frame.copy(deep=False) for name, frame in _CACHE[key].items()}


def _read_files(data_dir: Path) -> dict[str, pd.DataFrame]:
    text = {"code_module": str, "code_presentation": str}
    return {
        "studentInfo": pd.read_csv(data_dir / "studentInfo.csv", dtype={**text, "id_student": "int64"}),
        "studentRegistration": pd.read_csv(
            data_dir / "studentRegistration.csv",
            dtype={**text, "id_student": "int64", "date_registration": "float64", "date_unregistration": "float64"},
        ),
        "assessments": pd.read_csv(
            data_dir / "assessments.csv",
            dtype={**text, "id_assessment": "int64", "assessment_type": str, "date": "float64", "weight": "float64"},
        ),
        "studentAssessment": pd.read_csv(
            data_dir / "studentAssessment.csv",
            na_values=["?"],
            dtype={
                "id_assessment": "int64",
                "id_student": "int64",
                "date_submitted": "float64",
                "is_banked": "int64",
                "score": "float64",
            },
        ),
        "courses": pd.read_csv(data_dir / "courses.csv", dtype={**text, "module_presentation_length": "float64"}),
    }


def _assessments(assessments: pd.DataFrame, courses: pd.DataFrame) -> pd.DataFrame:
    """Assessments with a due day: undated ones (exams) fall due on the module's last day."""
    a = assessments.merge(courses, on=MODULE, how="left")
    due = a["date"].fillna(a["module_presentation_length"]).fillna(np.inf)
    return a.assign(due=due)[[*MODULE, "id_assessment", "due", "weight"]]


def _known_submissions(
    submissions: pd.DataFrame, assessment: pd.DataFrame, recorded: pd.DataFrame, day: int
) -> pd.DataFrame:
    """Submissions known by `day` from students recorded by then, with their assessment's due day and weight."""
    banked = submissions["is_banked"] == 1
    s = submissions[banked | (submissions["date_submitted"] <= day)]
    s = s.merge(assessment, on="id_assessment", how="inner").merge(recorded, on=KEY, how="inner")
    # Score relative to everyone's known scores on the same assessment: fair across easy and hard tasks.
    s["vs_peers"] = s["score"] - s.groupby("id_assessment")["score"].transform("mean")
    # Percentile among classmates on the same assessment: survives a harder or easier paper next year.
    s["pct_peers"] = s.groupby("id_assessment")["score"].rank(pct=True, method="average")
    return s


def _assessment_features(rows: pd.DataFrame, assessment: pd.DataFrame, known: pd.DataFrame, day: int) -> pd.DataFrame:
    """Per-row assessment features on `day`, indexed like `rows`."""
    due = assessment[assessment["due"] <= day]
    per_module = due.groupby(MODULE).agg(n_due=("id_assessment", "size"), due_weight=("weight", "sum"))
    frame = rows.join(per_module, on=MODULE)
    frame[["n_due", "due_weight"]] = frame[["n_due", "due_weight"]].fillna(0.0)

    # Modules whose due assessments all carry zero weight (GGG's marked TMAs) still show how a
    # student is doing: there each due assessment counts equally.
    equal = per_module.index[per_module["due_weight"] <= 0]
    no_weight = pd.MultiIndex.from_frame(known[MODULE]).isin(equal)
    known = known.assign(weight=np.where(no_weight, 1.0, known["weight"]))
    frame["due_weight"] = np.where(frame["due_weight"] > 0, frame["due_weight"], frame["n_due"])
    s = known.assign(
        own=known["is_banked"] == 0,
        is_due=known["due"] <= day,
        late=(known["is_banked"] == 0) & (known["date_submitted"] > known["due"]),
    )
    s["due_scored_weight"] = np.where(s["is_due"], s["weight"] * s["score"], np.nan)
    s["due_unscored_weight"] = np.where(s["is_due"] & s["score"].isna(), s["weight"], 0.0)
    s["own_date"] = s["date_submitted"].where(s["own"])
    s = s.sort_values(["date_submitted", "due", "id_assessment"], kind="stable")
    agg = s.groupby(KEY).agg(
        n_submitted=("id_assessment", "size"),
        n_due_submitted=("is_due", "sum"),
        n_late=("late", "sum"),
        n_banked=("is_banked", "sum"),
        score_mean=("score", "mean"),
        score_min=("score", "min"),
        score_last=("score", "last"),
        score_vs_peers=("vs_peers", "mean"),
        score_pct_peers=("pct_peers", "mean"),
        weighted_sum=("due_scored_weight", "sum"),
        unscored_weight=("due_unscored_weight", "sum"),
        last_date=("own_date", "max"),
    )
    frame = frame.join(agg, on=KEY)
    counts = ["n_submitted", "n_due_submitted", "n_late", "n_banked", "weighted_sum", "unscored_weight"]
    frame[counts] = frame[counts].fillna(0.0)

    frame["n_missing"] = frame["n_due"] - frame["n_due_submitted"]
    # Not submitted counts as 0; a submission with no recorded score ("?") is left out of the weighting.
    weight = frame["due_weight"] - frame["unscored_weight"]
    frame["weighted_score"] = (frame["weighted_sum"] / weight).where(weight > 0)
    # the same among classmates on the list that day: modules weigh and mark differently
    frame["weighted_score_pct_peers"] = frame.groupby(MODULE)["weighted_score"].rank(pct=True)
    frame["days_since_last_submission"] = day - frame["last_date"]
    return frame[ASSESSMENT_FEATURES].astype("float64")
