"""Calibration: LightGBM's raw score (log-odds) to a probability, stored as plain JSON.

Kept apart from training so that loading a model (registry, API) never imports the
training code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression


@dataclass(frozen=True)
class Calibrator:
    """Maps LightGBM's raw score (log-odds) to a calibrated probability; JSON-serialisable."""

    method: str
    params: dict

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "sigmoid":
            return expit(self.params["a"] * raw + self.params["b"])
        return np.interp(raw, self.params["x"], self.params["y"])

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
        if method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(raw, y)
            return cls("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
        lr = LogisticRegression(C=1e6).fit(np.asarray(raw).reshape(-1, 1), y)
        return cls("sigmoid", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})
