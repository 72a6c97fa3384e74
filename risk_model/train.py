"""Train the LightGBM risk model and judge it only on cohorts it did not train on.

`select_and_fit` is the whole modelling procedure on some cohorts: parameters and the
number of trees chosen by cross-validated AUC whose folds are whole cohorts (`lgb.cv`
with our folds), then one model refit on all of them. `train` runs that procedure for the
champion, and again inside a forward backtest (train on cohorts before Y, test on Y) so the
backtest measures the procedure itself, tuning included. Calibration is chosen last, out of
time (`risk_model.calibration.choose`): each backtest model is calibrated with what the
backtest before it showed, and the champion with what the whole backtest showed. Baselines
(base rate, logistic regression) go through the same folds and the same backtest.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

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
from risk_model.calibration import Calibrator, Choice, Scores, Step, choose
from risk_model.config import Config, DatasetContract, TrainingConfig
from risk_model.features import build_features, category_levels, fill_unlearned, missing_fill, to_lightgbm
from risk_model.linear import LinearPart
from risk_model.schema import at_risk
from risk_model.splits import ForwardCohortSplit, cohort_folds

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


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

    def raw(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated log-odds: LightGBM's, or its blend with the linear part."""
        raw = self.booster.predict(to_lightgbm(fill_unlearned(X, self.fill)), raw_score=True)
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


def select_and_fit(
    X: pd.DataFrame, y: np.ndarray, cohorts: np.ndarray, levels: dict, t: TrainingConfig, c: DatasetContract
) -> FittedModel:
    """Choose parameters and tree count by cohort-grouped CV, refit on all. Calibrated with what the out-of-fold
    predictions alone allow (`calibration.choose` without a backtest); `train` recalibrates out of time."""
    folds, fold_kind = _folds(cohorts, y, t.seed)
    data = lgb.Dataset(to_lightgbm(X), y, free_raw_data=False, params={"feature_pre_filter": False})
    best = None
    search = []
    for grid_point in t.param_grid:
        params = {**_base_params(t, c, len(y)), **grid_point}
        res = lgb.cv(
            params,
            data,
            num_boost_round=t.max_trees,
            folds=folds,
            callbacks=[lgb.early_stopping(t.early_stopping_rounds, verbose=False)],
            return_cvbooster=True,
        )
        curve = res["valid auc-mean"]
        n_trees = len(curve)
        search.append({"params": grid_point, "n_trees": n_trees, "cv_auc": float(curve[-1])})
        if best is None or curve[-1] > best[0]:
            best = (curve[-1], params, n_trees, res["cvbooster"])
    assert best is not None  # the grid has at least one point (TrainingConfig)
    _, params, n_trees, cvbooster = best
    raw = np.empty(len(y))
    for booster, (train_idx, test_idx) in zip(cvbooster.boosters, folds, strict=True):
        held_out = fill_unlearned(X.iloc[test_idx], missing_fill(X.iloc[train_idx], c))
        raw[test_idx] = booster.predict(to_lightgbm(held_out), raw_score=True, num_iteration=n_trees)
    weight, raw, why = _choose_family(X, y, folds, raw, c)
    calibration = choose([], Scores(raw, y), t.calibration)
    final = lgb.train(params, data, num_boost_round=n_trees)
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
        search,
        oof,
        missing_fill(X, c),
        linear,
        weight,
        family,
        why,
        calibration.to_dict(),
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
    Xtr = X_tr.astype({c: object for c in cat})
    Xte = X_te.astype({c: object for c in cat})
    for frame in (Xtr, Xte):
        frame[cat] = frame[cat].fillna("(missing)")
    with threadpool_limits(1, user_api="blas"):  # see linear.py: threaded BLAS is far slower here
        model = _logistic()(contract.numeric_features, cat).fit(Xtr, y_tr)
        return model.predict_proba(Xte)[:, 1]


@dataclass
class BacktestYear:
    """One forward-backtest year: the model trained on the cohorts before it, its raw scores on the year
    (calibration comes after, `calibration.choose`), and the baselines' predictions of the same students."""

    model: FittedModel
    step: Step
    frame: pd.DataFrame  # id, cohort, y, base_rate, logistic


def _backtest_year(
    df: pd.DataFrame,
    X: pd.DataFrame,
    y: np.ndarray,
    cohorts: np.ndarray,
    tr: np.ndarray,
    te: np.ndarray,
    c: DatasetContract,
    t: TrainingConfig,
    progress: Progress,
) -> BacktestYear:
    """Run the whole procedure on the cohorts `tr` and predict the next cohort `te` with it."""
    test_cohort = str(cohorts[te[0]])
    progress(f"Backtest: training on cohorts before {test_cohort}, testing on {test_cohort}")
    tr_levels = category_levels(df.iloc[tr], c)
    fitted = select_and_fit(build_features(df.iloc[tr], c, tr_levels), y[tr], cohorts[tr], tr_levels, t, c)
    raw = fitted.raw(build_features(df.iloc[te], c, tr_levels))
    frame = pd.DataFrame(
        {
            "id": df[c.id_column].iloc[te].astype(str).to_numpy(),
            "cohort": cohorts[te],
            "y": y[te],
            "base_rate": _baseline_predict("base_rate", X.iloc[tr], y[tr], X.iloc[te], c),
            "logistic": _baseline_predict("logistic", X.iloc[tr], y[tr], X.iloc[te], c),
        }
    )
    return BacktestYear(fitted, Step(test_cohort, fitted.oof_scores(), Scores(raw, y[te])), frame)


def fingerprint(df: pd.DataFrame) -> str:
    """Order-independent SHA-256 of the training rows, to tell later which data made a model."""
    row_hashes = np.sort(pd.util.hash_pandas_object(df, index=False).to_numpy())
    return hashlib.sha256(row_hashes.tobytes()).hexdigest()


def train(df: pd.DataFrame, config: Config, *, progress: Progress = log.info) -> TrainResult:
    """Train on validated past cohorts: CV, forward backtest, baselines, verdict."""
    c, t = config.dataset, config.training
    df = df.reset_index(drop=True)
    cohorts = df[c.cohort_column].astype(str).to_numpy()
    order = c.sort_cohorts(cohorts)
    y = at_risk(df, c)
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"Training data has only {'at-risk' if y.all() else 'not-at-risk'} students: "
            f"need both outcomes (at-risk values are {c.at_risk_values})."
        )
    levels = category_levels(df, c)
    X = build_features(df, c, levels)
    k = t.top_k_percent

    progress(f"Choosing parameters by cross-validation over {len(order)} cohort(s): {', '.join(order)}")
    model = select_and_fit(X, y, cohorts, levels, t, c)
    # "promised": for each backtest cohort, the CV estimate of the model that then predicted it
    metrics: dict[str, dict] = {"train": {}, "cv": {}, "backtest": {}, "promised": {}, "promised_by_cohort": {}}
    folds, _ = _folds(cohorts, y, t.seed)
    for name in ("base_rate", "logistic"):
        oof = np.empty(len(y))
        for tr, te in folds:
            oof[te] = _baseline_predict(name, X.iloc[tr], y[tr], X.iloc[te], c)
        metrics["cv"][name] = evaluate.metrics_by_cohort(cohorts, y, oof, k)

    backtest_predictions = None
    families: dict[str, str] = {}  # the family each backtest model chose, by the cohort it then predicted
    calibrations: dict[str, dict] = {}  # the calibration each backtest model chose, by the cohort it predicted
    steps: list[Step] = []
    if len(order) >= 2:
        years = [
            _backtest_year(df, X, y, cohorts, tr, te, c, t, progress)
            for tr, te in ForwardCohortSplit(order=c.cohort_key).split(X, y, cohorts)
        ]
        steps = [year.step for year in years]
        parts = []
        for i, year in enumerate(years):
            # calibrated with what the backtest had shown before this cohort: out of time, as the champion is
            fitted = year.model.calibrated(choose(steps[:i], year.model.oof_scores(), t.calibration))
            test_cohort = year.step.cohort
            parts.append(year.frame.assign(lightgbm=fitted.calibrator(year.step.test.raw)))
            metrics["promised"][test_cohort] = evaluate.metrics(fitted.oof.y, fitted.oof.p, k)
            families[test_cohort] = fitted.family
            calibrations[test_cohort] = fitted.calibration
            # the same by cohort: what a promise about test_cohort, made by that model, rests on
            metrics["promised_by_cohort"][test_cohort] = evaluate.metrics_by_cohort(
                fitted.oof.cohort.to_numpy(), fitted.oof.y.to_numpy(), fitted.oof.p.to_numpy(), k
            )
        backtest_predictions = pd.concat(parts, ignore_index=True)
        g, yy = backtest_predictions["cohort"].to_numpy(), backtest_predictions["y"].to_numpy()
        for name in ("lightgbm", "base_rate", "logistic"):
            metrics["backtest"][name] = evaluate.metrics_by_cohort(g, yy, backtest_predictions[name].to_numpy(), k)
    model = model.calibrated(choose(steps, model.oof_scores(), t.calibration))
    progress(f"Calibration: {model.calibration['name']} ({model.calibration['why']})")
    metrics["train"]["lightgbm"] = evaluate.metrics_by_cohort(cohorts, y, model.predict(X), k)
    metrics["cv"]["lightgbm"] = evaluate.metrics_by_cohort(cohorts, y, model.oof.p.to_numpy(), k)

    summary = summarize(metrics, t)
    summary["family"], summary["family_why"] = model.family, model.family_why
    summary["family_by_cohort"] = families
    summary["calibration"] = model.calibration
    summary["calibration_by_cohort"] = calibrations
    summary["headline"] += f" Model family: {model.family} ({model.family_why})."
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
    ref = df[cols].copy()
    ref["at_risk"] = model.oof.y.to_numpy()
    ref["risk"] = model.oof.p.to_numpy()
    if len(ref) > t.reference_sample:
        ref = ref.sample(t.reference_sample, random_state=t.seed)
    return ref.reset_index(drop=True)
