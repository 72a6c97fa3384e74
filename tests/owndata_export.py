"""A staff member's export with every friction of issue 13 at once, generated (no real students).

Shaped like the public "dropout and academic success" export: `;`-separated, UTF-8 with a
byte-order mark, CRLF line ends, a header with a trailing tab (`Daytime/evening attendance\\t`),
apostrophes, parentheses and non-ASCII in names, integer-coded categories (Course 9500,
occupation 123), a numeric sensitive column (age 17-70), a result-like column that would leak,
years as cohorts, and an intake holding two cohorts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COURSES = [33, 171, 8014, 9003, 9070, 9119, 9130, 9147, 9238, 9254, 9500, 9556, 9670, 9773, 9853, 9991]
OCCUPATIONS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 90, 99, 122, 123, 125, 131, 132, 134, 141, 143, 144, 151, 152, 153]
APPLICATION_MODES = [1, 2, 5, 7, 10, 15, 16, 17, 18, 26, 27, 39, 42, 43, 44, 51, 53, 57]
QUALIFICATIONS = [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 14, 18, 19, 22, 26, 27, 29, 30, 34, 35, 36, 37, 38, 39, 40]
TAB_COLUMN = "Daytime/evening attendance\t"


def make_export(cohorts: list[int], n_per_cohort: int, *, seed: int, with_outcome: bool) -> pd.DataFrame:
    """One row per student per cohort; risk rises with debt, age and weak admission grades."""
    rng = np.random.default_rng(seed)
    frames = []
    for k, year in enumerate(cohorts):
        n = n_per_cohort
        age = np.clip(rng.gamma(2.0, 3.0, n) + 17, 17, 70).round().astype(int)
        admission = rng.normal(127, 14, n).clip(95, 190).round(1)
        debtor = rng.random(n) < 0.12
        fees_ok = rng.random(n) > 0.1
        course = rng.choice(COURSES, n)
        logit = -1.2 + 0.06 * (age - 20) - 0.04 * (admission - 127) + 1.3 * debtor - 1.6 * fees_ok + 0.8
        logit += np.where(course == 9500, -0.6, 0.0) + np.where(course == 33, 0.9, 0.0)
        dropout = rng.random(n) < 1 / (1 + np.exp(-logit))
        graduate = ~dropout & (rng.random(n) < 0.7)
        frame = pd.DataFrame(
            {
                "Student ID": [f"{year}-{i:05d}" for i in range(n)],
                "Marital status": rng.choice([1, 2, 3, 4, 5, 6], n, p=[0.85, 0.09, 0.01, 0.03, 0.015, 0.005]),
                "Application mode": rng.choice(APPLICATION_MODES, n),
                "Course": course,
                TAB_COLUMN: (rng.random(n) < 0.9).astype(int),
                "Previous qualification (grade)": rng.normal(132, 13, n).clip(95, 190).round(1),
                "Nacionality": rng.choice([1, 2, 6, 41, 103], n, p=[0.96, 0.01, 0.01, 0.01, 0.01]),
                "Mother's qualification": rng.choice(QUALIFICATIONS, n),
                "Father's occupation": rng.choice(OCCUPATIONS, n),
                "Admission grade": admission,
                "Debtor": debtor.astype(int),
                "Tuition fees up to date": fees_ok.astype(int),
                "Gender": (rng.random(n) < 0.35).astype(int),
                "Age at enrollment": age,
                "Curricular units 1st sem (credited)": rng.poisson(0.7, n),
                "Curricular units 1st sem (grade)": np.where(dropout, rng.normal(8, 4, n), rng.normal(12.5, 2, n))
                .clip(0, 20)
                .round(2),
                "Taux de chômage (%)": np.full(n, [10.8, 13.9, 9.4, 16.2, 15.5, 8.9][k % 6]),
                "Year of entry": year,
            }
        )
        if with_outcome:
            frame["Target"] = np.where(dropout, "Dropout", np.where(graduate, "Graduate", "Enrolled"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def write_export(df: pd.DataFrame, path: Path) -> Path:
    """As the institution's system writes it: `;`, UTF-8 with BOM, CRLF."""
    path.write_bytes(df.to_csv(sep=";", index=False, lineterminator="\r\n").encode("utf-8-sig"))
    return path
