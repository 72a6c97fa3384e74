"""The promise about a new intake: a range for its ROC AUC, stated before outcomes exist.

Three pieces of evidence, all known on the day an intake is scored:
- the forward backtest: each past cohort predicted by a model trained only on the cohorts
  before it (the promise's centre: it is how this procedure did on years it never saw);
- how much that AUC moved from one past cohort to the next (cohort-held-out folds and the
  backtest, minus what their own sampling noise explains), plus the sampling noise of a
  cohort the size of this intake (Hanley & McNeil);
- this intake itself: its expected AUC from its own calibrated probabilities
  (`risk_model.estimate`), and how much of the model's weight lies in features that drifted.
The range spans both the backtest centre and the intake's own estimate, widened by the
noise above. When the drifted features carry much of the model's weight the promise is first
widened, then withdrawn, and the words say why. Past cohorts drifted from each other too, and
the cohort-to-cohort spread above already carries what that did to the AUC: so when the drift
between past cohorts is known (`usual`, measured by the same tests), only the drift beyond it
widens or withdraws the promise. With a single past cohort there is no evidence of
how much performance moves between cohorts, so no range is promised (only the estimate is given).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from risk_model.evaluate import auc_standard_error

Z95 = 1.959964


@dataclass(frozen=True)
class Promise:
    """What the product promises about an intake's ROC AUC, and why."""

    centre: float  # mean forward-backtest AUC (NaN without a backtest)
    estimate: float  # expected AUC of this intake from its own probabilities
    low: float
    high: float
    status: str  # "holds", "widened" or "withdrawn"
    drifted_weight: float  # share of the model's importance in features that drifted
    between_cohort_sd: float
    noise_sd: float
    text: str
    # the largest share of the model's importance that drifted between one past cohort and the others
    # (NaN when not measured: reports made before it existed, or a single past cohort)
    usual_drifted_weight: float = float("nan")

    def contains(self, auc: float, digits: int = 2) -> bool:
        """Whether a real AUC fell inside the range, compared at the rounding the range is printed with."""
        return self.status != "withdrawn" and round(self.low, digits) <= round(auc, digits) <= round(self.high, digits)

    def to_dict(self) -> dict:
        return asdict(self)


def _cohort_aucs(by_cohort: dict[str, dict]) -> list[tuple[float, float]]:
    """(AUC, its sampling variance) per cohort, from a metrics-by-cohort table."""
    out = []
    for cohort, m in by_cohort.items():
        auc = m.get("roc_auc", float("nan"))
        if cohort == "all" or auc is None or math.isnan(auc):
            continue
        n, rate = m["n"], m["base_rate"]
        out.append((auc, auc_standard_error(auc, n * rate, n * (1 - rate)) ** 2))
    return out


def between_cohort_sd(metrics: dict) -> float:
    """How much the model's AUC moves from one cohort to another beyond sampling noise: pooled over the
    cohort-held-out folds and the forward backtest (each a set of cohorts the model never trained on).
    NaN without two such cohorts: nothing shows how much it moves."""
    deviations, noise = [], []
    for kind in ("cv", "backtest"):
        cohorts = _cohort_aucs(metrics.get(kind, {}).get("lightgbm", {}))
        if len(cohorts) < 2:
            continue
        aucs = np.array([a for a, _ in cohorts])
        deviations += list(aucs - aucs.mean())
        noise += [v for _, v in cohorts]
    if len(deviations) < 2:
        return float("nan")
    observed = float(np.sum(np.square(deviations)) / max(1, len(deviations) - 1))
    return math.sqrt(max(0.0, observed - float(np.mean(noise))))


def drifted_weight(importance: dict[str, float], drifted: dict[str, bool]) -> float:
    """Share of the model's total importance held by features that drifted (by weight, not by count)."""
    total = sum(max(0.0, v) for v in importance.values())
    if total <= 0:
        return 0.0
    return sum(max(0.0, v) for f, v in importance.items() if drifted.get(f)) / total


def make_promise(
    metrics: dict,
    estimate: dict,
    *,
    importance: dict[str, float] | None = None,
    drifted: dict[str, bool] | None = None,
    usual: float | None = None,
    widen_at: float = 0.2,
    withdraw_at: float = 0.5,
) -> Promise:
    """The promise for an intake: `metrics` are the model's training metrics (metadata["metrics"]),
    `estimate` is `risk_model.estimate.expected_performance` of the intake.

    `usual`: the share of the model's importance that drifted between past cohorts (the largest over
    them); the promise is widened or withdrawn by the intake's drifted share beyond it. Both shares are
    compared in the whole percents the text prints, so the words agree with the numbers."""
    backtest = _cohort_aucs(metrics.get("backtest", {}).get("lightgbm", {}))
    centre = float(np.mean([a for a, _ in backtest])) if backtest else float("nan")
    est = float(estimate["roc_auc"])
    n, rate = estimate["n"], estimate["at_risk_rate"]
    reference = centre if not math.isnan(centre) else est
    noise = auc_standard_error(reference, n * rate, n * (1 - rate))
    noise = 0.0 if math.isnan(noise) else noise
    between = between_cohort_sd(metrics)
    half = Z95 * math.sqrt((0.0 if math.isnan(between) else between) ** 2 + noise**2)
    share = drifted_weight(importance or {}, drifted or {})
    usual = float("nan") if usual is None else float(usual)
    beyond = (round(share * 100) - (0 if math.isnan(usual) else round(usual * 100))) / 100
    than_past = f", against at most {usual:.0%} between past cohorts," if not math.isnan(usual) else ","
    anchors = [v for v in (centre, est) if not math.isnan(v)]
    low, high = min(anchors) - half, max(anchors) + half
    where = "the forward backtest" if backtest else "this intake's own probabilities (no backtest: one past cohort)"
    if math.isnan(between):
        status = "withdrawn"
        text = (
            "No promise for this intake: the model was validated on a single past cohort, so nothing shows how much "
            f"its performance moves from one cohort to the next. From its own probabilities it expects AUC about "
            f"{est:.2f}; check the outcomes report before relying on the ranking."
        )
    elif beyond >= withdraw_at:
        status = "withdrawn"
        text = (
            f"No promise for this intake: features carrying {share:.0%} of the model's weight drifted{than_past} "
            f"so past cohorts say little about it. From its own probabilities the model expects AUC about {est:.2f}; "
            "check the outcomes report before relying on the ranking."
        )
    else:
        status = "holds"
        if beyond >= widen_at:
            status = "widened"
            extra = beyond * abs(high - low)
            low, high = low - extra, high + extra
        text = (
            f"Expect ROC AUC {max(0.5, low):.2f}-{min(1.0, high):.2f} on this intake (from {where}"
            + (f" {centre:.2f}" if backtest else "")
            + f", this intake's own estimate {est:.2f}, cohort-to-cohort variation and the noise of "
            f"{n} students)." + _drift_words(status, share, usual, beyond, widen_at)
        )
    return Promise(
        centre=centre,
        estimate=est,
        low=max(0.5, low),
        high=min(1.0, high),
        status=status,
        drifted_weight=share,
        between_cohort_sd=between,
        noise_sd=noise,
        text=text,
        usual_drifted_weight=usual,
    )


def _drift_words(status: str, share: float, usual: float, beyond: float, widen_at: float) -> str:
    """The sentence a range ends with about drift: why it was widened, or why drift left it as it is."""
    past = f"past cohorts drifted from each other by up to {usual:.0%}"
    if status == "widened":
        against = f", against at most {usual:.0%} between past cohorts" if not math.isnan(usual) else ""
        return f" Widened: features carrying {share:.0%} of the model's weight drifted{against}."
    if math.isnan(usual) or share <= 0:
        return ""
    if beyond <= 0:
        return (
            f" Features carrying {share:.0%} of the model's weight drifted; {past}, which the range already allows for."
        )
    return (
        f" Features carrying {share:.0%} of the model's weight drifted; {past}, and the {beyond * 100:.0f} points "
        f"beyond that are fewer than the {widen_at * 100:.0f} that widen the range."
    )
