"""Scoring partitioned across Dask workers (Prefect's DaskTaskRunner).

The per-student probabilities run one task per partition on a Dask cluster: a local one by
default, or any scheduler by address (multi-node, Kubernetes). Ranks and capacity tiers are
computed once for the whole cohort in the flow, then the top factors (TreeSHAP, the slow part)
of the tiers advisors act on, and all partitions are written in one store transaction. Workers load the
champion from the registry folder, so on several machines that folder must be shared.
"""

from __future__ import annotations

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.pipeline import validate_task
from flows.runners import task_runner
from flows.settings import run_settings
from risk_model import jobs, partition
from risk_model.config import Settings, load_config
from risk_model.registry import Registry


@task(name="score-partition", cache_policy=NO_CACHE, retries=1)
def score_partition_task(registry_dir: str, point: str, version: str, part: pd.DataFrame) -> partition.PartScores:
    return partition.score_part(partition.load_bundle(registry_dir, point, version), part)


@task(name="save-scores", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def save_task(settings: Settings, result) -> dict:
    return partition.save(settings, result, progress=get_run_logger().info)


@flow(name="score-on-dask")
def score_on_dask_flow(
    config_path: str,
    intake_path: str,
    home: str | None = None,
    cohort: str | None = None,
    factors: bool = True,
    partitions: int = 4,
) -> list[dict]:
    """Validate here, score partitions on the flow's task runner, rank and store here."""
    config = load_config(config_path)
    settings = run_settings(home)
    out = []
    for point in config.points:
        df = validate_task(
            jobs.prepare, config, intake_path, stage="score", point=point, cohorts=[cohort] if cohort else None
        )
        bundle = Registry(settings.registry_dir).load(point=point, contract=config.for_point(point).dataset)
        registry_dir = str(settings.registry_dir.resolve())
        futures = [
            score_partition_task.submit(registry_dir, point, bundle.version, part)
            for part in partition.split(df, partitions)
        ]
        result = partition.combine(
            bundle, df, config.for_point(point).dataset, config.scoring, [f.result() for f in futures], factors=factors
        )
        out.append(save_task(settings, result))
    return out


@flow(name="score-partitioned")
def score_partitioned_flow(
    config_path: str,
    intake_path: str,
    home: str | None = None,
    cohort: str | None = None,
    factors: bool = True,
    partitions: int = 4,
    dask_address: str | None = None,
    dask_workers: int = 2,
) -> list[dict]:
    """Score a new intake like `score`, with the per-student work spread over Dask workers."""
    run_settings(home)  # here, in the deployed run itself: a subflow run has no deployment to check against
    runner = task_runner(dask_address, dask_workers)
    return score_on_dask_flow.with_options(task_runner=runner)(
        config_path, intake_path, home, cohort, factors, partitions
    )
