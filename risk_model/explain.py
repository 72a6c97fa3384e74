"""Factors in plain words: the feature's name as the contract writes it, the student's value,
a comparison, and which way it pushed the risk.

    "average assessment score so far: 42 (typical: 71), raises risk"
    "Tuition fees up to date: no, raises risk"

Without the value some factors read backwards ("tuition fees up to date raises risk" for a
student who is *not* up to date). The same text goes to the CSV export, the API and reports:
it is made once, when the student is scored, and stored with the factor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

MISSING = "not recorded"


def format_value(value: object) -> str:
    """A value as a person writes it: 42, 3.5, 0.27, 1250; text as it is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, str):
        return value
    v = float(value)  # type: ignore[arg-type]
    if v.is_integer():
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".")


def typical_values(reference: pd.DataFrame, numeric: list[str]) -> dict[str, float]:
    """The median of each numeric feature among the training students (the "typical" value shown)."""
    return {c: float(reference[c].median()) for c in numeric if c in reference and reference[c].notna().any()}


def factor_text(
    factor: Mapping,
    label: str,
    *,
    typical: float | str | None = None,
    value_label: str | None = None,
    value_text: str | None = None,
) -> str:
    """One factor in words. `typical`: the typical value (text: already `format_value`d); `value_label`
    replaces the raw value of a coded column ("1" -> "yes"); `value_text` is `format_value` of the
    factor's value when the caller has made it already."""
    value = value_label if value_label is not None else value_text or format_value(factor.get("value"))
    shown = typical if isinstance(typical, str) else format_value(typical)
    comparison = f" (typical: {shown})" if typical is not None and value != MISSING else ""
    return f"{label}: {value}{comparison}, {factor['direction']} risk"
