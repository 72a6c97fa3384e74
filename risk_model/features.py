"""Turn a validated table into the model's input frame: the only place columns are shaped.

Numeric features become float64; categorical ones become pandas categoricals with the
levels seen in training, so a value never seen in training becomes missing (LightGBM
sends missing values down its learned default branch) instead of failing.
"""

from __future__ import annotations

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
