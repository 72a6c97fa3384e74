"""Score an intake: calibrated probability, rank, tier and the top contributing factors.

Factors come from LightGBM's `pred_contrib` (exact TreeSHAP on the log-odds scale; a blended model adds
its linear part's exact contributions in the same blend, `contributions`): for each student the
features that pushed the risk up or down the most. It costs 100-200x a plain
predict, so it is computed where it is read: at scoring, for the tiers advisors act on
(`[scoring] factor_tiers`, default high and medium); every other student keeps the values the
model read (`inputs`) and gets their factors when first looked up through the API or alerted
(`explain_inputs`: the same factors a full pass gives), which are then stored in their place.

Cheaper exact TreeSHAP was measured on the demo model (2026-12, 2 cores): shap's TreeExplainer
hands a LightGBM model to LightGBM's own `pred_contrib` (the same speed); fasttreeshap (v1, v2)
and woodelf do not handle LightGBM's categorical splits (wrong values, or refused).

The model input is a NumPy array built column by column (`features.frame_matrix`), not a
pandas frame: the frame cost more than the prediction for intakes of a few thousand students.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from risk_model.config import DatasetContract, ScoringConfig
from risk_model.estimate import expected_performance
from risk_model.explain import factor_text, format_value, typical_values
from risk_model.features import (
    Mix,
    category_codes,
    feature_matrix,
    frame_matrix,
    given_column,
    mix_columns,
    over_levels,
    shown_values,
)
from risk_model.registry import Bundle
from risk_model.schema import unseen_categories
from risk_model.train import blend_raw

log = logging.getLogger(__name__)
CHUNK = 20_000
NO_FACTORS: list[dict] = []  # the factors of a student not explained (shared by every such row: never mutate)


@dataclass
class ScoreResult:
    scores: pd.DataFrame  # student_id, cohort, probability, tier, rank, factors, model_version, point, scored_at
    summary: dict = field(default_factory=dict)


def ranks(p: np.ndarray, ids: np.ndarray | pd.Series | None = None) -> np.ndarray:
    """1 = highest risk. Ties are broken by student id, so the order never depends on row order.

    Sorted by risk alone, then only the runs of equal risk by id: the same order as sorting every row
    by (risk, id) (a test holds them equal); the ties are sorted by Arrow (1M students tied in fives: 20 ms,
    against 0.4 s for NumPy's lexsort of the ids as fixed-width text)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(-p, kind="stable")
    if ids is not None and len(p) > 1:
        sorted_p = p[order]
        tied = np.flatnonzero(sorted_p[1:] == sorted_p[:-1])  # position i has the risk of i + 1
        if len(tied):
            in_run = np.zeros(len(p), dtype=bool)
            in_run[tied] = in_run[tied + 1] = True
            at = np.flatnonzero(in_run)  # positions in a run of equal risk (a mask: np.union1d sorts, 1 s at 1M)
            run = np.cumsum(np.r_[True, sorted_p[at][1:] != sorted_p[at][:-1]])  # runs are contiguous
            rows = order[at]
            names = ids.iloc[rows] if isinstance(ids, pd.Series) else pd.Series(np.asarray(ids, dtype=object)[rows])
            key = pa.table({"run": run, "id": pa.array(names.astype(str))})  # Arrow: 20x NumPy's lexsort of text
            order[at] = rows[pc.sort_indices(key, sort_keys=[("run", "ascending"), ("id", "ascending")]).to_numpy()]
    rank = np.empty(len(p), dtype=np.int64)
    rank[order] = np.arange(1, len(p) + 1)
    return rank


TIERS = np.array(["high", "medium", "low"], dtype=object)


def tier_codes(p: np.ndarray, s: ScoringConfig, rank: np.ndarray | None = None) -> np.ndarray:
    """`tiers` as places in `TIERS` (0 high, 1 medium, 2 low): counted with `np.bincount`."""
    p = np.asarray(p, dtype=float)
    if s.tier_mode == "threshold":
        return np.where(p >= s.high_threshold, 0, np.where(p >= s.medium_threshold, 1, 2)).astype(np.int8)
    rank = ranks(p) if rank is None else rank
    n = len(p)
    return np.where(rank <= round(s.high_share * n), 0, np.where(rank <= round(s.medium_share * n), 1, 2)).astype(
        np.int8
    )


def tiers(p: np.ndarray, s: ScoringConfig, rank: np.ndarray | None = None) -> np.ndarray:
    """high / medium / low by capacity (top shares of this intake) or by probability thresholds."""
    return TIERS[tier_codes(p, s, rank)]


def tier_counts(codes: np.ndarray) -> dict[str, int]:
    """How many students in each tier (`tier_codes`)."""
    return dict(zip(TIERS, np.bincount(codes, minlength=3).tolist(), strict=True))


def rerank(frame: pd.DataFrame, s: ScoringConfig) -> pd.DataFrame:
    """`frame` (student_id, probability, ...) with rank and tier recomputed over all its rows: a merged cohort."""
    p = frame["probability"].to_numpy(dtype=float)
    rank = ranks(p, frame["student_id"].to_numpy())
    return frame.assign(rank=rank, tier=tiers(p, s, rank))


def factors_of(
    contrib: np.ndarray,
    names: list[str],
    values: np.ndarray,
    n: int,
    describe: Callable[[dict], str] | None = None,
) -> list[list[dict]]:
    """Per row, the n features with the largest |contribution| (`contrib`: LightGBM's pred_contrib), with
    direction, value (from `values`, a row-by-feature object array of the values shown) and, given
    `describe`, the factor in plain words. The top cells are gathered with NumPy and read as Python lists
    once: indexing the arrays cell by cell was most of this function's time (1,000 records: 15 of 20 ms)."""
    c = contrib[:, :-1]  # last column is the expected value
    top = np.argsort(-np.abs(c), axis=1)[:, :n]
    picked = np.take_along_axis(c, top, axis=1).tolist()
    shown = np.take_along_axis(values, top, axis=1).tolist()
    out = []
    for features, contribs, vals in zip(top.tolist(), picked, shown, strict=True):
        row = []
        for j, cj, v in zip(features, contribs, vals, strict=True):
            factor = {
                "feature": names[j],
                "direction": "raises" if cj > 0 else "lowers",
                "contribution": round(cj, 4),
                "value": _shown(v),
            }
            if describe is not None:
                factor["text"] = describe(factor)
            row.append(factor)
        out.append(row)
    return out


def _shown(v: object) -> object:
    """A value as a factor keeps it: text as it is, a number to 4 decimals, None when missing."""
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 4)
    return None if pd.isna(v) else round(float(v), 4)  # type: ignore[arg-type]


_TYPICAL: dict[str, dict[str, float]] = {}


def describer(bundle: Bundle) -> Callable[[dict], str]:
    """Factor texts for a model: its feature labels, value labels and the typical (median) value of each
    numeric feature among its training students (computed once per model version)."""
    md = bundle.metadata
    key = str(bundle.path)
    if key not in _TYPICAL:
        _TYPICAL[key] = typical_values(bundle.reference(), md["contract"]["numeric_features"])
    typical = {name: format_value(v) for name, v in _TYPICAL[key].items()}  # once, not per factor
    labels = md.get("feature_labels", {})
    value_labels: dict[str, dict[str, str]] = md.get("value_labels", {})

    def describe(f: dict) -> str:
        name, shown = f["feature"], format_value(f["value"])
        coded = value_labels.get(name, {}).get(shown) if f["value"] is not None else None
        return factor_text(f, labels.get(name, name), typical=typical.get(name), value_label=coded, value_text=shown)

    return describe


def record_codes(bundle: Bundle) -> dict[str, dict[str, int]]:
    """The training code of each category level of a model (`features.category_codes`); once per model."""
    key = str(bundle.path)
    if key not in _CODES:
        categorical = [f for f in bundle.features if f in bundle.levels]
        _CODES[key] = category_codes(bundle.levels, getattr(bundle.booster, "pandas_categorical", None), categorical)
    return _CODES[key]


_CODES: dict[str, dict[str, dict[str, int]]] = {}


def booster_out(bundle: Bundle, X: np.ndarray, threads: int, contrib: bool = False) -> np.ndarray:
    """The booster's log-odds (or `pred_contrib`, `contrib`) for model input `X`, a category the model never
    saw in a column never missing in training read as the training mix (`features.over_levels`)."""
    key = str(bundle.path)
    if key not in _MIX:
        _MIX[key] = mix_columns(bundle.features, record_codes(bundle), bundle.mix)
    predict = partial(bundle.booster.predict, raw_score=not contrib, pred_contrib=contrib, num_threads=threads)
    return over_levels(predict, X, _MIX[key])


_MIX: dict[str, Mix] = {}


def _threads(n: int) -> int:
    """LightGBM's threads for `n` rows: every core from 100 rows, one below (measured on the 2-core machine,
    quiet: a plain predict of 1,500 rows 2.7 ms on 2 threads against 4.1 ms on one, of 10,000 13 against
    26 ms; TreeSHAP of 1,000 rows 50 against 100 ms; below about 10 rows the same). A single student's
    lookup or record stays on one thread, so concurrent API requests do not each start a team of threads."""
    return 1 if n < 100 else 0


def _request_threads(n: int) -> int:
    """`_threads` for records sent to the API, whose server runs with OMP_NUM_THREADS=1 (`student-risk serve`:
    concurrency comes from requests, so LightGBM's default there is one thread): from 100 rows every core
    this process may use, named explicitly, so a batch of 1,000 records with factors does not wait on one
    core (TreeSHAP of 1,000 rows: 50 ms on 2 threads, 100 ms on one)."""
    if n < 100:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _linear_input(df: pd.DataFrame, bundle: Bundle) -> pd.DataFrame | None:
    """The columns the linear part of a blended model reads, as given (numbers as float); None: no blend."""
    linear, weight = bundle.linear
    if linear is None or weight >= 1.0:
        return None
    cols = {
        c: pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan) for c in linear.numeric
    }
    cols |= {c: df[c].to_numpy(dtype=object) for c in linear.categorical}
    return pd.DataFrame(cols, index=df.index)


def contributions(
    bundle: Bundle, X: np.ndarray, given: pd.DataFrame | dict[str, list] | None, threads: int
) -> np.ndarray:
    """Each feature's contribution to each row's log-odds and, last, the expected log-odds (LightGBM's
    `pred_contrib` layout): exact TreeSHAP of the booster; for a blended model, the same blend of it with the
    linear part's exact contributions (`LinearPart.contributions`), so a factor explains the score the student
    got, not only its LightGBM half. `given`: the linear part's input for those rows (`_linear_input`, or one
    list per column); versions saved before the linear part kept its centre explain the LightGBM half only."""
    contrib = booster_out(bundle, X, threads, contrib=True)
    linear, weight = bundle.linear
    if linear is None or weight >= 1.0 or not linear.centre or given is None:
        return contrib
    terms, expected = linear.contributions(given)
    contrib = weight * contrib
    for name, term in terms.items():
        contrib[:, bundle.features.index(name)] += (1 - weight) * term
    contrib[:, -1] += (1 - weight) * expected
    return contrib


def _given(bundle: Bundle, rows: list[dict]) -> dict[str, list] | None:
    """The linear part's input from checked records, one list per column (None: no blend)."""
    linear, weight = bundle.linear
    if linear is None or weight >= 1.0:
        return None
    return {c: [r[c] for r in rows] for c in [*linear.numeric, *linear.categorical]}


def probability(bundle: Bundle, df: pd.DataFrame, X: np.ndarray | None = None) -> np.ndarray:
    """The calibrated probability of each row of a validated frame (`X`: its `model_input`, if made already).

    Row by row, so slices of an intake can be done apart (other processes or machines); ranks and capacity
    tiers need the whole cohort: `assemble`."""
    X = model_input(bundle, df) if X is None else X
    raw = booster_out(bundle, X, _threads(len(X)))
    given = _linear_input(df, bundle)
    if given is not None:
        raw = blend_raw(raw, given, *bundle.linear)
    return np.asarray(bundle.calibrator(raw), dtype=float)


def model_input(bundle: Bundle, df: pd.DataFrame) -> np.ndarray:
    """What the booster reads for each row of a validated frame (`features.frame_matrix`)."""
    return frame_matrix(df, bundle.features, record_codes(bundle), bundle.fill)


def explain(
    bundle: Bundle,
    df: pd.DataFrame,
    n: int,
    *,
    X: np.ndarray | None = None,
    progress: Callable[[str], None] = log.info,
) -> list[list[dict]]:
    """The top `n` factors of each row of a validated frame (exact TreeSHAP, in chunks with progress).
    Factors show the values as given, not as filled in."""
    X = model_input(bundle, df) if X is None else X
    out: list[list[dict]] = []
    codes, describe = record_codes(bundle), describer(bundle)
    for start in range(0, len(X), CHUNK):
        part = slice(start, start + CHUNK)
        contrib = contributions(bundle, X[part], _linear_input(df.iloc[part], bundle), _threads(len(X)))
        out += factors_of(contrib, bundle.features, shown_values(df.iloc[part], bundle.features, codes), n, describe)
        if len(X) > CHUNK:
            progress(f"Explained {min(start + CHUNK, len(X))}/{len(X)} students")
    return out


def pending_inputs(bundle: Bundle, df: pd.DataFrame, n: int) -> list[dict]:
    """What is kept of each row whose factors are computed later (`explain_inputs`): the model's values as
    factors show them (JSON: NaN as null), in the model's feature order, and how many factors it gets."""
    codes, columns = record_codes(bundle), []
    for col in bundle.features:
        values = given_column(df, col, codes)
        if values.dtype != object:  # a number: NaN as None
            missing, values = np.isnan(values), values.astype(object)
            values[missing] = None
        columns.append(values.tolist())
    return [{"n": n, "values": list(row)} for row in zip(*columns, strict=True)]


def explain_inputs(bundle: Bundle, inputs: list[dict]) -> list[list[dict]]:
    """The factors of rows kept by `pending_inputs`, computed now with the model that scored them: the same
    factors `explain` gives for those rows (same numbers through `features.feature_matrix`, same TreeSHAP)."""
    if not inputs:
        return []
    rows = [dict(zip(bundle.features, i["values"], strict=True)) for i in inputs]
    X, shown = feature_matrix(rows, bundle.features, record_codes(bundle), bundle.fill)
    contrib = contributions(bundle, X, _given(bundle, rows), _threads(len(X)))
    describe, ns = describer(bundle), {int(i["n"]) for i in inputs}
    if len(ns) == 1:
        return factors_of(contrib, bundle.features, shown, ns.pop(), describe)
    return [
        factors_of(contrib[[i]], bundle.features, shown[[i]], int(item["n"]), describe)[0]
        for i, item in enumerate(inputs)
    ]


def probabilities(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> tuple[np.ndarray, list[list[dict]]]:
    """Calibrated probability and top factors of every row (no tiers: each row is explained)."""
    X = model_input(bundle, df)
    p = probability(bundle, df, X)
    if not (factors and s.n_factors):
        return p, [[] for _ in range(len(X))]
    return p, explain(bundle, df, s.n_factors, X=X, progress=progress)


def unseen_in(bundle: Bundle, df: pd.DataFrame, X: np.ndarray) -> dict[str, dict[str, int]]:
    """`schema.unseen_categories` of a validated frame whose model input is `X`: only the columns where the
    model reads a given category as missing are counted (usually none), instead of every column."""
    codes, at = record_codes(bundle), {f: j for j, f in enumerate(bundle.features)}
    lost = [
        c
        for c in bundle.levels
        if c in codes and np.isnan(X[:, at[c]]).any() and (np.isnan(X[:, at[c]]) & df[c].notna().to_numpy()).any()
    ]
    return unseen_categories(df, {c: bundle.levels[c] for c in lost})


def unseen_lines(unseen: dict[str, dict[str, int]], mixed: Collection[str] = ()) -> list[str]:
    """What a run says of categories never seen in training (`schema.unseen_categories`); `mixed`: the
    columns whose unknown categories read as the training mix (`Bundle.mix`)."""
    return [
        f"Column {col!r}: {sum(values.values())} student(s) with categories never seen in training "
        f"{sorted(values)[:5]}; "
        + ("scored as the average over the categories seen in training." if col in mixed else "scored as 'unknown'.")
        for col, values in unseen.items()
    ]


def score_rows(
    bundle: Bundle,
    rows: list[dict],
    s: ScoringConfig,
    *,
    factors: bool = True,
    codes: dict[str, dict[str, int]] | None = None,
    explain_if: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, list[list[dict]], dict[str, dict[str, int]]]:
    """`probabilities` and the unseen categories of a few checked records (`schema.check_records`) without
    a frame: the model input is a NumPy array in the booster's feature order (`features.feature_matrix`),
    the same numbers LightGBM reads from `build_features`' frame, so the same probabilities and factors.
    `codes`: `record_codes(bundle)`, computed once by a caller that scores often. `explain_if`: given the
    probabilities, which records to explain (a mask; default every record); the others get []."""
    codes = record_codes(bundle) if codes is None else codes
    unseen: dict[str, dict[str, int]] = {}
    for col, known in codes.items():
        new = Counter(r[col] for r in rows if r[col] is not None and r[col] not in known)
        if new:
            unseen[col] = {str(k): int(v) for k, v in new.most_common()}
    X, shown = feature_matrix(rows, bundle.features, codes, bundle.fill)
    raw = booster_out(bundle, X, _request_threads(len(X)))
    linear, weight = bundle.linear
    given = _given(bundle, rows)
    if linear is not None and given is not None:  # a blended model: the linear part reads the values as given
        raw = weight * raw + (1 - weight) * linear.logit(given, len(rows))  # `train.blend_raw`, without a frame
    p = np.asarray(bundle.calibrator(raw), dtype=float)
    factor_lists: list[list[dict]] = [[] for _ in range(len(X))]
    if factors and s.n_factors:
        chosen = np.flatnonzero(explain_if(p)) if explain_if is not None else np.arange(len(X))
        if len(chosen):
            picked = None if given is None else {c: [v[i] for i in chosen] for c, v in given.items()}
            contrib = contributions(bundle, X[chosen], picked, _request_threads(len(chosen)))
            found = factors_of(contrib, bundle.features, shown[chosen], s.n_factors, describer(bundle))
            for i, f in zip(chosen, found, strict=True):
                factor_lists[i] = f
    return p, factor_lists, unseen


def score(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> ScoreResult:
    """Score a validated intake with a loaded model bundle: probability, rank and tier for every student,
    top factors for the tiers advisors act on (`assemble`)."""
    X = model_input(bundle, df)
    unseen = unseen_in(bundle, df, X)
    for line in unseen_lines(unseen, bundle.mix):
        progress(line)
    return assemble(bundle, df, contract, s, probability(bundle, df, X), unseen, factors=factors, progress=progress)


def assemble(
    bundle: Bundle,
    df: pd.DataFrame,
    contract: DatasetContract,
    s: ScoringConfig,
    p: np.ndarray,
    unseen: dict[str, dict[str, int]],
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> ScoreResult:
    """Rank and tier each cohort's probabilities (row order of `df`) into the stored score table, and
    explain the students of `s.factor_tiers` (all of them only when every tier is listed).

    Ranks and capacity tiers are computed within each cohort, never across a file that pools several:
    "top 10%" means 10% of each intake. A student not explained now keeps their model input (`inputs`,
    `pending_inputs`) for `explain_inputs`; `factors=False` gives nobody factors, now or later."""
    # ids and cohorts stay pandas strings (Arrow): to NumPy and back was a fifth of scoring's own time
    ids = df[contract.id_column].astype(str).reset_index(drop=True)
    cohorts = df[contract.cohort_column].astype(str).reset_index(drop=True)
    names = sorted(cohorts.unique())
    if len(names) > 1:
        where = pd.Categorical(cohorts, categories=names).codes
        groups = [np.flatnonzero(where == i) for i in range(len(names))]
    else:
        groups = [np.arange(len(p))]
    rank = np.empty(len(p), dtype=np.int64)
    codes = np.empty(len(p), dtype=np.int8)
    for rows in groups:
        rank[rows] = ranks(p[rows], ids if len(groups) == 1 else ids.iloc[rows])
        codes[rows] = tier_codes(p[rows], s, rank[rows])
    tier = TIERS[codes]
    factor_lists, inputs = explain_tiers(bundle, df, tier, s, factors=factors, progress=progress)
    scored_at = datetime.now(UTC).replace(microsecond=0)
    stored = p.round(6)
    scores = pd.DataFrame(
        {
            "student_id": ids.array,
            "cohort": cohorts.array,
            "probability": stored,
            "tier": tier,
            "rank": rank,
            "factors": factor_lists,
            "model_version": bundle.version,
            "point": bundle.metadata["point"],
            "scored_at": scored_at,
            "inputs": inputs,
        }
    )
    k = float(bundle.metadata.get("top_k_percent", 10))
    by_cohort = {}
    for name, rows in zip(names, groups, strict=True):
        by_cohort[str(name)] = {
            "n_students": int(len(rows)),
            "tiers": tier_counts(codes[rows]),
            "expected": expected_performance(stored[rows], k, rank=rank[rows]),
        }
    summary = {
        "n_students": int(len(scores)),
        "cohorts": [str(c) for c in names],
        "model_version": bundle.version,
        "point": bundle.metadata["point"],
        "tiers": tier_counts(codes),
        "mean_probability": float(p.mean()),
        "top_k_percent": k,
        "unseen_categories": unseen,
        "unseen_lines": unseen_lines(unseen, bundle.mix),
        "n_unseen_category_values": int(sum(sum(v.values()) for v in unseen.values())),
        "factors": {
            "tiers": list(s.factor_tiers) if factors and s.n_factors else [],
            "n_explained": int(sum(1 for f in factor_lists if f)),
            "n_pending": int(sum(1 for i in inputs if i is not None)),
        },
        # per cohort: its tiers and what the model expects of it before outcomes (risk_model.estimate)
        "by_cohort": by_cohort,
    }
    return ScoreResult(scores, summary)


def explain_tiers(
    bundle: Bundle,
    df: pd.DataFrame,
    tier: np.ndarray,
    s: ScoringConfig,
    *,
    factors: bool = True,
    progress: Callable[[str], None] = log.info,
) -> tuple[list[list[dict]], list[dict | None]]:
    """Per row: its top factors if its tier is one of `s.factor_tiers`, else []; and the inputs kept to
    explain it later (`pending_inputs`), else None. No factors now or later when not `factors` or when
    `s.n_factors` is 0 (the old `--no-factors`: the fastest scoring)."""
    n = len(df)
    factor_lists: list[list[dict]] = [NO_FACTORS] * n  # one shared empty list: a million new ones cost ~1 s of GC
    inputs: list[dict | None] = [None] * n
    if not (factors and s.n_factors):
        return factor_lists, inputs
    now = np.isin(tier, list(s.factor_tiers))
    chosen, later = np.flatnonzero(now), np.flatnonzero(~now)
    if len(chosen):
        for i, found in zip(chosen, explain(bundle, df.iloc[chosen], s.n_factors, progress=progress), strict=True):
            factor_lists[i] = found
    if len(later):
        for i, kept in zip(later, pending_inputs(bundle, df.iloc[later], s.n_factors), strict=True):
            inputs[i] = kept
    return factor_lists, inputs


def explain_pending(frame: pd.DataFrame, rows: np.ndarray, bundle_of: Callable[[str], Bundle]) -> pd.DataFrame:
    """Stored scores (`frame`: model_version, factors, inputs) with the factors of the `rows` (a mask) that
    are still pending computed now (`explain_inputs`, each with the model version that scored it) and
    their inputs cleared: a merged cohort's new acted-on tiers, alerted students."""
    if "inputs" not in frame.columns:
        return frame
    todo = np.flatnonzero(np.asarray(rows, dtype=bool) & frame["inputs"].map(lambda v: isinstance(v, dict)).to_numpy())
    if not len(todo):
        return frame
    out = frame.copy()
    factor_col, input_col = out.columns.get_loc("factors"), out.columns.get_loc("inputs")
    versions = out["model_version"].to_numpy()[todo]
    for version in np.unique(versions):
        at = todo[versions == version]
        found = explain_inputs(bundle_of(str(version)), out["inputs"].iloc[at].tolist())
        for i, factors in zip(at, found, strict=True):
            out.iat[i, factor_col] = factors
            out.iat[i, input_col] = None
    return out
