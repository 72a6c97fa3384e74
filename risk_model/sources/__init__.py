"""Where the student table comes from: a ready table (CSV in any common dialect, .xlsx, Parquet:
`files.py`), or raw files a source turns into one for a prediction point (OULAD: `prediction_days`)."""

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
    """Read the student table for `point`; keep only `cohorts` when given."""
    if config.source.kind == "oulad":
        from risk_model.sources.oulad import build_table

        day = point_day(point)
        if day is None:
            raise ContractError(f"prediction point {point!r} is not a day: expected one of {config.points}.")
        df = build_table(Path(path), day, with_outcome=stage != "score", presentations=cohorts)
    else:
        d = config.dataset
        df = read_table(path, delimiter=d.delimiter, encoding=d.encoding, sheet=d.sheet)
        if cohorts is not None and config.dataset.cohort_column in df.columns:
            # as validation will read them: 2025.0 is cohort 2025
            values = df[config.dataset.cohort_column].astype(str).str.strip()
            values = values.str.replace(r"^\+?(-?\d+)\.0+$", r"\1", regex=True)
            df = df[values.isin([str(c) for c in cohorts])]
    if cohorts is not None and len(df) == 0:
        raise ContractError(
            f"{path}: no rows for cohort(s) {cohorts}. Check --cohort against the file's cohort column."
        )
    return df
