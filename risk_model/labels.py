"""Words for coded values and bands for numeric sensitive columns, as the contract gives them.

Exports often code categories as numbers (Gender 1/0, Course 9500). Readers of a fairness
report or an advisor reading factors cannot decode "group 1"; `[dataset.value_labels.Gender]`
says `1 = "male"`. A numeric sensitive column (Age 17-70) would make one fairness group per
year; `[dataset.bands] Age = [17, 21, 25]` slices it into 17-20, 21-24 and 25+ while the model
keeps the number.
"""

from __future__ import annotations

import json
import math

import pandas as pd

from risk_model.config import DatasetContract

MISSING = "missing"


def display_name(name: str) -> str:
    """A column name as written, made visible for a page: unchanged when plain (`Mother's qualification`,
    `Année`); quoted with escapes when it has a tab, a line break or spaces at its ends
    (`"Daytime/evening attendance\\t"`), so a reader sees what the file's header holds."""
    text = str(name)
    if text.isprintable() and text == text.strip():
        return text
    return json.dumps(text, ensure_ascii=False)


def code_text(value: object) -> str | None:
    """The text a coded value is looked up by: 1, 1.0 and " 1" are all "1"; None when missing."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    text = str(value).strip()
    if text.endswith(".0") and text[:-2].lstrip("+-").isdigit():
        text = text[:-2]
    return text


def label_value(contract: DatasetContract, column: str, value: object) -> str:
    """The words for `value` of `column` from `[dataset.value_labels]`; the value itself when unlabelled,
    "missing" when empty."""
    text = code_text(value)
    if text is None:
        return MISSING
    return contract.value_labels.get(column, {}).get(text, text)


def _edge(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def band_labels(cuts: list[float]) -> list[str]:
    """Names of the bands cut at `cuts`: [17, 21, 25] -> 17-20, 21-24, 25+ (whole-number edges), else 1.5-<2.5."""
    whole = all(float(c).is_integer() for c in cuts)
    names = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        names.append(f"{_edge(lo)}-{_edge(hi - 1)}" if whole and hi - lo > 1 else f"{_edge(lo)}-<{_edge(hi)}")
        if whole and hi - lo == 1:
            names[-1] = _edge(lo)
    names.append(f"{_edge(cuts[-1])}+")
    return names


def band(contract: DatasetContract, column: str, values: pd.Series) -> pd.Series:
    """The fairness group of each value of `column`, same index as `values`.

    With `[dataset.bands]` for the column: its band ("17-20", "21-24", "25+"; "under 17" below the
    first cut). Otherwise each value's words from `label_value`. Empty values are "missing"."""
    cuts = contract.bands.get(column)
    if not cuts:
        return pd.Series([label_value(contract, column, v) for v in values], index=values.index, dtype=object)
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    names = band_labels(cuts)
    edges = [-math.inf, *cuts, math.inf]
    groups = pd.cut(numbers, bins=edges, right=False, labels=[f"under {_edge(cuts[0])}", *names])
    out = groups.astype(object).where(numbers.notna(), MISSING)
    unreadable = numbers.isna() & values.notna() & (values.astype(str).str.strip() != "")
    out[unreadable] = values[unreadable].astype(str)  # a value that is not a number stays visible as itself
    return out.astype(object)
