"""Score an intake in partitions that run apart: other processes, other machines.

Probabilities are computed row by row, so each partition is scored on its own. Ranks and
capacity tiers ("top 10% of the cohort") need the whole cohort's probabilities, so they are
computed once, after every partition is back, in the input's row order; so are the top factors
(TreeSHAP, the slow part), which only the tiers advisors act on get at scoring time
(`score.explain_tiers`, on all the coordinator's cores). The result equals `score.score` on the
whole intake. The runner is a parameter (`map_fn`): builtin `map`, a Dask client's map, Prefect tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from risk_model.config import DatasetContract, ScoringConfig, Settings
from risk_model.registry import Bundle, Registry
from risk_model.schema import unseen_categories
from risk_model.score import ScoreResult, assemble, probability

log = logging.getLogger(__name__)
PartScores = np.ndarray  # a partition's probabilities


def split(df: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """`n` contiguous slices of about equal size (fewer when there are fewer rows), in order."""
    if n < 1:
        raise ValueError(f"Cannot split into n={n} partitions: need n >= 1.")
    n = max(1, min(n, len(df)))
    bounds = np.linspace(0, len(df), n + 1).round().astype(int)
    return [df.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def score_part(bundle: Bundle, part: pd.DataFrame) -> PartScores:
    """The probabilities of one partition (no rank, no tier, no factors)."""
    return probability(bundle, part)


def combine(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    parts: Iterable[PartScores],
    *,
    factors: bool = True,
) -> ScoreResult:
    """The whole cohort's scores from its partitions' probabilities, given in the order of `split`; the
    acted-on tiers explained here (`score.assemble`)."""
    parts = list(parts)
    p = np.concatenate([np.asarray(pp, dtype=float) for pp in parts]) if parts else np.empty(0)
    if len(p) != len(df):
        raise ValueError(
            f"Partitions returned {len(p)} probabilities for {len(df)} students: "
            "a partition is missing or was returned twice."
        )
    return assemble(bundle, df, contract, s, p, unseen_categories(df, bundle.levels), factors=factors)


def score_partitioned(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    *,
    partitions: int,
    factors: bool = True,
    map_fn: Callable = map,
) -> ScoreResult:
    """`score.score`, with the per-row work split into `partitions` and run by `map_fn`.

    `map_fn(func, parts)` must return results in the order of `parts` (builtin `map`,
    `lambda f, xs: [x.result() for x in client.map(f, xs)]` for Dask)."""
    parts = split(df, partitions)

    def one(part: pd.DataFrame) -> PartScores:
        return score_part(bundle, part)

    return combine(bundle, df, contract, s, map_fn(one, parts), factors=factors)


@lru_cache(maxsize=4)
def load_bundle(registry_dir: str, point: str, version: str) -> Bundle:
    """A model version, loaded once per process: what a remote partition worker calls."""
    return Registry(Path(registry_dir)).load(version, point=point)


def save(settings: Settings, result: ScoreResult, *, progress: Callable[[str], None] = log.info) -> dict:
    """Write every partition's scores in one store transaction and export the CSV."""
    from risk_model.jobs import store_scores

    return store_scores(settings, result, progress=progress)
