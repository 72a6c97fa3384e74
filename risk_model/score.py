"""Score an intake: calibrated probability, tier and the top contributing factors.

Factors come from LightGBM's `pred_contrib` (exact TreeSHAP on the log-odds scale): for
each student the features that pushed the risk up or down the most. It is ~100x slower
than a plain predict, so it runs in chunks with progress, and can be skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract, ScoringConfig
from risk_model.estimate import expected_performance
from risk_model.explain import factor_text, format_value, typical_values
from risk_model.features import build_features, category_codes, feature_matrix, fill_unlearned, to_lightgbm
from risk_model.registry import Bundle
from risk_model.schema import unseen_categories
from risk_model.train import blend_raw

log = logging.getLogger(__name__)
CHUNK = 20_000


@dataclass
class ScoreResult:
    scores: pd.DataFrame  # student_id, cohort, probability, tier, rank, factors, model_version, point, scored_at
    summary: dict = field(default_factory=dict)


def ranks(p: np.ndarray, ids: np.ndarray | None = None) -> np.ndarray:
    """1 = highest risk. Ties are broken by student id, so the order never depends on row order."""
    p = np.asarray(p, dtype=float)
    order = np.lexsort((np.asarray(ids).astype(str), -p)) if ids is not None else np.argsort(-p, kind="stable")
    rank = np.empty(len(p), dtype=np.int64)
    rank[order] = np.arange(1, len(p) + 1)
    return rank


def tiers(p: np.ndarray, s: ScoringConfig, rank: np.ndarray | None = None) -> np.ndarray:
    """high / medium / low by capacity (top shares of this intake) or by probability thresholds."""
    p = np.asarray(p, dtype=float)
    if s.tier_mode == "threshold":
        return np.where(p >= s.high_threshold, "high", np.where(p >= s.medium_threshold, "medium", "low"))
    rank = ranks(p) if rank is None else rank
    n = len(p)
    return np.where(
        rank <= round(s.high_share * n), "high", np.where(rank <= round(s.medium_share * n), "medium", "low")
    )


def rerank(frame: pd.DataFrame, s: ScoringConfig) -> pd.DataFrame:
    """`frame` (student_id, probability, ...) with rank and tier recomputed over all its rows: a merged cohort."""
    p = frame["probability"].to_numpy(dtype=float)
    rank = ranks(p, frame["student_id"].to_numpy())
    return frame.assign(rank=rank, tier=tiers(p, s, rank))


def top_factors(
    contrib: np.ndarray, X: pd.DataFrame, n: int, describe: Callable[[dict], str] | None = None
) -> list[list[dict]]:
    """Per row, the n features with the largest |contribution|, with direction, value and (given
    `describe`) the factor in plain words."""
    return factors_of(contrib, list(X.columns), X.astype(object).to_numpy(), n, describe)


def factors_of(
    contrib: np.ndarray,
    names: list[str],
    values: np.ndarray,
    n: int,
    describe: Callable[[dict], str] | None = None,
) -> list[list[dict]]:
    """`top_factors` from feature names and a row-by-feature array of the values shown (object)."""
    c = contrib[:, :-1]  # last column is the expected value
    top = np.argsort(-np.abs(c), axis=1)[:, :n]
    out = []
    for i, idx in enumerate(top):
        row = []
        for j in idx:
            v = values[i, j]
            factor = {
                "feature": names[j],
                "direction": "raises" if c[i, j] > 0 else "lowers",
                "contribution": round(float(c[i, j]), 4),
                "value": None if pd.isna(v) else (v if isinstance(v, str) else round(float(v), 4)),
            }
            if describe is not None:
                factor["text"] = describe(factor)
            row.append(factor)
        out.append(row)
    return out


_TYPICAL: dict[str, dict[str, float]] = {}


def describer(bundle: Bundle) -> Callable[[dict], str]:
    """Factor texts for a model: its feature labels, value labels and the typical (median) value of each
    numeric feature among its training students (computed once per model version)."""
    md = bundle.metadata
    key = str(bundle.path)
    if key not in _TYPICAL:
        _TYPICAL[key] = typical_values(bundle.reference(), md["contract"]["numeric_features"])
    typical, labels = _TYPICAL[key], md.get("feature_labels", {})
    value_labels: dict[str, dict[str, str]] = md.get("value_labels", {})

    def describe(f: dict) -> str:
        name = f["feature"]
        coded = value_labels.get(name, {}).get(format_value(f["value"])) if f["value"] is not None else None
        return factor_text(f, labels.get(name, name), typical=typical.get(name), value_label=coded)

    return describe


def probabilities(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> tuple[np.ndarray, list[list[dict]]]:
    """Calibrated probability and top factors of each row. Row by row, so slices of an intake can be
    done apart (other processes or machines); ranks and capacity tiers need the whole cohort: `assemble`."""
    shown = build_features(df, contract, bundle.levels)
    X = to_lightgbm(fill_unlearned(shown, bundle.fill))  # factors are named from `shown`: the contract's names
    threads = 1 if len(X) < CHUNK else 0  # OpenMP start-up costs more than it saves on small inputs
    raw = bundle.booster.predict(X, raw_score=True, num_threads=threads)
    p = bundle.calibrator(blend_raw(raw, shown, *bundle.linear))
    factor_lists: list = [[] for _ in range(len(X))]
    if factors and s.n_factors:
        factor_lists = []
        for start in range(0, len(X), CHUNK):
            part = X.iloc[start : start + CHUNK]
            contrib = bundle.booster.predict(part, pred_contrib=True, num_threads=threads)
            # values as given, not as filled in
            factor_lists += top_factors(contrib, shown.iloc[start : start + CHUNK], s.n_factors, describer(bundle))
            if len(X) > CHUNK:
                progress(f"Explained {min(start + CHUNK, len(X))}/{len(X)} students")
    return p, factor_lists


def unseen_lines(unseen: dict[str, dict[str, int]]) -> list[str]:
    """What a run says of categories never seen in training (`schema.unseen_categories`)."""
    return [
        f"Column {col!r}: {sum(values.values())} student(s) with categories never seen in training "
        f"{sorted(values)[:5]}; scored as 'unknown'."
        for col, values in unseen.items()
    ]


def record_codes(bundle: Bundle) -> dict[str, dict[str, int]]:
    """The training code of each category level of a model (`features.category_codes`); once per model."""
    categorical = [f for f in bundle.features if f in bundle.levels]
    return category_codes(bundle.levels, getattr(bundle.booster, "pandas_categorical", None), categorical)


def score_rows(
    bundle: Bundle,
    rows: list[dict],
    s: ScoringConfig,
    *,
    factors: bool = True,
    codes: dict[str, dict[str, int]] | None = None,
) -> tuple[np.ndarray, list[list[dict]], dict[str, dict[str, int]]]:
    """`probabilities` and the unseen categories of a few checked records (`schema.check_records`) without
    a frame: the model input is a NumPy array in the booster's feature order (`features.feature_matrix`),
    the same numbers LightGBM reads from `build_features`' frame, so the same probabilities and factors.
    `codes`: `record_codes(bundle)`, computed once by a caller that scores often."""
    codes = record_codes(bundle) if codes is None else codes
    unseen: dict[str, dict[str, int]] = {}
    for col, known in codes.items():
        new = Counter(r[col] for r in rows if r[col] is not None and r[col] not in known)
        if new:
            unseen[col] = {str(k): int(v) for k, v in new.most_common()}
    X, shown = feature_matrix(rows, bundle.features, codes, bundle.fill)
    threads = 1 if len(X) < CHUNK else 0
    raw = bundle.booster.predict(X, raw_score=True, num_threads=threads)
    linear, weight = bundle.linear
    if linear is not None and weight < 1.0:  # a blended model: the linear part reads the values as given
        cols = [*linear.numeric, *linear.categorical]
        given = pd.DataFrame({c: [r[c] for r in rows] for c in cols}).astype({c: "float64" for c in linear.numeric})
        raw = blend_raw(raw, given, linear, weight)
    p = bundle.calibrator(raw)
    factor_lists: list[list[dict]] = [[] for _ in range(len(X))]
    if factors and s.n_factors:
        contrib = bundle.booster.predict(X, pred_contrib=True, num_threads=threads)
        factor_lists = factors_of(contrib, bundle.features, shown, s.n_factors, describer(bundle))
    return np.asarray(p, dtype=float), factor_lists, unseen


def score(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> ScoreResult:
    """Score a validated intake with a loaded model bundle."""
    unseen = unseen_categories(df, bundle.levels)
    for line in unseen_lines(unseen):
        progress(line)
    p, factor_lists = probabilities(bundle, df, contract, s, factors=factors, progress=progress)
    return assemble(bundle, df, contract, s, p, factor_lists, unseen)


def assemble(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    p: np.ndarray,
    factor_lists: list[list[dict]],
    unseen: dict[str, dict[str, int]],
) -> ScoreResult:
    """Rank and tier each cohort's probabilities (row order of `df`) into the stored score table.

    Ranks and capacity tiers are computed within each cohort, never across a file that pools several:
    "top 10%" means 10% of each intake."""
    ids = df[contract.id_column].astype(str).to_numpy()
    cohorts = df[contract.cohort_column].astype(str).to_numpy()
    rank = np.empty(len(p), dtype=np.int64)
    tier = np.empty(len(p), dtype=object)
    for cohort in np.unique(cohorts):
        rows = np.flatnonzero(cohorts == cohort)
        rank[rows] = ranks(p[rows], ids[rows])
        tier[rows] = tiers(p[rows], s, rank[rows])
    scored_at = datetime.now(UTC).replace(microsecond=0)
    scores = pd.DataFrame(
        {
            "student_id": ids,
            "cohort": cohorts,
            "probability": p.round(6),
            "tier": tier,
            "rank": rank,
            "factors": factor_lists,
            "model_version": bundle.version,
            "point": bundle.metadata["point"],
            "scored_at": scored_at,
        }
    )
    counts = pd.Series(scores["tier"]).value_counts()
    k = float(bundle.metadata.get("top_k_percent", 10))
    summary = {
        "n_students": int(len(scores)),
        "cohorts": sorted(scores["cohort"].unique().tolist()),
        "model_version": bundle.version,
        "point": bundle.metadata["point"],
        "tiers": {t: int(counts.get(t, 0)) for t in ("high", "medium", "low")},
        "mean_probability": float(p.mean()),
        "top_k_percent": k,
        "unseen_categories": unseen,
        "n_unseen_category_values": int(sum(sum(v.values()) for v in unseen.values())),
        # per cohort: its tiers and what the model expects of it before outcomes (risk_model.estimate)
        "by_cohort": {
            str(c): {
                "n_students": int(len(g)),
                "tiers": {t: int((g["tier"] == t).sum()) for t in ("high", "medium", "low")},
                "expected": expected_performance(g["probability"].to_numpy(), k),
            }
            for c, g in scores.groupby("cohort", sort=True)
        },
    }
    return ScoreResult(scores, summary)
