"""The final fit on a Dask cluster with LightGBM's own Dask estimator (`lightgbm.dask`).

For training tables above `TrainingConfig.dask_fit_above` rows, when training runs on a
cluster (`train(..., fit=DaskFit(...))`): the rows are split into one partition per worker
and LightGBM trains one model across the workers (data-parallel: each worker builds
histograms of its rows, LightGBM's own network sums them). The model is a plain
`lgb.Booster`, saved and scored like any other.

Not bit-identical to a fit in one process: in distributed mode LightGBM finds each feature's
bin boundaries on one worker's rows and bags rows per worker, so the trees differ slightly
(tests/test_train_scale.py states the tolerance). Only the final fit runs here: parameters,
tree count and calibration are chosen as in one process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from risk_model.features import to_lightgbm


class DaskFit:
    """A `train.Fit`: fits with `lightgbm.dask.DaskLGBMClassifier` on the client `client()` returns."""

    def __init__(self, client: Callable[[], Any]) -> None:
        self.client = client

    def __call__(self, params: dict, X: pd.DataFrame, y: np.ndarray, n_trees: int) -> lgb.Booster:
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        client = self.client()
        workers = max(1, len(client.scheduler_info()["workers"]))
        frame = to_lightgbm(X).reset_index(drop=True)
        X_parts = dd.from_pandas(frame, npartitions=workers, sort=True)
        y_parts = dd.from_pandas(pd.Series(np.asarray(y), name="y"), npartitions=workers, sort=True)
        # each worker's threads are its own (LocalCluster threads_per_worker); LightGBM sets them per worker
        kwargs = {k: v for k, v in params.items() if k not in ("num_threads", "n_jobs")}
        model = DaskLGBMClassifier(client=client, n_estimators=n_trees, **kwargs)
        # LightGBM waits on the parts with the default client: make this one current (Prefect's Dask runner
        # does not make its client the default, and a flow found it so)
        with client.as_current():
            model.fit(X_parts, y_parts)
        return model.booster_
