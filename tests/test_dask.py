"""Partitioned scoring: the same scores as one pass, on a builtin map and on a 2-worker Dask cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from risk_model import partition, store
from risk_model.config import ScoringConfig, Settings
from risk_model.registry import Registry
from risk_model.score import score

COLUMNS = ["student_id", "cohort", "probability", "tier", "rank", "factors", "model_version", "point"]


@pytest.fixture(scope="module")
def bundle(trained_home, demo_config):
    return Registry(trained_home["settings"].registry_dir).load(contract=demo_config.dataset)


@pytest.fixture(scope="module")
def whole(bundle, trained_home, demo_config):
    return score(bundle, trained_home["intake"], demo_config.dataset, demo_config.scoring)


def same_scores(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a[COLUMNS].reset_index(drop=True), b[COLUMNS].reset_index(drop=True))


def test_split_keeps_every_row_once_in_order(small_demo):
    df = small_demo.intake
    for n in (1, 3, 7, len(df) + 5):
        parts = partition.split(df, n)
        assert len(parts) == min(n, len(df))
        pd.testing.assert_frame_equal(pd.concat(parts), df)
    with pytest.raises(ValueError, match="n=0"):
        partition.split(df, 0)


@pytest.mark.parametrize("tier_mode", ["capacity", "threshold"])
def test_partitioned_equals_whole_cohort(bundle, trained_home, demo_config, tier_mode):
    s = ScoringConfig(**{**demo_config.scoring.model_dump(), "tier_mode": tier_mode})
    df = trained_home["intake"]
    expected = score(bundle, df, demo_config.dataset, s)
    got = partition.score_partitioned(bundle, df, demo_config.dataset, s, partitions=5)
    same_scores(got.scores, expected.scores)
    assert got.summary == expected.summary
    # capacity tiers are over the whole cohort, not per partition
    assert (got.scores.tier == "high").sum() == round(s.high_share * len(df)) or tier_mode == "threshold"


def test_a_lost_partition_is_refused(bundle, trained_home, demo_config):
    df = trained_home["intake"]
    c, s = demo_config.dataset, demo_config.scoring
    parts = [partition.score_part(bundle, p) for p in partition.split(df, 3)]
    with pytest.raises(ValueError, match="partition is missing"):
        partition.combine(bundle, df, c, s, parts[:2])


@pytest.mark.slow
def test_two_dask_workers_give_identical_scores(bundle, trained_home, demo_config, whole):
    distributed = pytest.importorskip("distributed")
    df = trained_home["intake"]
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):

        def dask_map(fn, parts):
            return client.gather(client.map(fn, parts, pure=False))

        got = partition.score_partitioned(
            bundle, df, demo_config.dataset, demo_config.scoring, partitions=4, map_fn=dask_map
        )
        workers_used = len(client.run(lambda: 1))
    assert workers_used == 2
    same_scores(got.scores, whole.scores)


@pytest.mark.slow
def test_partitioned_flow_on_local_dask_cluster(tmp_path, trained_home, demo_config, small_demo, whole):
    """The Prefect flow with DaskTaskRunner (2 workers): one store transaction, the same scores."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.partitioned import score_partitioned_flow

    home = tmp_path / "runtime"
    shutil.copytree(trained_home["settings"].home / "models", home / "models")
    intake = tmp_path / "intake.csv"
    small_demo.intake.to_csv(intake, index=False)
    config = tmp_path / "demo.toml"
    config.write_text((Path(__file__).parents[1] / "risk_model" / "examples" / "demo.toml").read_text())
    with prefect_test_harness(server_startup_timeout=120):
        out = score_partitioned_flow(str(config), str(intake), home=str(home), partitions=3, dask_workers=2)
    assert out[0]["n_students"] == len(small_demo.intake)
    engine = store.connect(Settings(home=home).resolved_store_url)
    try:
        stored = store.read_scores(engine, out[0]["cohorts"][0])
    finally:
        engine.dispose()
    expected = whole.scores.sort_values("rank").reset_index(drop=True)
    assert stored.student_id.tolist() == expected.student_id.tolist()
    assert stored.tier.tolist() == expected.tier.tolist()
    assert stored.probability.round(6).tolist() == expected.probability.tolist()
    assert [f for f in stored.factors] == list(expected.factors)


def test_a_training_map_on_dask_sends_each_large_frame_once(monkeypatch):
    """`runners.task_map` in a flow on the Dask task runner: every unit gets the rows, but a frame used by
    several units is scattered to the cluster once rather than carried inside each task."""
    import operator

    import distributed
    import numpy as np
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from flows import runners

    sent = []
    scatter = distributed.Client.scatter
    monkeypatch.setattr(
        distributed.Client, "scatter", lambda self, data, **kw: sent.append(data) or scatter(self, data, **kw)
    )
    rows = runners.SHIP_ROWS + 5

    @flow
    def mapped() -> list:
        big = pd.DataFrame({"a": np.arange(rows), "b": np.arange(rows) * 2.0})
        small = big.head(10)
        return runners.task_map(operator.getitem, [big, big, small, big], ["a", "b", "a", "a"])

    with prefect_test_harness(server_startup_timeout=120):
        a, b, small_a, a_again = mapped.with_options(task_runner=runners.task_runner(dask_workers=2))()
    assert a.tolist() == a_again.tolist() == list(range(rows)) and b.sum() == 2.0 * sum(range(rows))
    assert small_a.tolist() == list(range(10))
    assert len(sent) == 1 and len(sent[0]) == rows  # the big frame once; the small one inside its task
