"""Check an input table against the dataset contract before anything is written.

`validate` returns a clean frame (types coerced, cohort as string) or raises
`ContractError` whose message names the file, the column, a few offending rows
(as file line numbers for CSV) and the fix; every problem of a file in one message, so one
round of fixes is enough. Unseen categories are not an error at
scoring time: `unseen_categories` counts them for the run summary.
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract

Stage = Literal["train", "score", "outcomes"]
_SHOW = 5
COHORT_MAX_LENGTH = 64
_FLOAT_INT = re.compile(r"^[+-]?\d+\.0+$")
_CODE_WORDS = re.compile(
    r"code|course|programme|program|occupation|qualification|mode|nationality|nacionality|type", re.I
)
log = logging.getLogger(__name__)


class ContractError(ValueError):
    """Input that breaks the dataset contract; the message says where and what to do.

    `problems` lists each problem on its own (the message joins them)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


# --- the per-value rules: the frame path (`validate`) and the per-record path (`check_records`) both call these


def missing(value: object) -> bool:
    """A cell with nothing in it: None, NaN or pandas' NA (not blank text: see `key_text`)."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and value != value)


def key_text(value: object) -> str | None:
    """An id or cohort cell as text without surrounding spaces; None when empty or blank."""
    if missing(value):
        return None
    return str(value).strip() or None


def category_text(value: object) -> str | None:
    """A category cell as text without surrounding spaces (a number sent for a category reads as its text)."""
    return None if missing(value) else str(value).strip()


def number(value: object) -> float:
    """A numeric cell as a float (NaN when empty); ValueError for anything else that is not a number,
    as `pd.to_numeric` reads it: ASCII digits, no `_` separators, the text 'nan' is not a number."""
    if type(value) is float:  # the usual cell of a request, NaN included
        return value
    if missing(value):
        return float("nan")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return float("nan")
        if not text.isascii() or "_" in text or text.lstrip("+-").lower() == "nan":
            raise ValueError(f"not a number: {text!r}")
        return float(text)
    return float(value)  # type: ignore[arg-type]


def cohort_text(value: str) -> str:
    """A cohort written as a decimal (2025.0, from a spreadsheet) read as the whole number (2025)."""
    return re.sub(r"\.0+$", "", value).lstrip("+") if _FLOAT_INT.match(value) else value


def cohort_ok(value: str) -> bool:
    """Whether text can name a cohort (it names folders and files later): printable and short."""
    return value.isprintable() and len(value) <= COHORT_MAX_LENGTH


def _each(s: pd.Series, rule: Callable[[object], object]) -> pd.Series:
    """`rule` applied to each cell, computed once per distinct value (ids are few columns, categories repeat)."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if s.dtype == object and len({type(u) for u in uniques}) > 1:  # 1 == 1.0 == True: keep them apart
        return pd.Series([rule(v) for v in s.tolist()], index=s.index, dtype=object)
    results = np.empty(len(uniques) + 1, dtype=object)
    results[:-1] = [rule(u) for u in uniques]
    results[-1] = rule(None)  # code -1: missing
    return pd.Series(results[codes], index=s.index, dtype=object)


def read_table(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """Read a CSV (any common delimiter and encoding, or .gz/.zip), .xlsx or Parquet export.

    Every CSV/Excel column comes as text (validation types it); `risk_model.sources.files` says how."""
    from risk_model.sources.files import ReadError, read_export

    try:
        return read_export(path, delimiter=delimiter, encoding=encoding, sheet=sheet)
    except ReadError as exc:
        raise ContractError(str(exc)) from None


def row_place(source: str) -> tuple[str, int]:
    """How rows are named in messages for this source: file lines, sheet rows or frame positions."""
    name = source.lower()
    if name.endswith((".xlsx", ".xlsm")):
        return "sheet row", 2
    if re.search(r"\.(csv|tsv|txt)(\.gz|\.zip)?$|\.(gz|zip)$", name):
        return "line", 2
    return "row", 0


def _rows(df: pd.DataFrame, mask: Iterable[bool], source: str) -> str:
    """A few offending rows, as CSV line numbers (header is line 1), sheet rows or frame positions."""
    pos = np.flatnonzero(np.asarray(mask, dtype=bool))
    word, offset = row_place(source)
    shown = [f"{word} {p + offset}" for p in pos[:_SHOW]]
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
    """Return `df` typed per the contract, or raise one ContractError listing every problem found.

    stage "train" needs the outcome column, "score" forbids it, "outcomes" needs only
    id, cohort and outcome. `allowed_cohorts` restricts the cohorts accepted. Things worth
    knowing that are not errors (a cohort written 2025.0 read as 2025) are logged and kept in
    `result.attrs["notes"]`.
    """
    c = contract
    if len(df) == 0:
        raise ContractError(f"{source}: the file has no rows. Export the table again with its students.")
    df = df.reset_index(drop=True)
    one_column = _one_column_header(df, source)
    if one_column:
        raise ContractError(one_column)
    problems: list[str] = []
    notes: list[str] = []
    present = _check_columns(df, c, stage, problems)

    out = df.copy()
    for col in [c.id_column, c.cohort_column]:
        if col not in present:
            continue
        out[col] = _each(out[col], key_text)
        missing = out[col].isna()
        if missing.any():
            problems.append(f"column {col!r} is empty at {_rows(out, missing, source)}. Every row needs a {col}.")

    if c.cohort_column in present:
        _check_cohorts(out, c, source, allowed_cohorts, problems, notes)

    if c.id_column in present and c.cohort_column in present:
        dup = out.duplicated([c.cohort_column, c.id_column], keep=False) & out[c.id_column].notna()
        if dup.any():
            first = out.groupby([c.cohort_column, c.id_column], sort=False, dropna=True).cumcount()
            later = np.flatnonzero(dup.to_numpy() & (first.to_numpy() > 0))
            origin = out.reset_index().groupby([c.cohort_column, c.id_column], dropna=True)["index"].transform("min")
            word, offset = row_place(source)
            pairs = [f"{word} {p + offset} repeats {word} {origin.iloc[p] + offset}" for p in later[:_SHOW]]
            more = f" and {len(later) - _SHOW} more" if len(later) > _SHOW else ""
            problems.append(
                f"column {c.id_column!r} repeats students within a cohort: {', '.join(pairs)}{more}. "
                "Each student appears once per cohort: remove the duplicate rows."
            )

    if stage != "outcomes":
        for col in c.numeric_features:
            if col in present:
                out[col] = _numeric(out[col], col, out, source, problems)
        for col in c.categorical + [s for s in c.sensitive_columns if s not in c.categorical + c.numeric_features]:
            if col in present:
                out[col] = _each(out[col], category_text)
        notes += _shape_notes(out, c, present)

    if stage in ("train", "outcomes") and c.outcome_column in present:
        out[c.outcome_column] = _outcome(out, c, source, problems)
    if problems:
        raise ContractError(_message(source, problems), [f"{source}: {p}" for p in problems])
    for note in notes:
        log.warning("%s: %s", source, note)
    keep = [col for col in out.columns if col not in c.drop_columns]
    out = out[keep]
    out.attrs["notes"] = [f"{source}: {n}" for n in notes]
    return out


def check_records(
    records: list[dict],
    contract: DatasetContract,
    *,
    source: str = "input",
    allowed_cohorts: Iterable[str] | None = None,
) -> list[dict]:
    """`validate(..., stage="score")` for records given as dicts (an API request), without a frame.

    The same per-value rules (`key_text`, `cohort_text`, `cohort_ok`, `number`, `category_text`) and
    checks (columns, empty ids and cohorts, accepted cohorts, a student twice in a cohort, numbers,
    infinities), record by record. Returns each record with the contract's columns only: ids, cohorts
    and categories as text, numbers as floats (NaN when unknown). On any problem the frame path runs,
    so the ContractError is `validate`'s own: every problem in one message, in the same words."""
    c = contract
    id_col, cohort_col, numeric = c.id_column, c.cohort_column, c.numeric_features
    texts = c.categorical + [s for s in c.sensitive_columns if s not in c.categorical + numeric]
    known = set(dict.fromkeys([id_col, cohort_col, *c.features, *c.sensitive_columns]))
    accepted = None
    if allowed_cohorts is not None or c.cohort_order is not None:
        accepted = {str(a) for a in (allowed_cohorts if allowed_cohorts is not None else c.cohort_order or [])}
    out: list[dict] = []
    seen: set[tuple[str, str]] = set()
    ok = bool(records)
    for record in records:
        if len(record) != len(known) or not known.issuperset(record):  # missing or unexpected columns
            ok = False
            break
        sid, cohort = key_text(record[id_col]), key_text(record[cohort_col])
        if sid is None or cohort is None:
            ok = False
            break
        cohort = cohort_text(cohort)
        if not cohort_ok(cohort) or (accepted is not None and cohort not in accepted) or (cohort, sid) in seen:
            ok = False
            break
        seen.add((cohort, sid))
        row: dict[str, object] = {id_col: sid, cohort_col: cohort}
        try:
            for col in numeric:
                row[col] = x = number(record[col])
                if math.isinf(x):
                    raise ValueError(col)
        except (TypeError, ValueError):
            ok = False
            break
        for col in texts:
            row[col] = category_text(record[col])
        out.append(row)
    if ok:
        return out
    frame = validate(pd.DataFrame(records), c, stage="score", source=source, allowed_cohorts=allowed_cohorts)
    # no problem after all (a rule here stricter than the frame's): the frame's values
    return [
        {k: (None if missing(v) and k not in c.numeric_features else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]


def _message(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    listed = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
    return f"{source}: {len(problems)} problems; nothing was written. Fix them all, then run again:\n{listed}"


def _one_column_header(df: pd.DataFrame, source: str) -> str | None:
    """The message for a header read as one column because the delimiter was wrong, else None."""
    if len(df.columns) != 1:
        return None
    header = str(df.columns[0])
    for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
        if header.count(sep) >= 1:
            shown = header if len(header) <= 60 else header[:57] + "..."
            return (
                f"{source}: the whole header was read as one column ({shown!r}): the file is {name}-separated but "
                f"was read with another delimiter. Set delimiter = {json.dumps(sep)} in the [dataset] section of the "
                "settings file, or remove the delimiter key to let it be detected."
            )
    return None


def _near(name: str, columns: list[str]) -> str | None:
    """The file's column that `name` most likely means (same but for case, spaces or tabs; or close)."""
    squash = _squash(name)
    same = [col for col in columns if _squash(col) == squash]
    if same:
        return same[0]
    close = difflib.get_close_matches(squash, [_squash(col) for col in columns], n=1, cutoff=0.85)
    return next((col for col in columns if close and _squash(col) == close[0]), None)


def _squash(name: str) -> str:
    return " ".join(str(name).split()).casefold()


def _check_columns(df: pd.DataFrame, c: DatasetContract, stage: Stage, problems: list[str]) -> set[str]:
    """Append the column problems; return the contract's columns that are present."""
    cols = [str(col) for col in df.columns]
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
    extra = [col for col in cols if col not in known and col != c.outcome_column]
    if missing:
        near = {col: _near(col, extra) for col in missing}
        hints = [f"for {col!r} did you mean {n!r}?" for col, n in near.items() if n is not None]
        others = [col for col, n in near.items() if n is None]
        if hints:
            text = (
                f"missing column(s) {missing}. The file's header has near matches: {'; '.join(hints)} "
                "Write each name in the settings file exactly as in the header (or rename the header)."
            )
            if others:
                text += (
                    f" The settings file also expects {others}: add them to the file, or remove them from the "
                    "settings file's dataset section."
                )
        else:
            text = (
                f"missing column(s) {missing}. The settings file expects them; "
                "add them to the file, or remove them from the settings file's dataset section."
            )
        problems.append(text)
        extra = [col for col in extra if col not in set(near.values())]
    if stage == "score" and c.outcome_column in cols:
        problems.append(
            f"column {c.outcome_column!r} (the outcome) is present in an intake to score. "
            "A new intake has no outcome yet: remove the column, or use `student-risk outcomes` to record outcomes."
        )
    if extra:
        problems.append(
            f"unexpected column(s) {extra}. Add them to drop_columns (or to the features) "
            "in the settings file, or remove them from the file."
        )
    return {col for col in [*required, c.outcome_column] if col in cols}


def _check_cohorts(
    out: pd.DataFrame,
    c: DatasetContract,
    source: str,
    allowed: Iterable[str] | None,
    problems: list[str],
    notes: list[str],
) -> None:
    """Cohorts are names of folders and files later: printable, short; 2025.0 is read as 2025."""
    col = c.cohort_column
    cohorts = out[col]
    text = pd.Series(["" if pd.isna(v) else str(v) for v in cohorts], index=cohorts.index, dtype=object)
    floats = text.map(lambda v: bool(_FLOAT_INT.match(v)))
    if floats.any():
        seen = sorted(text[floats].unique())[:_SHOW]
        out.loc[floats, col] = text[floats].map(cohort_text)
        notes.append(
            f"column {col!r} writes cohort(s) {seen} as decimals at {_rows(out, floats, source)}; read as whole "
            "numbers (2025.0 is cohort 2025). Export the column as text or whole numbers to silence this."
        )
        cohorts = out[col]
        text = pd.Series(["" if pd.isna(v) else str(v) for v in cohorts], index=cohorts.index, dtype=object)
    bad = cohorts.notna() & ~text.map(cohort_ok)
    if bad.any():
        values = [v if len(v) <= 40 else v[:37] + "..." for v in sorted(text[bad].unique())[:_SHOW]]
        problems.append(
            f"column {col!r} has cohort value(s) {values} at {_rows(out, bad, source)} that cannot name a cohort: "
            f"a cohort is printable text (no tabs, line breaks or control characters) of at most {COHORT_MAX_LENGTH} "
            "characters, such as 2025, 2025/26 or 2014J. Fix those values."
        )
    accepted = list(allowed) if allowed is not None else c.cohort_order
    if accepted is not None:
        unknown = cohorts.notna() & ~bad & ~cohorts.isin([str(a) for a in accepted])
        if unknown.any():
            values = sorted(cohorts[unknown].unique())[:_SHOW]
            problems.append(
                f"column {col!r} has unknown cohort(s) {values} at {_rows(out, unknown, source)}. "
                f"Accepted here: {list(accepted)}. Fix the value, or add the cohort to cohort_order in the settings file."
            )


def _shape_notes(out: pd.DataFrame, c: DatasetContract, present: set[str]) -> list[str]:
    """Columns whose kind in the contract looks doubtful: whole-number codes read as quantities, and
    categorical columns holding many numbers (an age with one category per year)."""
    notes = []
    for col in c.numeric_features:
        if col not in present or col in c.sensitive_columns:
            continue
        v = out[col].dropna()
        levels = v.nunique()
        whole = len(v) and bool((v == v.round()).all())
        if whole and 3 <= levels <= 60 and (_CODE_WORDS.search(col) or v.min() >= 100):
            notes.append(
                f"column {col!r} is numeric but holds {levels} distinct whole numbers "
                f"({', '.join(str(int(x)) for x in sorted(v.unique())[:4])}, ...): if they are codes, not "
                "quantities, list it under categorical_features."
            )
    for col in c.categorical:
        if col not in present:
            continue
        v = out[col].dropna().astype(str)
        numbers = pd.to_numeric(v, errors="coerce")
        sensitive = col in c.sensitive_columns
        if v.nunique() > (20 if sensitive else 60) and numbers.notna().all():
            where = "numeric_features too (it stays in sensitive_as_features)" if sensitive else "numeric_features"
            notes.append(
                f"column {col!r} is read as categories but holds {v.nunique()} distinct numbers: the model gets one "
                f"category per value{' and fairness reports one group per value' if sensitive else ''}. If it is a "
                f"quantity (an age, a grade), list it under {where}."
            )
    return notes


def _numeric(s: pd.Series, col: str, df: pd.DataFrame, source: str, problems: list[str]) -> pd.Series:
    values = pd.to_numeric(s, errors="coerce").astype("float64")  # vectorised `number`: same values (tested)
    bad = values.isna() & s.notna() & (s.astype(str).str.strip() != "")
    if bad.any():
        examples = s[bad].astype(str).unique()[:_SHOW].tolist()
        problems.append(
            f"column {col!r} must be numeric but has {examples} at {_rows(df, bad, source)}. "
            "Fix those values (leave a cell empty if unknown), or list the column under categorical_features."
        )
    inf = np.isinf(values)
    if inf.any():
        problems.append(f"column {col!r} has infinite values at {_rows(df, inf, source)}. Fix them.")
    return values


def _outcome(df: pd.DataFrame, c: DatasetContract, source: str, problems: list[str]) -> pd.Series:
    s = df[c.outcome_column]
    empty = s.isna() | (s.astype(str).str.strip() == "")
    if empty.any():
        problems.append(
            f"column {c.outcome_column!r} (the outcome) is empty at {_rows(df, empty, source)}. "
            "Past cohorts need an outcome for every student; remove students whose outcome is unknown."
        )
    s = s.astype(str).str.strip().where(~empty, None)
    if c.outcome_values is not None:
        bad = ~empty & ~s.isin(c.outcome_values)
        if bad.any():
            problems.append(
                f"column {c.outcome_column!r} has value(s) {sorted(s[bad].unique())[:_SHOW]} at "
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
