"""What the boosting of a cheaper validation design would cost: is issue 16's 15x aim reachable at all?

    python bench/bench_design_floor.py [--sizes 100000] [--workers 2]

Not the product's design: a probe of a cheaper one, a forward holdout, measured on the same students as bench_scale_train.py (the demo generator's six past
cohorts). Each run of the procedure (the champion on all six cohorts, and each backtest year
on the cohorts before it, as `train` runs them) is done as a forward holdout instead of a
cohort-grouped CV: its latest cohort is held out (a stratified fifth of the only cohort when
there is one), and
  search      each parameter set of [training] param_grid is fitted on the run's tuning rows
              (`train.tuning_rows`: a per-cohort sample above tune_sample_above) and stopped
              early on the held-out cohort's share of them;
  tree count  when the search ran on a sample, the chosen set again on all the run's other
              cohorts, stopped early on all of the held-out one;
  fit         the chosen set on all the run's rows with that many trees.
One binned Dataset per run (`train._dataset`), the product's LightGBM parameters and early stopping
(`train._cv`, one fold), 1 thread per unit, units spread over `--workers` spawned processes (`flows.steps.local_pool`).

Printed per size: each run's chosen set, tree count, holdout AUC and CPU seconds per step; then
the CPU and wall seconds of all runs with the search and without it (the search's columns left
out: the least a design that still picks a tree count and refits every run can take), each as a
multiple of one bare 200-tree fit on the same rows (as bench_scale_train.py: the faster of 1
thread and all threads). This is boosting alone: features, baselines, calibration and metrics
come on top.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def run_unit(X, y, cohorts, latest: str, config, X_next=None, y_next=None) -> dict:
    """One run of the forward-holdout procedure; CPU seconds of each of its steps in this process. With the
    cohort after the run's (`X_next`, `y_next`, a backtest year's test cohort), the fitted model's AUC there."""
    import lightgbm as lgb
    import numpy as np
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    from risk_model.train import _base_params, _cv, _dataset, tuning_rows

    warnings.filterwarnings("ignore", category=UserWarning)  # LightGBM's subset parameter notices
    c, t = config.dataset, config.training
    base = {**_base_params(t, c, len(y)), "num_threads": 1}
    started = time.process_time()
    data = _dataset(X, y, base)
    if len(np.unique(cohorts)) > 1:
        held = cohorts == latest
    else:  # one cohort: a stratified fifth of it
        _, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=t.seed)
        held = np.isin(np.arange(len(y)), te)
    tune = tuning_rows(cohorts, y, t)
    # the product's early stopping (`train._cv`) with one fold: the held-out cohort
    grid = [_cv({**base, **point}, data, [(tune[~held[tune]], tune[held[tune]])], t)[1:] for point in t.param_grid]
    pick = max(range(len(grid)), key=lambda i: grid[i][1])
    n_trees, auc = grid[pick]
    searched = time.process_time()
    if len(tune) < len(y):
        n_trees, auc = _cv({**base, **t.param_grid[pick]}, data, [(np.flatnonzero(~held), np.flatnonzero(held))], t)[1:]
    counted = time.process_time()
    model = lgb.train({**base, **t.param_grid[pick]}, data, n_trees)
    fitted = time.process_time()
    return {
        "rows": len(y),
        "pick": t.param_grid[pick],
        "trees": n_trees,
        "auc": auc,
        "search_s": searched - started,
        "count_s": counted - searched,
        "fit_s": fitted - counted,
        "next_auc": None if X_next is None else roc_auc_score(y_next, model.predict(X_next, raw_score=True)),
    }


def measure(n: int, workers: int) -> None:
    import numpy as np
    from bench_scale_train import bare_fit

    from flows.steps import local_pool
    from risk_model.config import load_config
    from risk_model.demo import make_demo
    from risk_model.features import build_features, category_levels, to_lightgbm
    from risk_model.schema import at_risk, validate

    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    c = config.dataset
    d = make_demo(n_per_cohort=n // 7, n_past=6, seed=0, activity=False)
    history = validate(d.history, c, stage="train", source="history").reset_index(drop=True)
    y = at_risk(history, c)
    cohorts = history[c.cohort_column].astype(str).to_numpy()
    order = c.sort_cohorts(cohorts)
    bare = bare_fit(to_lightgbm(build_features(history, c, category_levels(history, c))), y)["bare_s"]

    units = []  # the champion, then each backtest year's cohorts before it; largest first
    for k in range(len(order), 0, -1):
        rows = np.flatnonzero(np.isin(cohorts, order[:k]))
        part = history.iloc[rows]
        levels = category_levels(part, c)
        X = build_features(part, c, levels)
        nxt = np.flatnonzero(cohorts == order[k]) if k < len(order) else None
        X_next = None if nxt is None else to_lightgbm(build_features(history.iloc[nxt], c, levels))
        units.append((X, y[rows], cohorts[rows], order[k - 1], config, X_next, None if nxt is None else y[nxt]))
    with local_pool(workers) as pool_map:  # the CLI's spawned pool
        list(pool_map(abs, range(workers)))  # started before the clock, as a flow's workers are
        started = time.perf_counter()
        runs = list(pool_map(run_unit, *zip(*units, strict=True)))
        wall = time.perf_counter() - started
    print(f"{n:,} students ({len(y):,} training rows), {len(runs)} runs on {workers} process(es):")
    for k, r in zip(range(len(order), 0, -1), runs, strict=True):
        print(
            f"  cohorts 1-{k} ({r['rows']:,} rows): {r['pick']}, {r['trees']} trees, holdout AUC {r['auc']:.4f}; "
            f"CPU search {r['search_s']:.2f} s, tree count {r['count_s']:.2f} s, fit {r['fit_s']:.2f} s"
            + ("" if r["next_auc"] is None else f"; AUC on cohort {k + 1} {r['next_auc']:.4f}")
        )
    backtest = [r["next_auc"] for r in runs if r["next_auc"] is not None]
    print(f"  backtest AUC, mean over cohorts 2-{len(order)}: {np.mean(backtest):.4f}")
    cpu = sum(r["search_s"] + r["count_s"] + r["fit_s"] for r in runs)
    no_search = sum(r["count_s"] + r["fit_s"] for r in runs)
    print(
        f"  with the search: CPU {cpu:.1f} s, wall {wall:.1f} s = {wall / bare:.1f}x a bare fit ({bare:.2f} s); "
        f"CPU spread perfectly over {workers}: {cpu / workers / bare:.1f}x"
    )
    print(
        f"  without it (tree count and fit only): CPU {no_search:.1f} s; spread perfectly over {workers}: "
        f"{no_search / workers:.1f} s = {no_search / workers / bare:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO / "bench"))
    for n in args.sizes:
        measure(n, args.workers)


if __name__ == "__main__":
    main()
