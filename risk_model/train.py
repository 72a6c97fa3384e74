"""Train the LightGBM risk model and judge it only on cohorts it did not train on.

`select_and_fit` is the whole modelling procedure on some cohorts: parameters and the
number of trees chosen by cross-validated AUC whose folds are whole cohorts, then one model
refit on all of them. `train` runs that procedure for the champion, and again inside a
forward backtest (train on cohorts before Y, test on Y) so the backtest measures the
procedure itself, tuning included. Calibration is chosen last, out of time
(`risk_model.calibration.choose`): each backtest year's model is calibrated with what the
years before it showed, and the champion with what the whole backtest showed. Baselines
(base rate, logistic regression) go through the same folds and the same backtest.

Scale. The units of that work are independent: each parameter set's CV (`search_point`) of
each run, then each run's fit (`select_and_fit` for the champion, `backtest_year` for a year).
`train` hands them to a `map` it is given (`builtins.map` by default; a process pool, or
Prefect tasks on Dask in `flows/`), so the same seeded units give the same model whatever the
layout. Above `tune_sample_above` rows the parameter set is chosen on a per-cohort stratified
sample; its tree count comes from one cohort-grouped CV on all rows, which also gives the
out-of-fold scores calibration is fitted on. Above `dask_fit_above` rows the final fit can run
on a Dask cluster (`fit`, e.g. `risk_model.dask_fit.DaskFit`).
"""

from __future__ import annotations

import builtins
import hashlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from risk_model import evaluate
from risk_model.calibration import Calibrator, Choice, Scores, Step, choose, judge
from risk_model.config import Config, DatasetContract, TrainingConfig
from risk_model.features import (
    build_features,
    category_codes,
    category_levels,
    category_mix,
    frame_matrix,
    missing_fill,
    mix_columns,
    over_levels,
    to_lightgbm,
)
from risk_model.linear import LinearPart
from risk_model.schema import at_risk
from risk_model.splits import ForwardCohortSplit, cohort_folds

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
Map = Callable[..., Iterable[Any]]  # builtins.map's shape: map(fn, *iterables) -> results in order
Fit = Callable[[dict, pd.DataFrame, np.ndarray, int], lgb.Booster]  # params, X, y, n_trees -> booster


@dataclass
class FittedModel:
    """A trained booster with its calibrator and what it needs to read new data."""

    booster: lgb.Booster
    calibrator: Calibrator
    levels: dict[str, list[str]]
    params: dict
    n_trees: int
    cv_folds: str
    search: list[dict]
    oof: pd.DataFrame  # cohort, y, raw (log-odds) and p (calibrated), out of fold
    fill: dict[str, float] = field(default_factory=dict)  # features.missing_fill
    linear: LinearPart | None = None  # blended in when cohort-grouped CV says so
    blend: float = 1.0  # weight of LightGBM's log-odds; the linear part has 1 - blend
    family: str = "lightgbm"
    family_why: str = ""
    calibration: dict = field(default_factory=dict)  # calibration.Choice.to_dict(): what was chosen and why
    mix: dict[str, dict[str, float]] = field(default_factory=dict)  # features.category_mix

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds: LightGBM's, or its blend with the linear part. An unknown category of a
        column never missing in training reads as the training mix (`features.over_levels`)."""
        raw = booster_raw(self.booster, X, self.levels, self.fill, self.mix)
        return blend_raw(raw, X, self.linear, self.blend)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrator(self.raw(X))

    def calibrated(self, choice: Choice) -> FittedModel:
        """This model with the calibration `choice` (its out-of-fold probabilities recomputed with it)."""
        oof = self.oof.assign(p=choice.calibrator(self.oof["raw"].to_numpy()))
        return replace(self, calibrator=choice.calibrator, oof=oof, calibration=choice.to_dict())

    def oof_scores(self) -> Scores:
        return Scores(self.oof["raw"].to_numpy(), self.oof["y"].to_numpy())


BLENDS = (1.0, 0.5)  # LightGBM alone, or an even average of its log-odds with the linear model's


def booster_raw(
    booster: lgb.Booster,
    X: pd.DataFrame,
    levels: dict[str, list[str]],
    fill: dict[str, float],
    mix: dict[str, dict[str, float]],
    n_trees: int | None = None,
) -> np.ndarray:
    """The booster's log-odds for built features `X` (`build_features` with `levels`): the numbers LightGBM
    reads from that frame (`features.frame_matrix`), unknown categories over the training `mix`."""
    features = list(X.columns)
    categorical = [f for f in features if f in levels]
    codes = category_codes(levels, getattr(booster, "pandas_categorical", None), categorical)
    Xn = frame_matrix(X, features, codes, fill)
    return over_levels(
        partial(booster.predict, raw_score=True, num_iteration=n_trees), Xn, mix_columns(features, codes, mix)
    )


def blend_raw(raw: np.ndarray, X: pd.DataFrame, linear: LinearPart | None, weight: float) -> np.ndarray:
    """LightGBM's log-odds, averaged with the linear part's when there is one."""
    return raw if linear is None or weight >= 1.0 else weight * raw + (1 - weight) * linear.logit(X)


def _fold_auc(y: np.ndarray, score: np.ndarray, folds: list) -> float:
    """Mean AUC over held-out folds (each a whole cohort when there are several): ranks within a cohort."""
    return float(np.mean([roc_auc_score(y[te], score[te]) for _, te in folds]))


def _choose_family(
    X: pd.DataFrame, y: np.ndarray, folds: list, raw: np.ndarray, c: DatasetContract
) -> tuple[float, np.ndarray, str]:
    """LightGBM alone or blended with a linear model: whichever ranks held-out cohorts better in CV.

    The linear part is fitted per fold like the trees, so both are judged out of fold. Ties go
    to LightGBM alone (its explanations are exact then)."""
    lin = np.empty(len(y))
    for tr, te in folds:
        lin[te] = LinearPart.fit(X.iloc[tr], y[tr], c.numeric_features, c.categorical, monotone=c.monotone).logit(
            X.iloc[te]
        )
    scores = {w: _fold_auc(y, raw if w >= 1 else w * raw + (1 - w) * lin, folds) for w in BLENDS}
    best = max(BLENDS, key=lambda w: (round(scores[w], 4), w))
    chosen = raw if best >= 1 else best * raw + (1 - best) * lin
    words = ", ".join(f"{'lightgbm' if w >= 1 else f'blend {w:.2f}'} {a:.4f}" for w, a in scores.items())
    return best, chosen, f"cohort-grouped CV AUC: {words}"


@dataclass
class TrainResult:
    """Everything `train` learned: the champion candidate and the evidence about it."""

    model: FittedModel
    training_cohorts: list[str]
    metrics: dict = field(default_factory=dict)  # {"train"|"cv"|"backtest": {model: {cohort: {...}}}}
    summary: dict = field(default_factory=dict)  # headline numbers and the verdict
    reference: pd.DataFrame | None = None
    fingerprint: str = ""
    backtest_predictions: pd.DataFrame | None = None  # id, cohort, y and each model's p, for paired comparisons


def _base_params(t: TrainingConfig, c: DatasetContract, n_rows: int) -> dict:
    return {
        "num_threads": t.num_threads or (1 if n_rows < 100_000 else 0),
        "monotone_constraints": [c.monotone.get(f, 0) for f in c.features],
        "monotone_constraints_method": "advanced",
        "objective": "binary",
        # Chosen on ranking (AUC, per held-out cohort): advisors act on ranks within a cohort, and
        # calibration is fitted afterwards. Log loss also charges each cohort's base-rate shift,
        # which stopped boosting after ~20 trees on OULAD presentations (-0.005 AUC at day 30).
        "metric": "auc",
        "learning_rate": t.learning_rate,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        # one-vs-rest splits for categories with up to 16 levels: on OULAD they transfer to a new
        # presentation better than LightGBM's sorted-gradient category partitions (day 0: +0.01 AUC)
        "max_cat_to_onehot": 16,
        "min_data_per_group": 100,
        "cat_smooth": 50,
        "seed": t.seed,
        "deterministic": True,
        "force_row_wise": True,
        "verbose": -1,
    }


def _folds(cohorts: np.ndarray, y: np.ndarray, seed: int) -> tuple[list, str]:
    """Whole-cohort folds; with a single cohort, stratified folds inside it (said in metadata)."""
    if len(np.unique(cohorts)) >= 2:
        splitter = cohort_folds(cohorts)
        return list(splitter.split(cohorts, y, cohorts)), f"{type(splitter).__name__} over cohorts"
    skf = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return list(skf.split(cohorts, y)), "StratifiedKFold(5) inside the only cohort"


@dataclass(frozen=True)
class Candidate:
    """One parameter set's cohort-grouped CV: its tree count (early stopping on the mean held-out AUC),
    that AUC, and the out-of-fold log-odds at that tree count of the `rows` rows it ran on."""

    params: dict  # the grid point
    n_trees: int
    cv_auc: float
    raw: np.ndarray | None  # None when not asked for (a sample's candidates: the winner runs again on all rows)
    rows: int

    def entry(self) -> dict:
        return {"params": self.params, "n_trees": self.n_trees, "cv_auc": self.cv_auc, "rows": self.rows}


def _threads(params: dict, threads: int | None) -> dict:
    """`params` with LightGBM's thread count for this process (results do not depend on it: deterministic)."""
    return params if threads is None else {**params, "num_threads": threads}


def _dataset(X: pd.DataFrame, y: np.ndarray, params: dict) -> lgb.Dataset:
    """The binned training data; bins depend on the data and `params` (seed, ...), never on the grid point."""
    return lgb.Dataset(to_lightgbm(X), y, free_raw_data=False, params={**params, "feature_pre_filter": False})


def _cv(params: dict, data: lgb.Dataset, folds: list, t: TrainingConfig) -> tuple[list[lgb.Booster], int, float]:
    """`lgb.cv` with early stopping on the mean held-out AUC, reading that AUC every `t.eval_every` trees.

    Hand-written around LightGBM's Booster because lgb.cv computes (sorts) every fold's AUC after every
    tree: 58 of 264 s of CV at 100k students. With eval_every=1 it is lgb.cv (a test holds it to that)."""
    data.construct()
    boosters = []
    for train_idx, test_idx in folds:
        booster = lgb.Booster(params, data.subset(sorted(train_idx)))
        booster.add_valid(data.subset(sorted(test_idx)), "valid")
        boosters.append(booster)
    best_auc, best_n = -np.inf, 0
    for n in range(1, t.max_trees + 1):
        for booster in boosters:
            booster.update()
        if n % t.eval_every and n < t.max_trees:
            continue
        auc = float(np.mean([booster.eval_valid()[0][2] for booster in boosters]))
        if auc > best_auc:
            best_auc, best_n = auc, n
        elif n - best_n >= t.early_stopping_rounds:
            break
    return boosters, best_n, best_auc


def _oof_raw(boosters: list[lgb.Booster], X: pd.DataFrame, folds: list, n_trees: int, c: DatasetContract):
    """Each fold's held-out log-odds as a model trained on the other folds scores new students: the fold's
    own medians for unlearned numbers, its own mix for categories it never saw (`FittedModel.raw`)."""
    raw = np.empty(len(X))
    levels = {col: list(X[col].cat.categories) for col in c.categorical}
    for booster, (train_idx, test_idx) in zip(boosters, folds, strict=True):
        seen = X.iloc[train_idx]
        raw[test_idx] = booster_raw(
            booster, X.iloc[test_idx], levels, missing_fill(seen, c), category_mix(seen, c), n_trees
        )
    return raw


def search_point(
    X: pd.DataFrame,
    y: np.ndarray,
    cohorts: np.ndarray,
    grid_point: dict,
    t: TrainingConfig,
    c: DatasetContract,
    threads: int | None = None,
    oof: bool = True,
) -> Candidate:
    """One parameter set through cohort-grouped CV: a unit of work with no other input (see `train`).
    `oof`: also its out-of-fold log-odds (what calibration and the family choice read)."""
    folds, _ = _folds(cohorts, y, t.seed)
    base = _base_params(t, c, len(y))
    boosters, n_trees, auc = _cv(_threads({**base, **grid_point}, threads), _dataset(X, y, base), folds, t)
    return Candidate(grid_point, n_trees, auc, _oof_raw(boosters, X, folds, n_trees, c) if oof else None, len(y))


def tuning_rows(cohorts: np.ndarray, y: np.ndarray, t: TrainingConfig) -> np.ndarray:
    """The rows parameters are chosen on: all of them up to `tune_sample_above`, else a sample of about
    `tune_sample_rows` drawn within each cohort and outcome in proportion (seeded), in their original order,
    so every cohort keeps its share and its base rate and cohort-grouped folds stay whole cohorts."""
    if len(y) <= t.tune_sample_above:
        return np.arange(len(y))
    rng = np.random.default_rng(t.seed)
    share = t.tune_sample_rows / len(y)
    cells = pd.Series(np.arange(len(y))).groupby([cohorts, y], sort=True)
    picked = [rng.choice(idx.to_numpy(), max(1, round(len(idx) * share)), replace=False) for _, idx in cells]
    return np.sort(np.concatenate(picked))


def _grid(
    X: pd.DataFrame, y: np.ndarray, cohorts: np.ndarray, t: TrainingConfig, c: DatasetContract, threads: int | None
) -> list[Candidate]:
    """Every parameter set on the tuning rows, in one process (the binned data built once for all)."""
    rows = tuning_rows(cohorts, y, t)
    Xs, ys, gs = X.iloc[rows], y[rows], cohorts[rows]
    folds, _ = _folds(gs, ys, t.seed)
    base = _base_params(t, c, len(ys))
    data = _dataset(Xs, ys, base)
    out = []
    for grid_point in t.param_grid:
        boosters, n_trees, auc = _cv(_threads({**base, **grid_point}, threads), data, folds, t)
        raw = _oof_raw(boosters, Xs, folds, n_trees, c) if len(rows) == len(y) else None
        out.append(Candidate(grid_point, n_trees, auc, raw, len(ys)))
    return out


def winner(grid: list[Candidate]) -> Candidate:
    """The best cross-validated AUC; the first of equals, as the loop it replaced."""
    return max(grid, key=lambda cand: cand.cv_auc)


def _fit_local(params: dict, X: pd.DataFrame, y: np.ndarray, n_trees: int) -> lgb.Booster:
    return lgb.train(params, _dataset(X, y, params), num_boost_round=n_trees)


def select_and_fit(
    X: pd.DataFrame,
    y: np.ndarray,
    cohorts: np.ndarray,
    levels: dict,
    t: TrainingConfig,
    c: DatasetContract,
    *,
    search: list[Candidate] | None = None,
    on_all_rows: Candidate | None = None,
    threads: int | None = None,
    fit: Fit | None = None,
) -> FittedModel:
    """Choose parameters and tree count by cohort-grouped CV, refit on all. Calibrated with what the out-of-fold
    predictions alone allow (`calibration.choose` without a backtest); `train` recalibrates out of time.

    `search`: the grid's candidates when they were computed elsewhere (`search_point` units). Chosen on a
    sample, the winner's tree count and out-of-fold scores come from one more CV on all rows (`on_all_rows`
    when computed elsewhere). `fit`: how the final model is fitted above `dask_fit_above` rows."""
    folds, fold_kind = _folds(cohorts, y, t.seed)
    grid = search if search is not None else _grid(X, y, cohorts, t, c, threads)
    best = winner(grid)
    entries = [cand.entry() for cand in grid]
    if best.rows < len(y) or best.raw is None:  # chosen on a sample: tree count and out-of-fold scores on all rows
        best = on_all_rows or search_point(X, y, cohorts, best.params, t, c, threads)
        entries.append({**best.entry(), "tree_count_on_all_rows": True})
    assert best.raw is not None
    params, n_trees = {**_base_params(t, c, len(y)), **best.params}, best.n_trees
    weight, raw, why = _choose_family(X, y, folds, best.raw, c)
    calibration = choose([], Scores(raw, y), t.calibration)
    big = fit is not None and len(y) > t.dask_fit_above
    final = (fit if big and fit is not None else _fit_local)(_threads(params, threads), X, y, n_trees)
    oof = pd.DataFrame({"cohort": cohorts, "y": y, "raw": raw, "p": calibration.calibrator(raw)})
    linear = LinearPart.fit(X, y, c.numeric_features, c.categorical, monotone=c.monotone) if weight < 1 else None
    family = "lightgbm" if weight >= 1 else f"lightgbm+logistic blend ({weight:.2f}/{1 - weight:.2f} of log-odds)"
    return FittedModel(
        final,
        calibration.calibrator,
        levels,
        params,
        n_trees,
        fold_kind,
        entries,
        oof,
        missing_fill(X, c),
        linear,
        weight,
        family,
        why,
        calibration.to_dict(),
        category_mix(X, c),
    )


def _logistic():
    return lambda numeric, categorical: make_pipeline(
        ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True), StandardScaler()
                    ),
                    numeric,
                ),
                ("cat", OneHotEncoder(handle_unknown="ignore", min_frequency=20), categorical),
            ]
        ),
        LogisticRegression(max_iter=2000, C=0.5),
    )


def _baseline_predict(name: str, X_tr, y_tr, X_te, contract: DatasetContract) -> np.ndarray:
    """Fit a baseline on one set of cohorts and predict another."""
    if name == "base_rate":
        return np.full(len(X_te), float(np.mean(y_tr)))
    cat = contract.categorical
    # categories as their codes in the shared levels (-1: missing), so the encoder counts integers, not
    # Python strings (a third of the baselines' time); one-hot columns come out in the same order
    Xtr = X_tr.assign(**{c: X_tr[c].cat.codes for c in cat})
    Xte = X_te.assign(**{c: X_te[c].cat.codes for c in cat})
    with threadpool_limits(1, user_api="blas"):  # see linear.py: threaded BLAS is far slower here
        model = _logistic()(contract.numeric_features, cat).fit(Xtr, y_tr)
        return model.predict_proba(Xte)[:, 1]


def fingerprint(df: pd.DataFrame) -> str:
    """Order-independent SHA-256 of the training rows, to tell later which data made a model."""
    row_hashes = np.sort(pd.util.hash_pandas_object(df, index=False).to_numpy())
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()


@dataclass
class YearResult:
    """One year of the forward backtest: the procedure run on the cohorts before it, judged on it. Its model is
    calibrated afterwards (`train`), with the evidence of the years before it, so only raw scores are kept here."""

    cohort: str
    predictions: pd.DataFrame  # id, cohort, y and the baselines' p (the product's are added once calibrated)
    raw: np.ndarray  # the product's uncalibrated log-odds of the test cohort (`FittedModel.raw`)
    oof: pd.DataFrame  # that model's out-of-fold cohort, y and raw on the cohorts it trained on
    family: str
    search: list[dict]

    def step(self) -> Step:
        """This year as calibration sees it (`calibration.choose`)."""
        return Step(
            self.cohort,
            Scores(self.oof["raw"].to_numpy(), self.oof["y"].to_numpy()),
            Scores(self.raw, self.predictions["y"].to_numpy()),
        )


def backtest_year(
    df: pd.DataFrame,
    test_cohort: str,
    levels: dict[str, list[str]],
    c: DatasetContract,
    t: TrainingConfig,
    *,
    search: list[Candidate] | None = None,
    on_all_rows: Candidate | None = None,
    threads: int | None = None,
    fit: Fit | None = None,
) -> YearResult:
    """One year of the forward backtest: the whole procedure, selection included, on the cohorts of `df`
    before `test_cohort`, then that cohort predicted by its model and by the baselines.

    `df`: the validated rows of those cohorts and of `test_cohort`; `levels`: the category levels of the
    whole training table (the baselines read categories as they are there)."""
    cohorts = df[c.cohort_column].astype(str).to_numpy()
    y = at_risk(df, c)
    te, tr = np.flatnonzero(cohorts == test_cohort), np.flatnonzero(cohorts != test_cohort)
    tr_levels = category_levels(df.iloc[tr], c)
    X_tr = build_features(df.iloc[tr], c, tr_levels)
    fitted = select_and_fit(
        X_tr, y[tr], cohorts[tr], tr_levels, t, c, search=search, on_all_rows=on_all_rows, threads=threads, fit=fit
    )
    raw = fitted.raw(build_features(df.iloc[te], c, tr_levels))
    Xb = build_features(df, c, levels)
    predictions = pd.DataFrame(
        {
            "id": df[c.id_column].iloc[te].astype(str).to_numpy(),
            "cohort": cohorts[te],
            "y": y[te],
            "base_rate": _baseline_predict("base_rate", Xb.iloc[tr], y[tr], Xb.iloc[te], c),
            "logistic": _baseline_predict("logistic", Xb.iloc[tr], y[tr], Xb.iloc[te], c),
        }
    )
    oof = fitted.oof[["cohort", "y", "raw"]]
    return YearResult(test_cohort, predictions, raw, oof, fitted.family, fitted.search)


def _run_unit(unit: tuple) -> Any:
    """One unit of `train`'s last stage, by kind: the champion's fit, a backtest year, a baseline's fold."""
    kind, args, kwargs = unit
    units: dict[str, Callable[..., Any]] = {
        "champion": select_and_fit,
        "year": backtest_year,
        "baseline": _baseline_predict,
    }
    return units[kind](*args, **kwargs)


@dataclass
class _Run:
    """One run of the procedure: the champion's (every row) or a backtest year's (the cohorts before it)."""

    key: str
    rows: np.ndarray  # into the training table
    X: pd.DataFrame  # features of those rows, with the run's own category levels


def _search_stage(
    map: Map, runs: list[_Run], y: np.ndarray, cohorts: np.ndarray, t: TrainingConfig, c: DatasetContract, threads
) -> list[list[Candidate]]:
    """Every parameter set of every run through cohort-grouped CV on the run's tuning rows: one unit each."""
    units = []
    for run in runs:
        tune = tuning_rows(cohorts[run.rows], y[run.rows], t)
        oof = len(tune) == len(run.rows)  # not on a sample: the winner's out-of-fold scores are the run's
        Xs, ys, gs = run.X.iloc[tune], y[run.rows][tune], cohorts[run.rows][tune]
        units += [(Xs, ys, gs, grid_point, t, c, threads, oof) for grid_point in t.param_grid]
    found = list(map(search_point, *zip(*units, strict=True)))
    n = len(t.param_grid)
    return [found[i * n : (i + 1) * n] for i in range(len(runs))]


def _tree_count_stage(
    map: Map, runs: list[_Run], by_run: list[list[Candidate]], y, cohorts, t: TrainingConfig, c, threads, progress
) -> dict[int, Candidate]:
    """Runs whose parameters were chosen on a sample: the winner's tree count and out-of-fold scores from a
    cohort-grouped CV on all the run's rows, one unit each."""
    again = [i for i, grid in enumerate(by_run) if grid[0].rows < len(runs[i].rows)]
    if not again:
        return {}
    progress(f"Tree count on all rows for {len(again)} run(s) whose parameters were chosen on a sample")
    units = [
        (runs[i].X, y[runs[i].rows], cohorts[runs[i].rows], winner(by_run[i]).params, t, c, threads) for i in again
    ]
    return dict(zip(again, map(search_point, *zip(*units, strict=True)), strict=True))


def _fit_stage(map: Map, fit: Fit | None, units: list[tuple], rows: list[int], t: TrainingConfig, threads) -> list:
    """Every run's fit (and the baselines' folds), one unit each. Runs above `dask_fit_above` rows, given a
    `fit`, run here after the others, so the cluster is free for LightGBM's Dask estimator."""
    fits = [(kind, args, {**kwargs, "threads": threads}) for kind, args, kwargs in units if kind != "baseline"]
    units = fits + [u for u in units if u[0] == "baseline"]
    big = [i for i in range(len(fits)) if fit is not None and rows[i] > t.dask_fit_above]
    mapped = [i for i in range(len(units)) if i not in big]
    done = dict(zip(mapped, map(_run_unit, [units[i] for i in mapped]), strict=True))
    for i in big:
        kind, args, kwargs = units[i]
        done[i] = _run_unit((kind, args, {**kwargs, "fit": fit}))
    return [done[i] for i in range(len(units))]


def train(
    df: pd.DataFrame,
    config: Config,
    *,
    map: Map = builtins.map,
    fit: Fit | None = None,
    threads: int | None = None,
    progress: Progress = log.info,
) -> TrainResult:
    """Train on validated past cohorts: CV, forward backtest, baselines, verdict.

    The independent units go through `map` in three stages: every parameter set of every run (the
    champion's, each backtest year's) as `search_point`; for runs tuned on a sample, the winner's tree
    count on all rows; then every run's fit and the baselines' folds.
    `map` may run them anywhere (a process pool, Dask); results do not depend on where. `threads`:
    LightGBM threads per unit (1 when units run side by side). `fit`: see `select_and_fit`."""
    c, t = config.dataset, config.training
    df = df.reset_index(drop=True)
    cohorts = df[c.cohort_column].astype(str).to_numpy()
    order = c.sort_cohorts(cohorts)
    y = _outcomes(df, c)
    levels = category_levels(df, c)
    X = build_features(df, c, levels)

    # the runs of the procedure: the champion on every cohort, and each backtest year on the cohorts before it
    years = list(ForwardCohortSplit(order=c.cohort_key).split(X, y, cohorts)) if len(order) >= 2 else []
    progress(
        f"Choosing parameters by cross-validation over {len(order)} cohort(s): {', '.join(order)}; "
        f"the same inside {len(years)} backtest year(s)"
    )
    runs = [_Run("champion", np.arange(len(y)), X)]
    for tr, te in years:
        runs.append(_Run(str(cohorts[te[0]]), tr, build_features(df.iloc[tr], c, category_levels(df.iloc[tr], c))))
    by_run = _search_stage(map, runs, y, cohorts, t, c, threads)
    on_all = _tree_count_stage(map, runs, by_run, y, cohorts, t, c, threads, progress)
    del runs

    progress(f"Fitting {len(by_run)} model(s): the champion and one per backtest year")
    folds, _ = _folds(cohorts, y, t.seed)
    units: list[tuple] = [
        ("champion", (X, y, cohorts, levels, t, c), {"search": by_run[0], "on_all_rows": on_all.get(0)})
    ]
    for i, (tr, te) in enumerate(years, start=1):
        year_args = (df.iloc[np.concatenate([tr, te])], str(cohorts[te[0]]), levels, c, t)
        units.append(("year", year_args, {"search": by_run[i], "on_all_rows": on_all.get(i)}))
    units += [("baseline", ("logistic", X.iloc[tr], y[tr], X.iloc[te], c), {}) for tr, te in folds]
    results = _fit_stage(map, fit, units, [len(y), *(len(tr) for tr, _ in years)], t, threads)
    year_results: list[YearResult] = results[1 : 1 + len(years)]
    model, choices = _calibrate(results[0], year_results, t, progress)

    logistic = np.empty(len(y))
    for (_, te), p in zip(folds, results[1 + len(years) :], strict=True):
        logistic[te] = p
    metrics, backtest_predictions = _measure(X, y, cohorts, model, year_results, choices, folds, logistic, t)
    summary = _summary(metrics, t, model, year_results, choices)
    progress(summary["headline"])
    return TrainResult(
        model=model,
        training_cohorts=order,
        metrics=metrics,
        summary=summary,
        reference=reference_sample(df, X, model, c, t),
        fingerprint=fingerprint(df),
        backtest_predictions=backtest_predictions,
    )


def _outcomes(df: pd.DataFrame, c: DatasetContract) -> np.ndarray:
    """1 for each at-risk student; an error when the table holds only one outcome."""
    y = at_risk(df, c)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"Training data has only {'at-risk' if y.all() else 'not-at-risk'} students: "
            f"need both outcomes (at-risk values are {c.at_risk_values})."
        )
    return y


def _calibrate(
    model: FittedModel, year_results: list[YearResult], t: TrainingConfig, progress: Progress
) -> tuple[FittedModel, list[Choice]]:
    """Calibration, out of time: each year's model with the evidence of the years before it (its choice is
    returned), the champion with all of it."""
    steps = [year.step() for year in year_results]
    judged = judge(steps)
    choices = [choose(steps[:i], step.oof, t.calibration, judged=judged[:i]) for i, step in enumerate(steps)]
    model = model.calibrated(choose(steps, model.oof_scores(), t.calibration, judged=judged))
    progress(f"Calibration: {model.calibration['name']} ({model.calibration['why']})")
    return model, choices


def _measure(
    X: pd.DataFrame,
    y: np.ndarray,
    cohorts: np.ndarray,
    model: FittedModel,
    year_results: list[YearResult],
    choices: list[Choice],
    folds: list,
    logistic: np.ndarray,
    t: TrainingConfig,
) -> tuple[dict[str, dict], pd.DataFrame | None]:
    """Metrics by cohort of the model and its baselines: on its training rows, out of fold, and in the forward
    backtest (each cohort predicted by a model trained before it), with "promised": for each backtest
    cohort, the CV estimate of the model that then predicted it. Also the backtest's predictions."""
    k = t.top_k_percent
    metrics: dict[str, dict] = {"train": {}, "cv": {}, "backtest": {}, "promised": {}, "promised_by_cohort": {}}
    metrics["train"]["lightgbm"] = evaluate.metrics_by_cohort(cohorts, y, model.predict(X), k)
    metrics["cv"]["lightgbm"] = evaluate.metrics_by_cohort(cohorts, y, model.oof.p.to_numpy(), k)
    metrics["cv"]["base_rate"] = evaluate.metrics_by_cohort(cohorts, y, _fold_base_rate(y, folds), k)
    metrics["cv"]["logistic"] = evaluate.metrics_by_cohort(cohorts, y, logistic, k)
    if not year_results:
        return metrics, None
    parts = []
    for year, choice in zip(year_results, choices, strict=True):
        p_oof = choice.calibrator(year.oof["raw"].to_numpy())
        metrics["promised"][year.cohort] = evaluate.metrics(year.oof["y"], p_oof, k)
        # the same by cohort: what a promise about this cohort, made by that model, rests on
        metrics["promised_by_cohort"][year.cohort] = evaluate.metrics_by_cohort(
            year.oof["cohort"].to_numpy(), year.oof["y"].to_numpy(), p_oof, k
        )
        parts.append(year.predictions.assign(lightgbm=choice.calibrator(year.raw)))  # the product
    predictions = pd.concat(parts, ignore_index=True)
    g, yy = predictions["cohort"].to_numpy(), predictions["y"].to_numpy()
    for name in ("lightgbm", "base_rate", "logistic"):
        metrics["backtest"][name] = evaluate.metrics_by_cohort(g, yy, predictions[name].to_numpy(), k)
    return metrics, predictions


def _summary(
    metrics: dict[str, dict],
    t: TrainingConfig,
    model: FittedModel,
    year_results: list[YearResult],
    choices: list[Choice],
) -> dict:
    """`summarize`'s verdict with the model family and calibration chosen, overall and by backtest cohort."""
    summary = summarize(metrics, t)
    summary["family"], summary["family_why"] = model.family, model.family_why
    summary["family_by_cohort"] = {year.cohort: year.family for year in year_results}
    summary["calibration"] = model.calibration
    summary["calibration_by_cohort"] = {
        year.cohort: choice.to_dict() for year, choice in zip(year_results, choices, strict=True)
    }
    summary["headline"] += f" Model family: {model.family} ({model.family_why})."
    return summary


def _fold_base_rate(y: np.ndarray, folds: list) -> np.ndarray:
    out = np.empty(len(y))
    for tr, te in folds:
        out[te] = float(np.mean(y[tr]))
    return out


def summarize(metrics: dict, t: TrainingConfig) -> dict:
    """Headline: train vs. validation AUC, the baselines, the verdict in plain words."""
    mean = evaluate.mean_over_cohorts
    has_backtest = bool(metrics["backtest"])
    kind = "backtest" if has_backtest else "cv"
    val = {name: mean(by, "roc_auc") for name, by in metrics[kind].items()}
    cv_auc = mean(metrics["cv"]["lightgbm"], "roc_auc")
    train_auc = metrics["train"]["lightgbm"]["all"]["roc_auc"]
    word = evaluate.verdict(train_auc, val["lightgbm"], overfit_gap=t.overfit_gap, underfit_auc=t.underfit_auc)
    beats = val["lightgbm"] > val["logistic"]
    where = (
        "forward backtest (each cohort predicted by a model trained on earlier cohorts only)"
        if has_backtest
        else "cross-validation by cohort"
    )
    headline = (
        f"The model {word}: AUC {val['lightgbm']:.3f} on cohorts it never trained on ({where}), "
        f"{train_auc:.3f} on its training data (gap {train_auc - val['lightgbm']:+.3f}); "
        f"{'it beats' if beats else 'it does NOT beat'} the logistic baseline ({val['logistic']:.3f}); "
        f"base rate gives {val['base_rate']:.3f}."
    )
    return {
        "verdict": word,
        "validation": kind,
        "train_auc": train_auc,
        "cv_auc": cv_auc,
        "validation_auc": val["lightgbm"],
        "logistic_auc": val["logistic"],
        "base_rate_auc": val["base_rate"],
        "gap": train_auc - val["lightgbm"],
        "beats_logistic": bool(beats),
        "headline": headline,
    }


def reference_sample(
    df: pd.DataFrame, X: pd.DataFrame, model: FittedModel, c: DatasetContract, t: TrainingConfig
) -> pd.DataFrame:
    """Training rows kept with the model for drift reports: features, sensitive columns,
    cohort, outcome and out-of-fold risk; never the student id."""
    cols = list(dict.fromkeys([c.cohort_column, *c.features, *c.sensitive_columns]))
    rows = pd.Series(np.arange(len(df)))
    if len(df) > t.reference_sample:  # the rows DataFrame.sample picks, without copying every row first
        rows = rows.sample(t.reference_sample, random_state=t.seed)
    ref = df.iloc[rows.to_numpy()][cols].copy()
    ref["at_risk"] = model.oof.y.to_numpy()[rows.to_numpy()]
    ref["risk"] = model.oof.p.to_numpy()[rows.to_numpy()]
    return ref.reset_index(drop=True)
