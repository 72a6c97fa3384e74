"""Seeded demo cohorts whose outcome follows a known, noisy mechanism.

Students have prior grades, an entry qualification and tariff points, an age band,
credits, early assessment results, engagement and paid work, plus sensitive attributes
(gender, disability, first in family at university). Risk of failing or withdrawing
rises with low prior grades and early scores, missed early assessments and low
engagement, with thresholds and interactions a linear model cannot express (missing
the early assessment *and* low engagement; long working hours only hurt the
disengaged; part-time load protects mature students), then Bernoulli noise.

The planted drift, in the newest intake only: an admissions change lowers the entry
bar. Entry tariff points fall by about 25, prior grades by about 0.35, and the share of
Access-course and mature (25+) entrants doubles. The mechanism itself is unchanged, so
a model that generalizes keeps its ranking quality while the base rate rises.
`mechanism_shift` > 0 additionally changes the mechanism in the new intake (engagement
stops protecting, an unrecorded factor appears): the planted performance drop.

`activity` is a learning-platform log of the same students (one row per student, day, type
and resource, with a count), days -7 to 84 of the term, driven by the same latent engagement:
engaged students log in on more days and do more per visit; students who go on to withdraw
stop at some day, those who go on to fail fade. It is drawn from its own random stream, so
the student tables are the same with or without it. `risk_model/examples/demo_activity.toml` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

QUALIFICATIONS = ["A-levels", "BTEC", "Access course", "International", "Other"]
AGE_BANDS = ["18-20", "21-24", "25+"]


@dataclass(frozen=True)
class DemoData:
    history: pd.DataFrame  # past cohorts with outcomes
    intake: pd.DataFrame  # the new intake, no outcome
    outcomes: pd.DataFrame  # the new intake's real outcomes, known a year later
    activity: pd.DataFrame | None = None  # learning-platform log of every cohort (student_id, cohort, day, ...)


ACTIVITY_TYPES = ["view", "forum", "quiz", "assignment"]


def _activity(seed: int, year: int, df: pd.DataFrame, engagement: np.ndarray) -> pd.DataFrame:
    """A daily activity log for one cohort, driven by latent engagement and the coming outcome."""
    rng = np.random.default_rng([seed, year])
    n, days = len(df), np.arange(-7, 85)
    outcome = df["outcome"].to_numpy()
    stop = np.where(outcome == "withdrawn", rng.integers(7, 140, n), 10_000)
    fade = np.where(outcome == "fail", 1 / 45, 0.0)
    rate = np.exp(-0.4 + 0.6 * engagement)[:, None] * np.exp(-fade[:, None] * np.maximum(days, 0)[None, :])
    rate = rate * np.where(days < 0, 0.3, 1.0)[None, :]
    active = (rng.random((n, len(days))) < 1 - np.exp(-rate)) & (days[None, :] < stop[:, None])
    student, day = np.nonzero(active)
    visits = len(student)
    return pd.DataFrame(
        {
            "student_id": df["student_id"].to_numpy()[student],
            "cohort": df["cohort"].to_numpy()[student],
            "day": days[day],
            "activity_type": rng.choice(ACTIVITY_TYPES, visits, p=[0.6, 0.15, 0.15, 0.1]),
            "resource": rng.integers(1, 60, visits),
            "count": 1 + rng.poisson(np.exp(0.8 + 0.3 * engagement[student])),
        }
    )


def _cohort(
    rng: np.random.Generator,
    year: int,
    n: int,
    admissions_change: bool,
    mechanism_shift: float,
    seed: int = 0,
    with_activity: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    q_p = np.array([0.55, 0.2, 0.1, 0.1, 0.05])
    age_p = np.array([0.75, 0.15, 0.10])
    if admissions_change:
        q_p = np.array([0.42, 0.2, 0.2, 0.12, 0.06])
        age_p = np.array([0.6, 0.2, 0.2])
    qual = rng.choice(QUALIFICATIONS, n, p=q_p)
    age = rng.choice(AGE_BANDS, n, p=age_p)
    ability = rng.normal(0, 1, n)
    engagement_latent = 0.5 * ability + rng.normal(0, 0.9, n)
    trend = 0.02 * (year - 2019)  # slow grade inflation across years
    gpa = np.clip(2.9 + trend + 0.45 * ability + rng.normal(0, 0.3, n) - (0.35 if admissions_change else 0), 0, 4)
    points = 60 + 30 * gpa + np.where(qual == "BTEC", -12, 0) + rng.normal(0, 12, n) - (12 if admissions_change else 0)
    points = np.where(qual == "International", np.nan, np.clip(points, 40, 200).round())
    mature = age == "25+"
    credits = np.where(mature & (rng.random(n) < 0.5), rng.choice([60, 90], n), 120).astype(float)
    work_hours = np.where(rng.random(n) < np.where(mature, 0.7, 0.35), rng.gamma(2.0, 6.0, n), 0).round()
    hours = np.exp(1.8 + 0.45 * engagement_latent + rng.normal(0, 0.35, n)).round(1)
    missed = rng.poisson(np.exp(-0.9 - 0.8 * engagement_latent))
    early = np.clip(58 + 12 * ability + 4 * engagement_latent + rng.normal(0, 9, n), 0, 100).round()
    no_submission = rng.random(n) < 1 / (1 + np.exp(2.6 + 1.2 * engagement_latent))
    early = np.where(no_submission, np.nan, early)
    gender = rng.choice(["F", "M", "X"], n, p=[0.54, 0.44, 0.02])
    disability = rng.choice(["Y", "N"], n, p=[0.12, 0.88])
    first_gen = rng.choice(["Y", "N"], n, p=[0.35, 0.65])

    z = (
        -1.7
        - 0.6 * (gpa - 2.9)
        + 1.2 * (gpa < 2.4)
        + 1.4 * (np.nan_to_num(early, nan=30.0) < 40)
        + 0.6 * np.minimum(missed, 3)
        + 2.0 * (no_submission & (hours < 4))
        + 0.12 * np.maximum(work_hours - 12, 0) * (hours < 5)
        - 1.2 * (mature & (credits < 120))
        + 0.9 * (mature & (credits == 120) & (work_hours > 10))
        + 0.5 * (qual == "Other")
        + 0.25 * (disability == "Y")
        + 0.15 * (first_gen == "Y")
        - 0.5 * (hours > 10)
    )
    if mechanism_shift:
        unrecorded = rng.normal(0, 1, n)
        z = z + mechanism_shift * (1.5 * unrecorded + 0.5 * (hours > 10) + 0.8 * (early >= 40))
    risk = 1 / (1 + np.exp(-z))
    at_risk = rng.random(n) < risk
    good = np.where(rng.random(n) < 0.25 + 0.1 * (ability > 1), "distinction", "pass")
    bad = np.where(rng.random(n) < 0.55, "fail", "withdrawn")
    ids = 10_000_000 + rng.choice(90_000_000, n, replace=False)
    df = pd.DataFrame(
        {
            "student_id": [f"S{year % 100:02d}{i}" for i in ids],
            "cohort": str(year),
            "prior_gpa": gpa.round(2),
            "entry_qualification": qual,
            "entry_points": points,
            "age_band": age,
            "credits_attempted": credits,
            "early_assessment_score": early,
            "early_assessments_missed": missed.astype(float),
            "vle_hours_per_week": hours,
            "paid_work_hours": work_hours,
            "gender": gender,
            "disability": disability,
            "first_generation": first_gen,
            "outcome": np.where(at_risk, bad, good),
        }
    )
    return df, (_activity(seed, year, df, engagement_latent) if with_activity else None)


def make_demo(
    *,
    n_per_cohort: int = 3000,
    first_year: int = 2019,
    n_past: int = 6,
    seed: int = 0,
    drift: bool = True,
    mechanism_shift: float = 0.0,
    activity: bool = True,
) -> DemoData:
    """Past cohorts `first_year`.. plus one new intake after them (with its later outcomes).

    `activity=False` leaves the learning-platform log out (the student tables are the same): at about
    40 rows a student it is most of the memory, 3 of 3.1 GB at a million students."""
    if n_past < 1 or n_per_cohort < 10:
        raise ValueError(f"need n_past >= 1 and n_per_cohort >= 10, got n_past={n_past}, n_per_cohort={n_per_cohort}")
    rng = np.random.default_rng(seed)
    past = [_cohort(rng, first_year + i, n_per_cohort, False, 0.0, seed, activity) for i in range(n_past)]
    new, new_activity = _cohort(rng, first_year + n_past, n_per_cohort, drift, mechanism_shift, seed, activity)
    history = pd.concat([p[0] for p in past], ignore_index=True)
    return DemoData(
        history=history,
        intake=new.drop(columns=["outcome"]),
        outcomes=new[["student_id", "cohort", "outcome"]],
        activity=pd.concat([*(p[1] for p in past), new_activity], ignore_index=True) if activity else None,
    )


def example_config(name: str = "demo") -> Path:
    """A settings file shipped in the package (`risk_model/examples/<name>.toml`: demo, oulad),
    found through the installed package so it works from any folder."""
    path = Path(str(resources.files("risk_model") / "examples" / f"{name}.toml"))
    if not path.is_file():
        raise FileNotFoundError(f"No example settings {name!r}: {path} is not in the installed package.")
    return path
