"""Scoring throughput against its floor: `score.score` vs bare LightGBM, with and without factors.

    python bench/bench_score.py [--sizes 1500 10000 100000 1000000] [--repeat 3] [--records 1000]

Trains the champion `student-risk demo` trains (demo settings, six cohorts of 3,000), then for each
intake size N (the generated intake tiled to N students, validated once, not timed):

  bare predict    `Booster.predict(X, raw_score=True)` on the ready float matrix, the faster of 1 thread
                  and all cores: the floor of any scoring.
  no factors      `score.score(..., factors=False)`: model input, predict, calibration, ranks, tiers,
                  the summary with the intake's expected performance; ratio = that / bare predict (wall),
                  cpu ratio = the same in CPU time, bare predict run with the threads scoring uses.
  with factors    `score.score(...)` as shipped: TreeSHAP only for `[scoring] factor_tiers` (default high
                  and medium); every student still gets probability, rank and tier.
  bare contrib    `Booster.predict(X, pred_contrib=True)` for every student, all cores: the cost of
                  explaining everyone (timed on up to --contrib-sample rows, rate extrapolated: TreeSHAP
                  costs the same for every row of a model).
  every tier      `score.score` explaining everyone (only where N <= --contrib-sample).

Each figure is the best of --repeat runs (other work on the machine only slows a run down). Then the
per-record paths the API uses: one student's factors computed on first lookup (`explain_inputs`), and
POST /v1/score with 1 and --records records through the app in-process (FastAPI TestClient, SQLite
store holding the scored intake; `bench/bench_fast.py` measures the same over HTTP with wrk and
PostgreSQL). CPU time (user+sys of this process) is printed beside wall time: load from other work
inflates wall time, CPU time much less.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from risk_model import jobs  # noqa: E402
from risk_model.config import Settings, load_config  # noqa: E402
from risk_model.demo import make_demo  # noqa: E402
from risk_model.registry import Registry  # noqa: E402
from risk_model.schema import validate  # noqa: E402
from risk_model.score import _threads, explain_inputs, model_input, score  # noqa: E402


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def best(fn, repeat: int) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) of `repeat` runs of `fn`."""
    runs = []
    for _ in range(repeat):
        c, t = cpu(), time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t, cpu() - c))
    return min(runs)


def tiled(base: pd.DataFrame, n: int, c) -> pd.DataFrame:
    """n students: the validated intake repeated, each with its own id (scoring cost does not depend on
    which rows repeat)."""
    df = pd.concat([base] * -(-n // len(base)), ignore_index=True).iloc[:n].copy()
    df[c.id_column] = [f"S{i:07d}" for i in range(n)]
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_500, 10_000, 100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--contrib-sample", type=int, default=20_000)
    ap.add_argument("--records", type=int, default=1000)
    args = ap.parse_args()
    quiet = lambda _: None  # noqa: E731
    print(f"student-risk scoring benchmark: {os.cpu_count()} cores, load average (1/5/15 min) {load()} at start")
    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    c, s = config.dataset, config.scoring
    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        settings = Settings(home=Path(tmp) / "runtime")
        demo = make_demo(n_per_cohort=3000, n_past=6, seed=0)
        t = time.perf_counter()
        jobs.train_and_register(
            settings, config, validate(demo.history, c, stage="train", source="bench"), progress=quiet
        )
        bundle = Registry(settings.registry_dir).load(contract=c)
        print(
            f"model: {bundle.metadata['n_trees']} trees, {len(bundle.features)} features, trained in "
            f"{time.perf_counter() - t:.0f} s; factors at scoring for tiers {list(s.factor_tiers)} "
            f"(high {s.high_share:.0%}, medium to {s.medium_share:.0%} of the intake)"
        )
        raw_intake = make_demo(n_per_cohort=min(max(args.sizes), 200_000), n_past=1, seed=4, activity=False).intake
        base = validate(raw_intake, c, stage="score", source="bench")
        head = (
            f"{'students':>9} {'bare predict/s':>14} {'no factors/s':>12} {'ratio':>5} {'cpu ratio':>9}  "
            f"{'with factors/s':>14} {'explained':>9} {'cpu s':>6}  {'bare contrib/s':>14} {'every tier/s':>12}"
        )
        print(head)
        every = s.model_copy(update={"factor_tiers": ["high", "medium", "low"]})
        for n in args.sizes:
            df = tiled(base, n, c)
            X = model_input(bundle, df)
            bare = {
                th: best(lambda th=th: bundle.booster.predict(X, raw_score=True, num_threads=th), args.repeat)  # noqa: B023
                for th in (1, 0)
            }
            score(bundle, df.head(200), c, s, progress=quiet)  # warm-up (describer, codes)
            plain, plain_cpu = best(lambda: score(bundle, df, c, s, factors=False, progress=quiet), args.repeat)  # noqa: B023
            held: dict = {}

            def shipped() -> None:
                held["r"] = score(bundle, df, c, s, progress=quiet)  # noqa: B023

            factors, factors_cpu = best(shipped, 1 if n > 100_000 else args.repeat)
            explained = held["r"].summary["factors"]["n_explained"]
            m = min(n, args.contrib_sample)
            contrib = best(lambda: bundle.booster.predict(X[:m], pred_contrib=True, num_threads=0), 1)[0]  # noqa: B023
            full = ""
            if n <= args.contrib_sample:
                full = f"{n / best(lambda: score(bundle, df, c, every, progress=quiet), 1)[0]:>12,.0f}"  # noqa: B023
            floor = min(wall for wall, _ in bare.values())
            same_threads = bare[_threads(n)][1]  # the bare predict's CPU with the threads scoring uses
            print(
                f"{n:>9,} {n / floor:>14,.0f} {n / plain:>12,.0f} {floor / plain:>5.2f} {same_threads / plain_cpu:>9.2f}  "
                f"{n / factors:>14,.0f} {explained / n:>9.0%} {factors_cpu:>6.1f}  {m / contrib:>14,.0f} {full:>12}",
                flush=True,
            )
            if n == max(args.sizes):
                last = (df, held["r"])
        print(
            f"load average {load()}. ratio = no factors / bare predict, wall time, the bare one the faster of 1 thread "
            "and all cores (aim: >= 0.5); cpu ratio = CPU time of bare predict with the threads scoring uses (`score._threads`: 1 below "
            "100 students, all cores above) / CPU time of scoring. with factors/s: every student scored, the "
            "explained share with TreeSHAP; explaining everyone runs at about the bare contrib rate (every tier/s)."
        )
        api_paths(settings, config, bundle, last, args.records)


def api_paths(settings: Settings, config, bundle, last, n_records: int) -> None:
    """One student's factors on first lookup; POST /v1/score in-process."""
    from fastapi.testclient import TestClient

    from api import keys
    from api.app import create_app
    from api.settings import ApiSettings
    from risk_model import store

    df, result = last
    pending = [i for i in result.scores["inputs"].head(20_000) if isinstance(i, dict)][:200]
    times = []
    for one in pending:
        t = time.perf_counter()
        explain_inputs(bundle, [json.loads(json.dumps(one))])
        times.append(time.perf_counter() - t)
    print(
        f"\nfactors of one student on first lookup (explain_inputs, {len(times)} students): median "
        f"{statistics.median(times) * 1000:.2f} ms, p99 {np.percentile(times, 99) * 1000:.2f} ms (then one UPDATE)"
    )
    intake = df.head(50_000)
    jobs.score_and_store(settings, config, intake, progress=lambda _: None)
    api_settings = ApiSettings(home=settings.home, api_champion_ttl_seconds=60)
    engine = store.connect(api_settings.resolved_store_url)
    _, key = keys.create_key(engine, name="bench", scope="score")
    engine.dispose()
    records = json.loads(make_demo(n_per_cohort=max(n_records, 1), n_past=1, seed=9).intake.to_json(orient="records"))
    with TestClient(create_app(api_settings)) as client:
        headers = {"X-API-Key": key}
        print(f"POST /v1/score in-process (TestClient, SQLite), median of 30 (c=1); load average {load()}")
        for size in (1, n_records):
            body = {"records": records[:size]}
            for choice in ("tiers", "all", "none"):
                client.post("/v1/score", params={"factors": choice}, json=body, headers=headers)
                walls, cpus = [], []
                for _ in range(30):
                    c0, t0 = cpu(), time.perf_counter()
                    r = client.post("/v1/score", params={"factors": choice}, json=body, headers=headers)
                    walls.append(time.perf_counter() - t0)
                    cpus.append(cpu() - c0)
                assert r.status_code == 200, r.text
                n_explained = sum(x["explained"] for x in r.json()["results"])
                print(
                    f"  {size:>5} record(s), factors={choice:<5} median {statistics.median(walls) * 1000:7.2f} ms "
                    f"(cpu {statistics.median(cpus) * 1000:7.2f} ms), {n_explained} explained"
                )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
