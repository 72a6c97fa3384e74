"""Check an input table against the dataset contract before anything is written.

`validate` returns a clean frame (types coerced, cohort as string) or raises
`ContractError` whose message names the file, the column, a few offending rows
(as file line numbers for CSV) and the fix. Unseen categories are not an error at
scoring time: `unseen_categories` counts them for the run summary.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract

Stage = Literal["train", "score", "outcomes"]
_SHOW = 5


class ContractError(ValueError):
    """Input that breaks the dataset contract; the message says where and what to do."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file, every CSV column as text (validation types it)."""
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: file not found. Check the path, or export the table as CSV or Parquet.")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        if suffix in {".csv", ".txt"}:
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["", "NA", "NaN", "nan", "null"])
    except pd.errors.EmptyDataError:
        raise ContractError(f"{path}: the file is empty. Export the table again with a header row and data.") from None
    except (ValueError, OSError) as exc:
        raise ContractError(f"{path}: cannot be read as {suffix[1:]} ({exc}).") from None
    raise ContractError(f"{path}: unsupported file type {suffix!r}. Use .csv or .parquet.")


def _rows(df: pd.DataFrame, mask: Iterable[bool], source: str) -> str:
    """A few offending rows, as CSV line numbers (header is line 1) or frame positions."""
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    csv = source.lower().endswith((".csv", ".txt"))
    shown = [f"line {p + 2}" if csv else f"row {p}" for p in pos[:_SHOW]]
    more = f" and {len(pos) - _SHOW} more" if len(pos) > _SHOW else ""
    return ", ".join(shown) + more


def validate(
    df: pd.DataFrame,
    contract: DatasetContract,
    *,
    stage: Stage,
    source: str = "input",
    allowed_cohorts: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Return `df` typed per the contract, or raise ContractError naming what is wrong.

    stage "train" needs the outcome column, "score" forbids it, "outcomes" needs only
    id, cohort and outcome. `allowed_cohorts` restricts the cohorts accepted.
    """
    c = contract
    if len(df) == 0:
        raise ContractError(f"{source}: the file has no rows. Export the table again with its students.")
    df = df.reset_index(drop=True)
    _check_columns(df, c, stage, source)

    out = df.copy()
    for col in [c.id_column, c.cohort_column]:
        missing = out[col].isna() | (out[col].astype(str).str.strip() == "")
        if missing.any():
            raise ContractError(
                f"{source}: column {col!r} is empty at {_rows(out, missing, source)}. Every row needs a {col}."
            )
        out[col] = out[col].astype(str).str.strip()

    cohorts = out[c.cohort_column]
    accepted = list(allowed_cohorts) if allowed_cohorts is not None else c.cohort_order
    if accepted is not None:
        bad = ~cohorts.isin([str(a) for a in accepted])
        if bad.any():
            values = sorted(cohorts[bad].unique())[:_SHOW]
            raise ContractError(
                f"{source}: column {c.cohort_column!r} has unknown cohort(s) {values} at {_rows(out, bad, source)}. "
                f"Accepted here: {list(accepted)}. Fix the value, or add the cohort to cohort_order in the settings file."
            )

    dup = out.duplicated([c.cohort_column, c.id_column], keep=False)
    if dup.any():
        ids = out.loc[dup, c.id_column].unique()[:_SHOW].tolist()
        raise ContractError(
            f"{source}: column {c.id_column!r} repeats student(s) {ids} within a cohort at {_rows(out, dup, source)}. "
            "Each student appears once per cohort: remove the duplicate rows."
        )

    if stage != "outcomes":
        for col in c.numeric_features:
            out[col] = _numeric(out[col], col, out, source)
        for col in c.categorical + [s for s in c.sensitive_columns if s not in c.categorical]:
            out[col] = out[col].astype("string").str.strip().astype(object).where(out[col].notna(), None)

    if stage in ("train", "outcomes"):
        out[c.outcome_column] = _outcome(out, c, source)
    keep = [col for col in out.columns if col not in c.drop_columns]
    return out[keep]


def _check_columns(df: pd.DataFrame, c: DatasetContract, stage: Stage, source: str) -> None:
    cols = set(df.columns)
    if stage == "outcomes":
        required = [c.id_column, c.cohort_column, c.outcome_column]
        known = set(required) | set(c.drop_columns) | set(c.features) | set(c.sensitive_columns)
    else:
        required = [c.id_column, c.cohort_column, *c.features, *c.sensitive_columns]
        required = list(dict.fromkeys(required))
        if stage == "train":
            required.append(c.outcome_column)
        known = set(required) | set(c.drop_columns)
    missing = [col for col in required if col not in cols]
    if missing:
        raise ContractError(
            f"{source}: missing column(s) {missing}. The settings file expects them; "
            "add them to the file, or remove them from the settings file's dataset section."
        )
    if stage == "score" and c.outcome_column in cols:
        raise ContractError(
            f"{source}: column {c.outcome_column!r} (the outcome) is present in an intake to score. "
            "A new intake has no outcome yet: remove the column, or use `student-risk outcomes` to record outcomes."
        )
    extra = [col for col in df.columns if col not in known and col != c.outcome_column]
    if extra:
        raise ContractError(
            f"{source}: unexpected column(s) {extra}. Add them to drop_columns (or to the features) "
            "in the settings file, or remove them from the file."
        )


def _numeric(s: pd.Series, col: str, df: pd.DataFrame, source: str) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce").astype("float64")
    bad = values.isna() & s.notna() & (s.astype(str).str.strip() != "")
    if bad.any():
        examples = s[bad].astype(str).unique()[:_SHOW].tolist()
        raise ContractError(
            f"{source}: column {col!r} must be numeric but has {examples} at {_rows(df, bad, source)}. "
            "Fix those values (leave a cell empty if unknown), or list the column under categorical_features."
        )
    inf = np.isinf(values)
    if inf.any():
        raise ContractError(f"{source}: column {col!r} has infinite values at {_rows(df, inf, source)}. Fix them.")
    return values


def _outcome(df: pd.DataFrame, c: DatasetContract, source: str) -> pd.Series:
    s = df[c.outcome_column]
    empty = s.isna() | (s.astype(str).str.strip() == "")
    if empty.any():
        raise ContractError(
            f"{source}: column {c.outcome_column!r} (the outcome) is empty at {_rows(df, empty, source)}. "
            "Past cohorts need an outcome for every student; remove students whose outcome is unknown."
        )
    s = s.astype(str).str.strip()
    if c.outcome_values is not None:
        bad = ~s.isin(c.outcome_values)
        if bad.any():
            raise ContractError(
                f"{source}: column {c.outcome_column!r} has value(s) {sorted(s[bad].unique())[:_SHOW]} at "
                f"{_rows(df, bad, source)}; allowed: {c.outcome_values}. Fix them or extend outcome_values."
            )
    return s


def at_risk(df: pd.DataFrame, c: DatasetContract) -> np.ndarray:
    """1 where the outcome is one of the contract's at-risk values, else 0."""
    return df[c.outcome_column].isin(c.at_risk_values).to_numpy(dtype=np.int8)


def unseen_categories(df: pd.DataFrame, levels: dict[str, list[str]]) -> dict[str, dict[str, int]]:
    """Per categorical column, the values never seen in training and how many rows have each."""
    found: dict[str, dict[str, int]] = {}
    for col, known in levels.items():
        s = df[col].dropna()
        new = s[~s.isin(known)]
        if len(new):
            found[col] = {str(k): int(v) for k, v in new.value_counts().items()}
    return found
