"""Where a flow's tasks run: Prefect's Dask task runner, on a local cluster or a scheduler by address.

Scoring (`flows/partitioned.py`) and training (`flows/pipeline.py`) share it. `dask_map` is the
`map` that `risk_model.train.train` hands its units to inside a flow: each unit is a Prefect
task, so runs, retries and timings are recorded per unit, and the task runner puts it on a
Dask worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import distributed
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect_dask import DaskTaskRunner

from risk_model.dask_fit import DaskFit


def task_runner(dask_address: str | None = None, dask_workers: int = 2) -> DaskTaskRunner:
    """A runner on the Dask scheduler at `dask_address`, else on a local cluster of `dask_workers` processes."""
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@task(name="train-unit", cache_policy=NO_CACHE)
def train_unit(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def task_map(fn: Callable[..., Any], *iterables: Any) -> list[Any]:
    """`builtins.map`'s shape, each call a Prefect task on the flow's task runner; results in order."""
    unit = train_unit.with_options(name=f"train-{fn.__name__.strip('_').replace('_', '-')}")
    futures = [unit.submit(fn, *args) for args in zip(*iterables, strict=True)]
    return [f.result() for f in futures]


def dask_fit() -> DaskFit:
    """The final fit on the flow's Dask cluster with LightGBM's Dask estimator (`risk_model.dask_fit`): the
    client is the task runner's, the default client of the flow's process."""
    return DaskFit(distributed.get_client)
