"""Where the student table comes from: a ready table (CSV in any common dialect, .xlsx, Parquet:
`files.py`), or raw files a source turns into one for a prediction point (OULAD: `prediction_days`),
plus, with an `[activity]` section, the learning-environment activity known by the point's day."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

from risk_model.config import Config
from risk_model.schema import ContractError, read_table


def point_day(point: str) -> int | None:
    """The day number of a prediction point such as `day30`; None for `default`."""
    return int(point[3:]) if point.startswith("day") and point[3:].isdigit() else None


def load_table(
    config: Config,
    path: str | Path,
    *,
    point: str = "default",
    stage: Literal["train", "score", "outcomes"] = "train",
    cohorts: list[str] | None = None,
) -> pd.DataFrame:
    """Read the student table for `point` (with its activity features); keep only `cohorts` when given.

    For `stage="outcomes"` the rows keep their file positions as the index (a `cohorts` filter keeps
    them), so a row can be named by its line; an OULAD folder gives the outcome of every registrant,
    and a file given with OULAD settings is read as a plain table of outcomes."""
    settings = config.point(point)
    day = settings.day if settings is not None else point_day(point)
    raw = config.source.kind == "oulad"
    if raw and stage == "outcomes" and Path(path).is_file():
        from risk_model.sources.oulad import is_raw_file

        raw = is_raw_file(Path(path))  # a table of outcomes (id, cohort, outcome columns) is read as one
    if raw and stage == "outcomes":
        from risk_model.sources.oulad import outcome_table

        df = outcome_table(Path(path), presentations=cohorts)  # every registrant, whatever the point
    elif raw:
        from risk_model.sources.oulad import build_table

        if day is None:
            raise ContractError(f"prediction point {point!r} is not a day: expected one of {config.points}.")
        df = build_table(Path(path), day, with_outcome=stage != "score", presentations=cohorts)
    else:
        d = config.dataset
        # positions in the file as the index (a Parquet file may bring an index of its own)
        df = read_table(path, delimiter=d.delimiter, encoding=d.encoding, sheet=d.sheet).reset_index(drop=True)
        if cohorts is not None and config.dataset.cohort_column in df.columns:
            # as validation will read them: 2025.0 is cohort 2025
            values = df[config.dataset.cohort_column].astype(str).str.strip()
            values = values.str.replace(r"^\+?(-?\d+)\.0+$", r"\1", regex=True)
            df = df[values.isin([str(c) for c in cohorts])]
    if cohorts is not None and len(df) == 0:
        raise ContractError(
            f"{path}: no rows for cohort(s) {cohorts}. Check --cohort against the file's cohort column."
        )
    if config.activity is not None and stage != "outcomes":
        from risk_model.sources.activity import add_activity

        if day is None:
            raise ContractError(
                f"prediction point {point!r} has no day to window activity: use one of {config.points}."
            )
        c = config.dataset
        df = add_activity(df, config.activity, path, day, id_column=c.id_column, cohort_column=c.cohort_column)
    return df
