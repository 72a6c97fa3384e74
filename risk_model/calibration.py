"""Calibration: the model's raw score (log-odds) to a probability, fitted where it will be used.

Advisors read probabilities, and the estimate of an intake's performance before outcomes
(`risk_model.estimate`) is only as good as they are, so calibration is judged the way the
product is used: out of time. Candidates, simplest first:

- `none`: the model's own probabilities (the logistic of its log-odds; nothing fitted);
- `sigmoid`, `isotonic`: fitted on the model's out-of-fold predictions (folds = whole cohorts);
- `temperature-recent`, `sigmoid-recent`, `isotonic-recent`: fitted on the forward predictions
  of the most recent past cohort (the model trained on the cohorts before it, predicting it).

`choose` picks one by out-of-time evidence: each forward-backtest cohort is predicted by a model
trained on the cohorts before it, each candidate is fitted with what that model could see and
applied to it, and its expected calibration error (ECE) on that cohort is measured. The
simplest candidate whose mean ECE is within one bootstrap standard error of the best wins
(Breiman's one-standard-error rule): a recalibration must earn its parameters. Without any
out-of-time evidence (a single past cohort) the model's own probabilities are kept, and the
choice says why.

Kept apart from training so that loading a model (registry, API) never imports training code.
Calibrators are plain JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from risk_model.bootstrap import resample_counts
from risk_model.evaluate import expected_calibration_error

# (name, method, source); the order is from simplest to most flexible (the one-SE rule's order)
CANDIDATES: tuple[tuple[str, str, str], ...] = (
    ("none", "none", ""),
    ("temperature-recent", "temperature", "recent"),
    ("sigmoid", "sigmoid", "oof"),
    ("sigmoid-recent", "sigmoid", "recent"),
    ("isotonic", "isotonic", "oof"),
    ("isotonic-recent", "isotonic", "recent"),
)
NAMES = tuple(name for name, _, _ in CANDIDATES)
WORDS = {
    "none": "the model's own probabilities (no recalibration)",
    "temperature-recent": "a temperature fitted on the forward predictions of the most recent past cohort",
    "sigmoid": "a sigmoid fitted on out-of-fold predictions",
    "sigmoid-recent": "a sigmoid fitted on the forward predictions of the most recent past cohort",
    "isotonic": "isotonic regression on out-of-fold predictions",
    "isotonic-recent": "isotonic regression on the forward predictions of the most recent past cohort",
}


@dataclass(frozen=True)
class Calibrator:
    """Maps the raw score (log-odds) to a calibrated probability; JSON-serialisable."""

    method: str  # none | temperature | sigmoid | isotonic
    params: dict = field(default_factory=dict)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        if self.method == "none":
            return expit(raw)
        if self.method == "temperature":
            return expit(raw / self.params["t"])
        if self.method == "sigmoid":
            return expit(self.params["a"] * raw + self.params["b"])
        return np.interp(raw, self.params["x"], self.params["y"])

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, method: str) -> Calibrator:
        """Fit `method` (none, temperature, sigmoid or isotonic) on raw scores and outcomes."""
        raw, y = np.asarray(raw, dtype=float), np.asarray(y, dtype=float)
        if method == "none":
            return cls("none", {})
        if method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=1e-4, y_max=1 - 1e-4).fit(raw, y)
            return cls("isotonic", {"x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()})
        if method == "temperature":
            return cls("temperature", {"t": _temperature(raw, y)})
        if method != "sigmoid":
            raise ValueError(f"unknown calibration method {method!r}: use none, temperature, sigmoid or isotonic")
        lr = LogisticRegression(C=1e6).fit(raw.reshape(-1, 1), y)
        return cls("sigmoid", {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])})


def _temperature(raw: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the log loss of expit(raw / T): one parameter, the intercept kept."""

    def loss(log_t: float) -> float:
        p = np.clip(expit(raw / np.exp(log_t)), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    return float(np.exp(minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded").x))


@dataclass(frozen=True)
class Scores:
    """Raw scores (log-odds) of some students and their outcomes."""

    raw: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class Step:
    """One forward-backtest cohort as calibration sees it: the model trained on the cohorts before it,
    its out-of-fold raw scores on those cohorts, and its raw scores on the cohort it then predicted."""

    cohort: str
    oof: Scores
    test: Scores


def candidates(oof: Scores, recent: Scores | None, names: tuple[str, ...] = NAMES) -> dict[str, Calibrator]:
    """Every candidate (of `names`) that can be fitted from a model's out-of-fold scores and, when there is one,
    the forward predictions of the most recent past cohort."""
    out = {}
    for name, method, source in CANDIDATES:
        data = oof if source in ("", "oof") else recent
        if name in names and data is not None:
            out[name] = Calibrator.fit(data.raw, data.y, method)
    return out


def judge(steps: list[Step]) -> list[dict[str, np.ndarray]]:
    """For each backtest step, every candidate's probabilities on the cohort it predicted, each candidate fitted
    with what that step's model could see: the evidence `choose` reads (computed once for a whole backtest)."""
    return [
        {name: cal(step.test.raw) for name, cal in candidates(step.oof, steps[i - 1].test if i else None).items()}
        for i, step in enumerate(steps)
    ]


@dataclass(frozen=True)
class Choice:
    """The calibration chosen for one model, and the out-of-time evidence it was chosen on."""

    name: str
    calibrator: Calibrator
    ece: dict[str, float]  # candidate -> mean out-of-time ECE over the backtest cohorts it was judged on
    judged_on: list[str]  # the backtest cohorts behind those figures
    why: str

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "method": self.calibrator.method,
            "ece": self.ece,
            "judged_on": self.judged_on,
            "why": self.why,
        }


def _ece_resampled(y: np.ndarray, p: np.ndarray, W: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """ECE (as `evaluate.expected_calibration_error`: equal-size groups by risk) of each resample, a row
    of `W` counting how often each student was drawn. Sorted once, every row at once."""
    order = np.argsort(p, kind="stable")
    y, p, W = y[order], p[order], W[:, order].astype(np.float64)
    total = W.sum(axis=1, keepdims=True)
    group = np.minimum(((np.cumsum(W, axis=1) - W) / total * n_bins).astype(np.int64), n_bins - 1)
    rows = group + (np.arange(len(W)) * n_bins)[:, None]
    size = len(W) * n_bins
    gap = np.bincount(rows.ravel(), (W * y).ravel(), size) - np.bincount(rows.ravel(), (W * p).ravel(), size)
    return np.abs(gap.reshape(len(W), n_bins)).sum(axis=1) / total[:, 0]


def _one_se(evidence: dict[str, list[tuple[np.ndarray, np.ndarray]]], seed: int, n_boot: int) -> tuple[str, dict]:
    """The simplest candidate whose mean ECE is within one standard error of the lowest (the standard error
    of that lowest mean, by bootstrap over students, as Breiman's rule uses the best model's own error bar).

    `evidence[name]` is one (y, p) pair per backtest cohort, the same cohorts for every name."""
    names = list(evidence)
    mean = {n: float(np.mean([expected_calibration_error(y, p) for y, p in evidence[n]])) for n in names}
    best = min(names, key=lambda n: mean[n])
    boot = np.zeros(n_boot)
    for j, (y, p) in enumerate(evidence[best]):
        rng = np.random.default_rng([seed, j])
        for start in range(0, n_boot, 25):
            b = min(25, n_boot - start)
            boot[start : start + b] += _ece_resampled(y, p, resample_counts(rng, b, len(y))) / len(evidence[best])
    se = float(np.std(boot, ddof=1))
    for n in names:  # simplest first
        if mean[n] <= mean[best] + se:
            return n, mean
    return best, mean  # pragma: no cover - `best` itself always passes


def choose(
    steps: list[Step],
    oof: Scores,
    configured: str = "auto",
    *,
    judged: list[dict[str, np.ndarray]] | None = None,
    seed: int = 0,
    n_boot: int = 100,
) -> Choice:
    """The calibration for a model whose out-of-fold scores are `oof`, trained on every cohort the
    backtest `steps` predicted (in time order): chosen by out-of-time ECE on those steps, or `configured`.

    The most recent step's forward predictions are what the `-recent` candidates are fitted on.
    `judged`: `judge(steps)` when already computed (a backtest calibrates each year with its prefix)."""
    judged = judge(steps) if judged is None else judged
    evidence: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for step, probabilities in zip(steps, judged, strict=True):
        for name, p in probabilities.items():
            evidence.setdefault(name, []).append((step.test.y, p))
    recent = steps[-1].test if steps else None
    available = [name for name, _, source in CANDIDATES if source in ("", "oof") or recent is not None]
    # judge each candidate that can be fitted now on the cohorts where every one of them could be judged
    comparable = {n: evidence[n] for n in NAMES if n in available and n in evidence}
    depth = min((len(v) for v in comparable.values()), default=0)
    comparable = {n: v[-depth:] for n, v in comparable.items()} if depth else {}
    on = [step.cohort for step in steps][-depth:] if depth else []
    mean: dict[str, float] = {}
    if comparable:
        best, mean = _one_se(comparable, seed, n_boot)
    if configured in available:
        name, why = configured, "set in [training] calibration"
    elif configured != "auto":
        name = "none"
        why = f"{configured} (set in [training] calibration) needs a past cohort predicted out of time; none yet"
    elif not comparable:
        name = "none"
        why = "no cohort predicted out of time yet (one past cohort), so nothing fitted could be judged"
    else:
        name = best
        figures = ", ".join(f"{n} {e:.3f}" for n, e in mean.items())
        why = f"the simplest within one standard error of the lowest out-of-time ECE on {', '.join(on)}: {figures}"
    return Choice(name, candidates(oof, recent, (name,))[name], mean, on, why)
