"""Turn a validated table into the model's input frame: the only place columns are shaped.

Numeric features become float64; categorical ones become pandas categoricals with the
levels seen in training, so a value never seen in training becomes missing (LightGBM
sends missing values down its learned default branch) instead of failing.

A numeric feature that was never missing in training has no learned branch for a missing
value: LightGBM would read it as 0, an extreme value for most features (a whole module with
no weighted score once scored at 0.94 risk). `missing_fill` records the training median of
each such feature and `fill_unlearned` puts it in, so "unknown" reads as "typical".

A category never seen in training (a new module, say) has no learned branch either: LightGBM
would send it down whichever side of each split holds "the other categories", a guess that put
a new OULAD module's students 17 points below their rate at day 0. `category_mix` records the
share of each level of a categorical feature never missing in training, and `over_levels`
scores such a value as the average of the model's log-odds over those levels, weighted by
their shares: the expected score under the training mix, the categorical side of "typical".

Columns keep the names the contract gives them (`Mother's qualification`, a trailing tab,
`Année`) everywhere: metadata, model card, factors. Only LightGBM sees other names: it writes
spaces as `_` in the names it keeps and refuses `"`, `:`, `,` and brackets outright, so
`to_lightgbm` renames the columns where a frame is handed to it, and back is by position.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract


def category_levels(df: pd.DataFrame, contract: DatasetContract) -> dict[str, list[str]]:
    """Sorted levels of each categorical feature, as learned from training data."""
    return {col: sorted(df[col].dropna().astype(str).unique().tolist()) for col in contract.categorical}


def build_features(df: pd.DataFrame, contract: DatasetContract, levels: dict[str, list[str]]) -> pd.DataFrame:
    """Model input in the contract's feature order with fixed dtypes and category levels."""
    X = pd.DataFrame(index=df.index)
    for col in contract.numeric_features:
        X[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in contract.categorical:
        values = df[col].astype(object).where(df[col].notna(), None)
        X[col] = pd.Categorical(values, categories=levels[col])
    return X[contract.features]


def missing_fill(X: pd.DataFrame, contract: DatasetContract) -> dict[str, float]:
    """Training median of each numeric feature with no missing value in training."""
    return {col: float(X[col].median()) for col in contract.numeric_features if X[col].notna().all()}


def fill_unlearned(X: pd.DataFrame, fill: dict[str, float]) -> pd.DataFrame:
    """Missing values of features never missing in training, as their training median."""
    cols = [c for c in fill if c in X.columns and X[c].isna().any()]
    return X.fillna({c: fill[c] for c in cols}) if cols else X


def category_mix(X: pd.DataFrame, contract: DatasetContract) -> dict[str, dict[str, float]]:
    """Share of each level in `X` (built features) of each categorical feature never missing there."""
    return {
        col: {str(k): float(v) for k, v in X[col].value_counts(normalize=True, sort=False).items() if v > 0}
        for col in contract.categorical
        if X[col].notna().all()
    }


Mix = list[tuple[int, np.ndarray, np.ndarray]]  # per mixed column: its place, its level codes, their shares


def mix_columns(features: list[str], codes: dict[str, dict[str, int]], mix: dict[str, dict[str, float]]) -> Mix:
    """`category_mix` as `over_levels` reads it: each mixed feature's column, its levels' codes (`codes`, as
    `category_codes` gives them) and their shares."""
    out = []
    for j, col in enumerate(features):
        known = [(codes[col][level], share) for level, share in mix.get(col, {}).items() if level in codes.get(col, {})]
        if known:
            out.append((j, np.array([k for k, _ in known], dtype=np.float64), np.array([w for _, w in known])))
    return out


MAX_EXPANSION = 128  # predictions one row may cost in `over_levels`


def over_levels(
    predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, mix: Mix, budget: int | np.ndarray = MAX_EXPANSION
) -> np.ndarray:
    """`predict(X)` (log-odds, one per row, or `pred_contrib` rows), where a row whose value in a mixed column
    is missing or not one of its levels gets the average of `predict` over those levels, weighted by their
    shares. Both outputs are linear in the trees' leaf values, so a row's contributions still add up to its
    log-odds. Several such columns in one row: averaged over each in turn (every combination), while the
    combinations stay within `budget` predictions per row (`MAX_EXPANSION`); a column past that reads as
    missing, LightGBM's own branch, so a record with every category empty costs at most that many."""
    if not mix:
        return predict(X)
    (j, codes, shares), rest = mix[0], mix[1:]
    unknown = _unknown(X[:, j], codes)
    if not unknown.any():  # the usual case: one check, then on to the next column
        return over_levels(predict, X, rest, budget)
    budget = np.broadcast_to(budget, len(X))
    rows = np.flatnonzero(unknown & (budget >= len(codes)))
    out = over_levels(predict, X, rest, budget)
    if len(rows):
        filled = np.repeat(X[rows], len(codes), axis=0)
        filled[:, j] = np.tile(codes, len(rows))
        each = over_levels(predict, filled, rest, np.repeat(budget[rows] // len(codes), len(codes)))
        out[rows] = np.tensordot(shares, each.reshape(len(rows), len(codes), *each.shape[1:]), axes=([0], [1]))
    return out


def _unknown(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Whether each value is missing or not one of `codes` (category codes: small whole numbers). A table
    lookup: `np.isin` cost 0.1 ms a call for one record, more than its prediction."""
    top = int(codes.max())
    table = np.zeros(top + 2, dtype=bool)  # the last entry stands for anything outside 0..top
    table[codes.astype(np.intp)] = True
    outside = np.isnan(values) | (values < 0) | (values > top)
    return ~table[np.where(outside, top + 1, values).astype(np.intp)]


def lightgbm_names(columns: list[str]) -> list[str]:
    """Names LightGBM keeps as given: ASCII letters, digits and `_`, unique; same order as `columns`."""
    names: list[str] = []
    for i, col in enumerate(columns):
        base = re.sub(r"[^A-Za-z0-9_]+", "_", str(col)).strip("_") or "feature"
        names.append(base if base not in names else f"{base}_{i}")
    return names


def to_lightgbm(X: pd.DataFrame) -> pd.DataFrame:
    """`X` with the column names LightGBM accepts (`lightgbm_names`); values and order unchanged."""
    return X.set_axis(lightgbm_names(list(X.columns)), axis=1)


def category_codes(
    levels: dict[str, list[str]], trained: list[list] | None, categorical: list[str]
) -> dict[str, dict[str, int]]:
    """Per categorical feature, the code LightGBM reads for each training level of a frame from
    `build_features`: its place among the categories the booster was trained with (`trained`, the booster's
    `pandas_categorical`, one list per categorical column in feature order; None: `levels` as they are)."""
    codes = {}
    for i, col in enumerate(categorical):
        order = list(trained[i]) if trained else list(levels[col])
        place = {v: k for k, v in enumerate(order)}
        codes[col] = {v: place[v] for v in levels[col] if v in place}
    return codes


def feature_matrix(
    rows: list[dict],
    features: list[str],
    codes: dict[str, dict[str, int]],
    fill: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Checked records (`schema.check_records`) as LightGBM reads `fill_unlearned(build_features(...))`:
    float64 in `features` order, categories as their training codes (`category_codes`; unseen or missing:
    NaN), missing numbers of features never missing in training as the training median. Also the values
    as factors show them (`build_features`' values: before the fill, an unseen category missing)."""
    n, nan = len(rows), float("nan")
    X = np.empty((n, len(features)), dtype=np.float64)
    shown = np.empty((n, len(features)), dtype=object)
    for j, col in enumerate(features):
        values = [r[col] for r in rows]
        if col in codes:
            known = codes[col]
            X[:, j] = [known.get(v, nan) if v is not None else nan for v in values]
            shown[:, j] = [v if v in known else nan for v in values]
        else:
            X[:, j] = values
            shown[:, j] = X[:, j]
            if col in fill:
                column = X[:, j]
                column[np.isnan(column)] = fill[col]
    return X, shown


def places(values: pd.Series, levels) -> np.ndarray:
    """The place of each value among `levels` (-1: missing or not one of them): a hash lookup, faster than
    a `pd.Categorical` (which also warns, in pandas 3, about values outside its categories)."""
    return pd.Index(list(levels)).get_indexer(values)


def frame_matrix(
    df: pd.DataFrame, features: list[str], codes: dict[str, dict[str, int]], fill: dict[str, float]
) -> np.ndarray:
    """`feature_matrix` for a validated frame, with NumPy: the numbers LightGBM reads from
    `to_lightgbm(fill_unlearned(build_features(...)))` (its pandas reader turns a categorical column into
    the codes of the booster's training categories, -1 as missing), without building that frame. Building
    it cost more than the prediction itself for intakes of a few thousand students (`bench/bench_score.py`)."""
    X = np.empty((len(df), len(features)), dtype=np.float64)
    numeric = [j for j, col in enumerate(features) if col not in codes]
    names = [features[j] for j in numeric]
    if all(pd.api.types.is_numeric_dtype(df[col]) for col in names):  # a validated frame: one block copy
        X[:, numeric] = df[names].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        for j, col in zip(numeric, names, strict=True):
            X[:, j] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    for j, col in enumerate(features):
        if col in codes:
            known = codes[col]
            trained = np.append(np.array(list(known.values()), dtype=np.float64), np.nan)
            X[:, j] = trained[places(df[col], known)]  # place -1 picks the NaN at the end
        elif col in fill:
            column = X[:, j]
            column[np.isnan(column)] = fill[col]
    return X


def given_column(df: pd.DataFrame, col: str, codes: dict[str, dict[str, int]]) -> np.ndarray:
    """One feature of a validated frame as factors show it: a number as given (float64, NaN when missing,
    before `fill_unlearned`), or a category the model knows (object; None when missing or never seen)."""
    if col in codes:
        levels = np.array([*codes[col], None], dtype=object)
        return levels[places(df[col], codes[col])]  # place -1 picks the None
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def shown_values(df: pd.DataFrame, features: list[str], codes: dict[str, dict[str, int]]) -> np.ndarray:
    """The values factors show for each row of a validated frame (object, `features` order, `given_column`):
    the same as `feature_matrix`'s second array for records."""
    out = np.empty((len(df), len(features)), dtype=object)
    for j, col in enumerate(features):
        out[:, j] = given_column(df, col, codes)
    return out
