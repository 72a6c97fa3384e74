"""Draft a dataset contract from an export: what `student-risk init FILE` writes.

Each column gets a role by its name and its shape (unique per row, few distinct values,
year-like, whole-number codes), with a comment saying why and a TODO wherever a person must
decide: which outcomes mean "at risk", whether a code is a category, whether a column that
sounds like a result is known at intake (leakage). The draft loads with `load_config` as it
is (the defaults are the cautious choices: sensitive columns out of the model, result-like
columns dropped), so `student-risk check` can run on it at once.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pandas as pd

from risk_model.sources.files import Dialect

_ID = re.compile(r"(^|[^a-z])(id|ids|number|no|num|code|matric\w*|student)([^a-z]|$)", re.I)
_COHORT = re.compile(r"cohort|year|intake|term|session|semester|entry|academic|enrol+ment year", re.I)
_OUTCOME = re.compile(r"target|outcome|result|status|dropout|final|graduat|success", re.I)
_OUTCOME_BEST = re.compile(r"^(target|outcome|result|final[ _]result|status)$", re.I)
_AT_RISK = re.compile(r"drop|fail|withdr|risk|leav|left|unsuccess|incomplete|^no$|^yes$", re.I)
_SENSITIVE = re.compile(
    r"gender|(^|[^a-z])sex([^a-z]|$)|(^|[^a-z])age([^a-z]|$)|nationalit|nacionalit|ethnic|(^|[^a-z])race([^a-z]|$)"
    r"|disab|special[ _-]?needs|religio|marital",
    re.I,
)
_LEAK = re.compile(r"result|grade|outcome|status|dropout|target|final|withdr|graduat", re.I)
_BEFORE = re.compile(r"previous|prior|admission|entry|secondary|school|high[ _-]?school", re.I)  # known at intake
_CODE = re.compile(r"code|course|programme|program|occupation|qualification|mode|nationalit|nacionalit|type", re.I)
_YEARLIKE = re.compile(r"^(19|20)\d\d([/-]\d{2}(\d{2})?|[A-Z])?$")


@dataclass
class _Col:
    name: str
    values: pd.Series  # non-empty values, stripped text
    n_rows: int
    numbers: pd.Series | None = None  # float values when every value is a number
    notes: list[str] = field(default_factory=list)

    @property
    def distinct(self) -> int:
        return int(self.values.nunique())

    @property
    def whole(self) -> bool:
        return self.numbers is not None and bool((self.numbers == self.numbers.round()).all())

    @property
    def yearlike(self) -> bool:
        return len(self.values) > 0 and bool(self.values.str.fullmatch(_YEARLIKE.pattern).all())

    def examples(self, n: int = 4) -> str:
        levels = self.values.value_counts().index.tolist()
        if self.numbers is not None:
            levels = sorted(levels, key=lambda v: float(v))
        shown = ", ".join(_plain(v) for v in levels[:n])
        return shown + (", ..." if len(levels) > n else "")


def _plain(value: object) -> str:
    """A value as comment text: control characters escaped, no line breaks."""
    text = str(value)
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)[1:-1]


def toml_string(text: str) -> str:
    """A TOML basic string for `text`, escapes visible (`\\t` for a tab)."""
    return json.dumps(str(text), ensure_ascii=False).replace("\x7f", "\\u007F")


def _profile(df: pd.DataFrame) -> list[_Col]:
    cols = []
    for name in df.columns:
        raw = df[name]
        values = raw[raw.notna()].astype(str).str.strip()
        values = values[values != ""]
        col = _Col(str(name), values, len(df))
        numbers = pd.to_numeric(values, errors="coerce")
        if len(values) and numbers.notna().all():
            col.numbers = numbers.astype("float64")
        cols.append(col)
    return cols


def _pick_outcome(cols: list[_Col]) -> _Col | None:
    found = [c for c in cols if _OUTCOME.search(c.name) and 2 <= c.distinct <= 10 and not _SENSITIVE.search(c.name)]
    found.sort(key=lambda c: (not _OUTCOME_BEST.match(c.name.strip()), -cols.index(c)))
    return found[0] if found else None


def _pick_cohort(cols: list[_Col]) -> _Col | None:
    def rank(c: _Col) -> tuple:
        return (not _COHORT.search(c.name), not c.yearlike, c.distinct)

    found = [
        c for c in cols if c.distinct <= 40 and len(c.values) == c.n_rows and (_COHORT.search(c.name) or c.yearlike)
    ]
    found = [
        c for c in found if c.yearlike or (c.whole and c.numbers is not None and c.numbers.between(1900, 2100).all())
    ]
    return min(found, key=rank) if found else None


def _pick_id(cols: list[_Col], df: pd.DataFrame, cohort: _Col | None) -> _Col | None:
    def unique(c: _Col) -> bool:
        if len(c.values) != c.n_rows:
            return False
        keys = [cohort.name, c.name] if cohort is not None else [c.name]
        return not df.duplicated(keys).any()

    found = [c for c in cols if unique(c) and not (c.numbers is not None and not c.whole)]
    found.sort(key=lambda c: (not _ID.search(c.name), cols.index(c)))
    return found[0] if found else None


def draft_contract(df: pd.DataFrame, source: str, dialect: Dialect | None = None, name: str = "THIS_FILE.toml") -> str:
    """A commented TOML contract for the table `df` read from `source` (to be saved as `name`): see the module doc."""
    cols = _profile(df)
    outcome = _pick_outcome(cols)
    cohort = _pick_cohort([c for c in cols if c is not outcome])
    ident = _pick_id([c for c in cols if c not in (outcome, cohort)], df, cohort)
    taken = {id(c) for c in (outcome, cohort, ident) if c is not None}

    numeric: list[tuple[str, str]] = []
    categorical: list[tuple[str, str]] = []
    sensitive: list[tuple[str, str]] = []
    dropped: list[tuple[str, str]] = []
    bands: list[tuple[str, list[int]]] = []
    labels: list[_Col] = []
    for c in cols:
        if id(c) in taken:
            continue
        if c.distinct <= 1:
            dropped.append(
                (c.name, f"the same value in every row ({c.examples(1) or 'empty'}): tells the model nothing")
            )
        elif _SENSITIVE.search(c.name):
            sensitive.append((c.name, _sensitive_note(c)))
            if c.whole and c.distinct > 12:
                bands.append((c.name, _cuts(c.numbers)))
            elif c.distinct <= 12 and c.numbers is not None:
                labels.append(c)
        elif _LEAK.search(c.name) and not _BEFORE.search(c.name):
            dropped.append(
                (
                    c.name,
                    "TODO leakage? the name sounds like a result, known only after the course starts. Dropped; "
                    "move it to the features only if it is known when students are scored",
                )
            )
        elif c.numbers is None and c.distinct > max(50, 0.5 * len(c.values)):
            dropped.append((c.name, f"{c.distinct} different texts: free text or a personal identifier (name, email)"))
        elif c.numbers is None:
            categorical.append((c.name, f"text, {c.distinct} values: {c.examples()}"))
        elif _is_code(c):
            categorical.append(
                (
                    c.name,
                    f"whole-number codes, {c.distinct} values ({c.examples()}): read as categories. TODO: move it "
                    "to numeric_features if the numbers are amounts",
                )
            )
        else:
            span = f"{_num(c.numbers.min())} to {_num(c.numbers.max())}"
            todo = (
                f"; TODO: {c.distinct} whole numbers only: if they are codes, move it to categorical_features"
                if c.whole and 3 <= c.distinct <= 10
                else ""
            )
            missing = f", empty in {c.n_rows - len(c.values)} rows" if len(c.values) < c.n_rows else ""
            kind = "0/1 (yes/no)" if c.distinct == 2 and set(c.numbers.unique()) == {0.0, 1.0} else f"numbers, {span}"
            numeric.append((c.name, f"{kind}{missing}{todo}"))
    if not numeric and not categorical:  # a contract needs a feature to load; let the person choose
        promoted = next((d for d in dropped if d[1].startswith("TODO leakage")), None)
        if promoted:
            dropped.remove(promoted)
            categorical.append((promoted[0], "TODO: the only candidate feature; check it is known at intake"))
    return _render(
        source, name, df, dialect, ident, cohort, outcome, numeric, categorical, sensitive, dropped, bands, labels
    )


def _is_code(c: _Col) -> bool:
    """Whole numbers that look like codes: a code-like name, or few values spread far apart (33, 171, 9500)."""
    if not c.whole or c.distinct < 3:
        return False
    assert c.numbers is not None  # c.whole says every value is a number
    span = c.numbers.max() - c.numbers.min() + 1
    return bool((_CODE.search(c.name) and c.distinct <= 100) or (c.distinct <= 60 and span > 3 * c.distinct))


def _sensitive_note(c: _Col) -> str:
    if c.whole and c.distinct > 12 and c.numbers is not None:
        return (
            f"sensitive (by its name); numbers {_num(c.numbers.min())} to {_num(c.numbers.max())}, banded below for "
            "fairness groups"
        )
    return f"sensitive (by its name); values {c.examples()}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _cuts(numbers: pd.Series) -> list[int]:
    """Round cut points at the quartiles: 3-4 bands of similar size."""
    qs = sorted({int(round(numbers.quantile(q))) for q in (0.0, 0.25, 0.5, 0.75)})
    return qs if len(qs) >= 2 else [int(numbers.min()), int(numbers.max())]


def _list(key: str, items: list[tuple[str, str]]) -> list[str]:
    if not items:
        return [f"{key} = []"]
    return [f"{key} = ["] + [f"  {toml_string(name)},  # {_plain(note)}" for name, note in items] + ["]"]


def _render(
    source: str,
    name: str,
    df: pd.DataFrame,
    dialect: Dialect | None,
    ident: _Col | None,
    cohort: _Col | None,
    outcome: _Col | None,
    numeric: list[tuple[str, str]],
    categorical: list[tuple[str, str]],
    sensitive: list[tuple[str, str]],
    dropped: list[tuple[str, str]],
    bands: list[tuple[str, list[int]]],
    labels: list[_Col],
) -> str:
    how = ""
    if dialect is not None:
        enc = {"utf-8-sig": "UTF-8 with a byte-order mark", "utf-8": "UTF-8", "utf-16": "UTF-16"}
        sep = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[dialect.delimiter]
        how = f"; read as {enc.get(dialect.encoding, dialect.encoding)}, {sep}-separated"
    lines = [
        f"# Dataset contract drafted by `student-risk init` from {_plain(source)}",
        f"# ({len(df)} rows, {len(df.columns)} columns{how}).",
        "# Decide every TODO, then check the export against this file (nothing is trained or written):",
        f"#   student-risk check {_plain(source)} -c {_plain(name)}",
        "# Column names are written exactly as in the export (a tab shows as \\t). Every key is described",
        '# in risk_model/config.py and in the README, "Using your own data".',
        "",
        "[dataset]",
    ]
    if ident is not None:
        lines.append(f"id_column = {toml_string(ident.name)}  # unique per student{' and cohort' if cohort else ''}")
    else:
        lines.append('id_column = ""  # TODO: no column is unique per row: add a student id (not a name) to the export')
    if cohort is not None:
        found = ", ".join(_plain(v) for v in sorted(cohort.values.unique())[:8])
        lines.append(f"cohort_column = {toml_string(cohort.name)}  # cohorts found: {found}")
        ordered = ", ".join(toml_string(v) for v in sorted(cohort.values.unique()))
        lines.append(f"# cohort_order = [{ordered}]  # optional: oldest first; other cohorts are then refused")
    else:
        lines.append(
            'cohort_column = ""  # TODO: no year or term column found: add the intake year (or term) to the export'
        )
    if outcome is not None:
        values = sorted(outcome.values.unique())
        risky = [v for v in values if _AT_RISK.search(v)] or values[:1]
        lines.append(f"outcome_column = {toml_string(outcome.name)}  # values: {', '.join(_plain(v) for v in values)}")
        lines.append(
            f"at_risk_values = [{', '.join(toml_string(v) for v in risky)}]  # TODO: which outcomes mean at risk?"
        )
        lines.append(f"outcome_values = [{', '.join(toml_string(v) for v in values)}]  # any other value is refused")
    else:
        lines.append('outcome_column = "outcome"  # TODO: no outcome column found (fine for an intake to score):')
        lines.append("# name the column past cohorts record the result in")
        lines.append('at_risk_values = ["TODO"]  # TODO: the outcome values that mean at risk')
    if dialect is not None:
        lines.append(
            f"# delimiter = {toml_string(dialect.delimiter)}  # detected; set it if detection ever guesses wrong"
        )
        lines.append(f"# encoding = {toml_string(dialect.encoding)}")
    lines.append("")
    lines += _list("numeric_features", numeric)
    lines += _list("categorical_features", categorical)
    lines.append("# Sensitive columns: kept for fairness reports, not used by the model. To let the model use one,")
    lines.append("# list it in sensitive_as_features too; a numeric one (an age) also under numeric_features, so it")
    lines.append("# stays a number rather than one category per value.")
    lines += _list("sensitive_columns", sensitive)
    lines.append("sensitive_as_features = []")
    lines += _list("drop_columns", dropped)
    if bands:
        lines += [
            "",
            "# Fairness groups of numeric sensitive columns (TODO: adjust): [17, 21, 25] gives 17-20, 21-24, 25+.",
        ]
        lines.append("[dataset.bands]")
        lines += [f"{toml_string(name)} = [{', '.join(str(x) for x in cuts)}]" for name, cuts in bands]
    if labels:
        lines += [
            "",
            "# TODO: words for coded values, shown in fairness reports instead of the codes; uncomment and fill in.",
        ]
        for c in labels:
            lines.append(f"# [dataset.value_labels.{toml_string(c.name)}]")
            levels = sorted(c.values.unique(), key=lambda v: float(v))
            lines += [f'# {toml_string(v)} = "..."' for v in levels]
    return "\n".join(lines) + "\n"
