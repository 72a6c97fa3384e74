"""Training that scales out: the CV loop, the tuning sample, and the same result whatever the layout."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from flows.steps import local_pool
from risk_model import train as train_module
from risk_model.config import Config, TrainingConfig
from risk_model.demo import make_demo
from risk_model.features import build_features, category_levels
from risk_model.schema import at_risk, validate
from risk_model.train import _base_params, _cv, _dataset, _folds, search_point, train, tuning_rows


def with_training(config: Config, **changes) -> Config:
    return config.model_copy(update={"training": TrainingConfig(**{**config.training.model_dump(), **changes})})


@pytest.fixture(scope="module")
def history(demo_config):
    """Four past cohorts of 600 students (validated)."""
    d = make_demo(n_per_cohort=600, n_past=4, seed=3)
    return validate(d.history, demo_config.dataset, stage="train", source="history").reset_index(drop=True)


@pytest.fixture(scope="module")
def sampled_config(demo_config):
    """The fast demo settings, with parameters chosen on a sample of 800 of the 2,400 rows (and of the
    backtest years' 1,200 and 1,800)."""
    return with_training(demo_config, tune_sample_above=1000, tune_sample_rows=800)


@pytest.fixture(scope="module")
def one_process(history, sampled_config):
    return train(history, sampled_config, progress=lambda _: None)


def features(history, config):
    c = config.dataset
    return build_features(history, c, category_levels(history, c)), at_risk(history, c)


def test_cv_loop_reading_auc_every_tree_is_lgb_cv(history, demo_config):
    """With eval_every=1 the hand-written loop is lgb.cv: same tree count, same mean held-out AUC."""
    c, t = demo_config.dataset, with_training(demo_config, eval_every=1).training
    X, y = features(history, demo_config)
    cohorts = history[c.cohort_column].astype(str).to_numpy()
    folds, _ = _folds(cohorts, y, t.seed)
    base = _base_params(t, c, len(y))
    params = {**base, **t.param_grid[0]}
    _, n_trees, auc = _cv(params, _dataset(X, y, base), folds, t)
    data = lgb.Dataset(X, y, free_raw_data=False, params={"feature_pre_filter": False})
    ref = lgb.cv(
        params,
        data,
        num_boost_round=t.max_trees,
        folds=folds,
        callbacks=[lgb.early_stopping(t.early_stopping_rounds, verbose=False)],
    )["valid auc-mean"]
    assert n_trees == len(ref)
    assert auc == pytest.approx(ref[-1], abs=1e-12)


def test_cv_loop_reading_auc_every_k_trees_stops_near_lgb_cv(history, demo_config):
    """Reading the AUC every 5 trees: the count is a multiple of 5 within 5 trees of the first best,
    unless a later multiple of 5 is better (then the curve rose again after lgb.cv's stop point)."""
    c = demo_config.dataset
    X, y = features(history, demo_config)
    cohorts = history[c.cohort_column].astype(str).to_numpy()
    every = {}
    for k in (1, 5):
        t = with_training(demo_config, eval_every=k).training
        every[k] = search_point(X, y, cohorts, t.param_grid[1], t, c)
    assert every[5].n_trees % 5 == 0
    assert abs(every[5].n_trees - every[1].n_trees) < 5 or every[5].cv_auc > every[1].cv_auc
    assert every[5].cv_auc == pytest.approx(every[1].cv_auc, abs=2e-3)


def test_tuning_sample_keeps_each_cohorts_share_and_base_rate(history, demo_config):
    c = demo_config.dataset
    y = at_risk(history, c)
    cohorts = history[c.cohort_column].astype(str).to_numpy()
    t = with_training(demo_config, tune_sample_above=1000, tune_sample_rows=800).training
    rows = tuning_rows(cohorts, y, t)
    assert len(rows) == pytest.approx(800, abs=8)  # rounding, one per cohort and outcome at most
    assert np.all(np.diff(rows) > 0)  # original order, no repeats
    np.testing.assert_array_equal(rows, tuning_rows(cohorts, y, t))  # seeded
    for g in np.unique(cohorts):
        whole, part = cohorts == g, cohorts[rows] == g
        assert part.mean() == pytest.approx(whole.mean(), abs=0.01)
        assert y[rows][part].mean() == pytest.approx(y[whole].mean(), abs=0.01)
    below = with_training(demo_config, tune_sample_above=len(y)).training
    np.testing.assert_array_equal(tuning_rows(cohorts, y, below), np.arange(len(y)))


def test_sampled_selection_takes_the_tree_count_from_all_rows(one_process, history, sampled_config):
    """The grid ran on the sample; the winner's tree count is the CV on all rows, recorded as such."""
    model = one_process.model
    grid, last = model.search[:-1], model.search[-1]
    assert len(grid) == len(sampled_config.training.param_grid)
    assert len({e["rows"] for e in grid}) == 1 and grid[0]["rows"] == pytest.approx(800, abs=8)
    best = max(grid, key=lambda e: e["cv_auc"])
    assert last["tree_count_on_all_rows"] and last["rows"] == len(history)
    assert last["params"] == best["params"] and model.n_trees == last["n_trees"]
    assert model.booster.num_trees() == model.n_trees
    c = sampled_config.dataset
    X, y = features(history, sampled_config)
    cohorts = history[c.cohort_column].astype(str).to_numpy()
    again = search_point(X, y, cohorts, best["params"], sampled_config.training, c)
    assert again.n_trees == model.n_trees


def test_backtest_year_gives_the_test_cohorts_uncalibrated_log_odds(history, sampled_config):
    c = sampled_config.dataset
    year = train_module.backtest_year(history, "2021", category_levels(history, c), c, sampled_config.training)
    assert set(year.predictions.cohort) == {"2021"} and len(year.raw) == len(year.predictions)
    assert "lightgbm" not in year.predictions  # calibrated later, with the evidence of earlier years only
    assert set(year.oof.cohort) == set(history[c.cohort_column].astype(str)) - {"2021"} and year.oof.raw.notna().all()
    step = year.step()
    assert step.cohort == "2021" and (step.test.y == year.predictions.y.to_numpy()).all()


def same_training(a, b, *, backtest_tol: float = 0.0) -> None:
    """Chosen parameters, tree count and search identical; backtest metrics within `backtest_tol`."""
    assert a.model.params == b.model.params
    assert a.model.n_trees == b.model.n_trees
    assert a.model.search == b.model.search
    assert a.summary["family_by_cohort"] == b.summary["family_by_cohort"]
    for name in ("lightgbm", "logistic", "base_rate"):
        for cohort, m in a.metrics["backtest"][name].items():
            for key, value in m.items():
                assert b.metrics["backtest"][name][cohort][key] == pytest.approx(value, abs=backtest_tol), (
                    name,
                    cohort,
                    key,
                )


def test_the_clis_process_pool_gives_the_same_training(one_process, history, sampled_config):
    """The CLI's local pool (spawned processes: a forked one hangs in LightGBM's OpenMP)."""
    with local_pool(2) as pool_map:
        pooled = train(history, sampled_config, map=pool_map, threads=1, progress=lambda _: None)
    same_training(one_process, pooled)
    pd.testing.assert_frame_equal(one_process.backtest_predictions, pooled.backtest_predictions)


@pytest.mark.slow
def test_two_dask_workers_give_the_same_training(one_process, history, sampled_config):
    """Units as tasks on a 2-worker local cluster: the same seeded fits, so the same numbers exactly.
    Then the final fits on LightGBM's Dask estimator (every run above dask_fit_above): selection and tree
    counts are unchanged; the models differ slightly (distributed LightGBM bins each feature on one
    worker's rows and bags per worker), so backtest metrics agree within 0.02, the AUC within 0.01."""
    from risk_model.dask_fit import DaskFit

    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):

        def dask_map(fn, *iterables):
            return client.gather(client.map(fn, *iterables, pure=False))

        on_dask = train(history, sampled_config, map=dask_map, threads=1, progress=lambda _: None)
        workers_used = len(client.run(lambda: 1))
        big = with_training(sampled_config, dask_fit_above=1000)
        dask_fitted = train(history, big, map=dask_map, fit=DaskFit(lambda: client), threads=1, progress=lambda _: None)
    assert workers_used == 2
    same_training(one_process, on_dask)
    pd.testing.assert_frame_equal(one_process.backtest_predictions, on_dask.backtest_predictions)
    assert one_process.model.search == dask_fitted.model.search
    assert one_process.model.n_trees == dask_fitted.model.n_trees == dask_fitted.model.booster.num_trees()
    for cohort, m in one_process.metrics["backtest"]["lightgbm"].items():
        got = dask_fitted.metrics["backtest"]["lightgbm"][cohort]
        assert got["roc_auc"] == pytest.approx(m["roc_auc"], abs=0.01)
        assert got["ece"] == pytest.approx(m["ece"], abs=0.02)
