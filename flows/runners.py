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
import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext
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


SHIP_ROWS = 10_000  # frames and arrays from this many rows travel to the workers once, scattered


def shipper(client: distributed.Client) -> Callable[[Any], Any]:
    """A function that replaces each frame or array of `SHIP_ROWS` rows or more (inside tuples, lists and
    dicts too) by the future of one copy scattered on `client`'s cluster, the same future each time the same
    object comes back; smaller values are returned as they are. Dask hands a task the data behind a future.

    Sent inside each task instead, every unit of a training run carries its own copy of the rows (at 1M
    students the graph was 680 MiB, about 3.4 GB at 5M), and Dask hashes them all to name each task."""
    shipped: dict[int, tuple[Any, distributed.Future]] = {}

    def ship(x: Any) -> Any:
        if isinstance(x, tuple | list):
            return type(x)(ship(v) for v in x)
        if isinstance(x, dict):
            return {k: ship(v) for k, v in x.items()}
        if isinstance(x, pd.DataFrame | np.ndarray) and len(x) >= SHIP_ROWS:
            if id(x) not in shipped:  # the object is kept beside its future, so its id is not reused
                shipped[id(x)] = (x, client.scatter(x, direct=True))
            return shipped[id(x)][1]
        return x

    return ship


def _flow_client() -> distributed.Client | None:
    """The Dask client of the running flow's task runner, or None off Dask. Prefect's Dask task runner does
    not make its client the process's default, so `distributed.get_client()` alone finds none in a flow."""
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if isinstance(runner, DaskTaskRunner):
        return runner.client
    try:
        return distributed.get_client()
    except ValueError:
        return None


def _dask_client() -> distributed.Client:
    client = _flow_client()
    if client is None:
        raise RuntimeError(
            "the final fit on LightGBM's Dask estimator needs a Dask cluster: run training as a flow on the Dask "
            "task runner, or raise [training] dask_fit_above above this run's rows"
        )
    return client


def task_map(fn: Callable[..., Any], *iterables: Any) -> list[Any]:
    """`builtins.map`'s shape, each call a Prefect task on the flow's task runner; results in order.
    On Dask, large frames and arrays go to the workers once (`shipper`), not inside every task."""
    unit = train_unit.with_options(name=f"train-{fn.__name__.strip('_').replace('_', '-')}")
    client = _flow_client()
    ship = shipper(client) if client is not None else (lambda x: x)
    futures = [unit.submit(fn, *ship(args)) for args in zip(*iterables, strict=True)]
    return [f.result() for f in futures]


def dask_fit() -> DaskFit:
    """The final fit on the flow's Dask cluster with LightGBM's Dask estimator (`risk_model.dask_fit`): the
    client is the task runner's (`_flow_client`)."""
    return DaskFit(_dask_client)
