"""How scoring time grows with the intake (100k, 1M, 5M students) on 1 and 2 Dask workers.

Run: `python bench/bench_scale.py [--sizes 100000 1000000 5000000] [--factor-sample 20000]`.
Bounded: about 10-15 minutes on 2 cores; configurations left when --budget runs out are skipped
and listed. Prints the load average at start and end: other work on the machine skews it.

What is timed, per size and worker count (local Dask cluster, 1 thread per worker):
  ship    the partitions and the model sent to the workers (scatter)
  score   probabilities on the workers (LightGBM predict + calibration)
  rank    ranks and capacity tiers over the whole cohort, in the coordinator
Factors (LightGBM pred_contrib, exact TreeSHAP, ~200x a predict) are computed in the coordinator
once tiers are known, on all its cores, for the tiers advisors act on only (`[scoring]
factor_tiers`; the others when first looked up). They are timed on a fixed sample and extrapolated
linearly in rows: TreeSHAP costs the same for every row of a given model, so factor time = explained
rows x (sample seconds / sample rows). Stated again in the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk_model import jobs, partition  # noqa: E402
from risk_model.config import Settings, load_config  # noqa: E402
from risk_model.demo import make_demo  # noqa: E402
from risk_model.registry import Registry  # noqa: E402
from risk_model.schema import validate  # noqa: E402
from risk_model.score import explain, score  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def trained(home: Path):
    """The champion `student-risk demo` trains (demo settings, 6 cohorts of 3000): the model's trees and
    leaves, not the training data, set the cost of scoring."""
    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    demo = make_demo(n_per_cohort=3000, n_past=6, seed=0)
    settings = Settings(home=home)
    jobs.train_and_register(
        settings, config, validate(demo.history, config.dataset, stage="train", source="bench"), progress=lambda _: None
    )
    bundle = Registry(settings.registry_dir).load(contract=config.dataset)
    return config, bundle


def intake(n: int, base: pd.DataFrame) -> pd.DataFrame:
    """n students: the generated intake tiled (scoring cost does not depend on which rows repeat)."""
    reps = -(-n // len(base))
    return pd.concat([base] * reps, ignore_index=True).iloc[:n]


def run_on(client, bundle, bundle_f, df, config, *, partitions: int) -> dict:
    c, s = config.dataset, config.scoring
    t0 = time.perf_counter()
    parts = partition.split(df, partitions)
    part_fs = client.scatter(parts, hash=False)
    t1 = time.perf_counter()
    futures = client.map(partition.score_part, [bundle_f] * len(parts), part_fs, pure=False)
    results = client.gather(futures)
    t2 = time.perf_counter()
    result = partition.combine(bundle, df, c, s, results, factors=False)  # factors: timed apart, below
    t3 = time.perf_counter()
    client.cancel(part_fs)
    assert len(result.scores) == len(df)
    return {"ship": t1 - t0, "score": t2 - t1, "rank": t3 - t2, "total": t3 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--factor-sample", type=int, default=20_000)
    ap.add_argument("--budget", type=float, default=17 * 60, help="Seconds; later configurations are skipped.")
    args = ap.parse_args()
    import distributed
    import lightgbm

    started = time.perf_counter()
    print(
        f"machine: {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"lightgbm {lightgbm.__version__}, dask {distributed.__version__}"
    )
    print(f"load average at start (1/5/15 min): {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        config, bundle = trained(Path(tmp) / "runtime")
        print(
            f"model: {bundle.metadata['n_trees']} trees, {len(bundle.features)} features "
            f"(trained in {time.perf_counter() - started:.0f} s)"
        )
        base = make_demo(n_per_cohort=min(max(args.sizes), 1_000_000), n_past=1, seed=4, activity=False).intake
        base = validate(base, config.dataset, stage="score", source="bench")
        rows, skipped = [], []
        sample = intake(args.factor_sample, base)
        tries = []
        for _ in range(2):
            t = time.perf_counter()
            explain(bundle, sample, config.scoring.n_factors, progress=lambda _: None)
            tries.append(time.perf_counter() - t)
        rate = args.factor_sample / min(tries)
        share = score(bundle, sample, config.dataset, config.scoring, factors=False).summary["tiers"]
        share = sum(share[t] for t in config.scoring.factor_tiers) / args.factor_sample
        print(
            f"factors in the coordinator (all its cores) on a {args.factor_sample:,}-student sample, best of 2: "
            f"{min(tries):.1f} s = {rate:,.0f} students/s; explained at scoring: tiers "
            f"{list(config.scoring.factor_tiers)} = {share:.0%} of students (load {load()})"
        )
        for w in args.workers:
            with (
                distributed.LocalCluster(
                    n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="6GiB"
                ) as cluster,
                distributed.Client(cluster) as client,
            ):
                threads = set(client.run(lambda: os.environ.get("OMP_NUM_THREADS")).values())
                bundle_f = client.scatter(bundle, broadcast=True, hash=False)
                print(f"\n{w} worker(s) (OMP_NUM_THREADS={','.join(map(str, threads))} each; load {load()})")
                for n in args.sizes:
                    if time.perf_counter() - started > args.budget:
                        skipped.append(f"{n:,} students on {w} worker(s)")
                        continue
                    df = intake(n, base)
                    r = run_on(client, bundle, bundle_f, df, config, partitions=max(2 * w, n // 500_000))
                    factors_s = n * share / rate
                    rows.append(
                        {
                            "students": n,
                            "workers": w,
                            **r,
                            "factors_est": factors_s,
                            "with_factors_est": r["total"] + factors_s,
                        }
                    )
                    print(
                        f"  [load {load()}]\n  {n:>9,} students: ship {r['ship']:6.1f} s  score {r['score']:6.1f} s  "
                        f"rank+tier {r['rank']:5.1f} s  = {r['total']:6.1f} s without factors;  "
                        f"+ factors (extrapolated) {factors_s:8.0f} s  = {r['total'] + factors_s:8.0f} s"
                    )
                    del df
    table = pd.DataFrame(rows)
    print(
        "\nSummary (seconds; 'with factors' = measured without factors + acted-on share x sample-rate extrapolation):"
    )
    if len(table):
        print(table.round(1).to_string(index=False))
    if skipped:
        print(f"Skipped (time budget {args.budget:.0f} s): {', '.join(skipped)}")
    if len(table):
        big = table[table.workers == table.workers.max()].sort_values("students").iloc[-1]
        n = int(big.students)
        print(
            f"Projection for {n:,} students, the acted-on tiers explained at scoring ({share:.0%}): factors run "
            f"in the coordinator at {rate / (os.cpu_count() or 1):,.0f} students/s per core as measured here, "
            f"after {big['total']:.1f} s of partitioned probabilities and whole-cohort rank/tier as measured "
            "(shipping data and the store write not included):"
        )
        for cores in (2, 8, 16, 32):
            est = n * share / (rate / (os.cpu_count() or 1) * cores) + big["total"]
            print(f"  coordinator with {cores:>2} cores: ~{est / 60:6.1f} min")
    print(f"\nload average at end (1/5/15 min): {load()}; total bench time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
