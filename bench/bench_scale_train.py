"""Train, score and report at 100k, 1M and 5M students, on 1 and 2 local Dask workers.

    python bench/bench_scale_train.py [--sizes 100000 1000000] [--workers 1 2] [--compare-upto 1000000]

Students as in bench_core.py: the demo generator's six past cohorts and a new intake of N/7
each. Each (size, layout) runs in its own process, so its peak memory is its own:
  1 worker   `train` with the builtin map, in one process (the library alone)
  2 workers  `train`'s units on a 2-worker local Dask cluster (1 thread each), the final fits
             of runs above [training] dask_fit_above on LightGBM's Dask estimator
  pool       (with --pool) the CLI's default without a Prefect server: a 2-process local pool
Then the champion scores the intake with factors into SQLite (as shipped on main) and the
intake report is built. Printed per run: wall and CPU seconds (this process plus its worker
processes), peak memory (this process; the largest worker), the load average, and the ratio of
training time to one bare 200-tree LightGBM fit (LightGBM's defaults) on the same rows: the
faster of 1 thread and all threads, because all threads on a shared, loaded 2-core machine can
be 10x slower than one.

--compare-upto N: for sizes up to N the champion's grid also runs on all rows (on 2 workers),
to show whether the sample picks the same parameter set as all rows, on the same data.

Where parameters were chosen on a sample, it also prints what the champion alone costs in this
design (its cohort-grouped CV on all rows and its fit unit), the least its training can take.

The projection to a 4-node cluster uses the per-unit times the 2-worker run recorded: each
stage of `train` takes at least its longest unit, and at least its CPU seconds spread over the
cluster's cores; the coordinator's own work (features, metrics, the Dask fits) is added as
measured here. Shipping data between nodes is not included.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def bare_fit(X, y) -> dict:
    """One 200-tree LightGBM fit with its defaults on the same rows: 1 thread and all threads."""
    import lightgbm as lgb

    out = {}
    for threads in (1, 0):
        data = lgb.Dataset(X, y)
        t = time.perf_counter()
        lgb.train({"objective": "binary", "verbose": -1, "num_threads": threads}, data, 200)
        out[f"bare_{threads or 'all'}_s"] = time.perf_counter() - t
    out["bare_s"] = min(out["bare_1_s"], out["bare_all_s"])
    return out


def worker_cpu(client) -> float:
    """CPU seconds of the Dask workers so far (0 without a cluster)."""
    if client is None:
        return 0.0

    def used() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    return sum(client.run(used).values())


class Timed:
    """A map that records, per stage, how long each unit took where it ran (for the projection)."""

    def __init__(self, inner):
        self.inner, self.stages = inner, []

    def __call__(self, fn, *iterables):
        t = time.perf_counter()
        pairs = list(self.inner(_timed, [fn] * len(iterables[0]), *iterables))
        self.stages.append({"units": [s for _, s in pairs], "wall": time.perf_counter() - t, "fn": fn.__name__})
        return [r for r, _ in pairs]


def _timed(fn, *args):
    t = time.perf_counter()
    return fn(*args), time.perf_counter() - t


def compare_pick(X, y, cohorts, config, dask_map) -> dict:
    """The champion's grid on all rows vs. on the tuning sample: which parameter set each picks."""
    from risk_model.train import search_point, tuning_rows, winner

    c, t = config.dataset, config.training
    rows = tuning_rows(cohorts, y, t)
    out = {}
    for name, idx in (("sample", rows), ("all", None)):
        Xs, ys, gs = (X, y, cohorts) if idx is None else (X.iloc[idx], y[idx], cohorts[idx])
        n = len(t.param_grid)
        grid = list(
            dask_map(search_point, [Xs] * n, [ys] * n, [gs] * n, t.param_grid, [t] * n, [c] * n, [1] * n, [False] * n)
        )
        out[name] = {
            "rows": len(ys),
            "pick": winner(grid).params,
            "auc": {json.dumps(g.params): round(g.cv_auc, 5) for g in grid},
            "trees": {json.dumps(g.params): g.n_trees for g in grid},
        }
    out["same"] = out["sample"]["pick"] == out["all"]["pick"]
    return out


def run_one(n: int, layout: str, compare: bool) -> dict:
    import builtins

    from reports import build
    from risk_model import jobs
    from risk_model.config import Settings, load_config
    from risk_model.demo import make_demo
    from risk_model.features import build_features, category_levels, to_lightgbm
    from risk_model.schema import at_risk, validate

    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    c = config.dataset
    settings = Settings(home=Path(tempfile.mkdtemp(prefix=f"bench-train-{n}-")))
    quiet = lambda _: None  # noqa: E731
    started = time.perf_counter()

    def note(message: str) -> None:  # progress on stderr, so a run cut short still says how far it got
        print(
            f"  [{n:,} {layout}, {time.perf_counter() - started:.0f} s, load {load()}] {message}",
            file=sys.stderr,
            flush=True,
        )

    out: dict = {"students": n, "layout": layout, "load_start": load()}
    d = make_demo(n_per_cohort=n // 7, n_past=6, seed=0, activity=False)
    history = validate(d.history, c, stage="train", source="history").reset_index(drop=True)
    intake = validate(d.intake, c, stage="score", source="intake")
    del d
    y = at_risk(history, c)
    X = build_features(history, c, category_levels(history, c))
    out.update(rows=len(history), **bare_fit(to_lightgbm(X), y))

    if layout == "probe":  # what a size costs before training: data, a bare fit, the sample's pick
        from risk_model.train import search_point, tuning_rows, winner

        t = time.perf_counter()
        cohorts = history[c.cohort_column].astype(str).to_numpy()
        rows = tuning_rows(cohorts, y, config.training)
        grid = [
            search_point(X.iloc[rows], y[rows], cohorts[rows], p, config.training, c, None, False)
            for p in config.training.param_grid
        ]
        out.update(
            probe_s=time.perf_counter() - t,
            sample_pick=winner(grid).params,
            sample_auc={json.dumps(g.params): round(g.cv_auc, 5) for g in grid},
            peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            load_end=load(),
        )
        return out

    cluster = client = pool = None
    if layout == "2 workers":
        import distributed

        from flows.runners import shipper
        from risk_model.dask_fit import DaskFit

        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, memory_limit="10GiB"
        )
        client = distributed.Client(cluster)

        def dask_map(fn, *iterables):
            # each frame or array travels once, scattered, not inside the task graph (as the product's flow)
            ship = shipper(client)
            return client.gather(client.map(fn, *[[ship(x) for x in it] for it in iterables], pure=False))

        timed, fit, threads = Timed(dask_map), DaskFit(lambda: client), 1
    elif layout == "pool":
        from flows.steps import local_pool

        pool = local_pool(2)
        timed, fit, threads = Timed(pool.__enter__()), None, 1
    else:
        timed, fit, threads = Timed(builtins.map), None, None

    t, c0, w0 = time.perf_counter(), cpu(), worker_cpu(client)
    res = jobs.train_and_register(settings, config, history, progress=note, map=timed, fit=fit, threads=threads)
    out.update(train_s=time.perf_counter() - t, load_after_train=load())
    note(f"trained in {out['train_s']:.0f} s")
    # this process, and the Dask workers (alive: not yet counted as children); a pool's processes are counted
    # when the pool closes, below
    out["train_cpu_s"] = cpu() - c0 + worker_cpu(client) - w0
    out["stages"] = timed.stages
    out["validation_auc"] = res["validation_auc"]
    from risk_model.registry import Registry

    md = Registry(settings.registry_dir).load(contract=c).metadata
    out["chosen"], out["n_trees"] = md["search"][-1]["params"], md["n_trees"]
    if compare and client is not None:
        t = time.perf_counter()
        out["compare"] = compare_pick(
            X, y, history[c.cohort_column].astype(str).to_numpy(), config, lambda fn, *it: dask_map(fn, *it)
        )
        out["compare_s"] = time.perf_counter() - t
    if client is not None:
        out["worker_peak_mb"] = (
            max(client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss).values()) / 1024
        )
        client.close()
        cluster.close()
    if pool is not None:
        pool.__exit__(None, None, None)
        out["train_cpu_s"] = cpu() - c0
    del X, history

    t, c0 = time.perf_counter(), cpu()
    jobs.score_and_store(settings, config, intake, factors=True, progress=quiet)
    out.update(score_s=time.perf_counter() - t, score_cpu_s=cpu() - c0, scored=len(intake))
    t, c0 = time.perf_counter(), cpu()
    build.intake_report(settings, config, intake)
    out.update(report_s=time.perf_counter() - t, report_cpu_s=cpu() - c0)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["children_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    out["load_end"] = load()
    return out


def config_rows() -> str:
    from risk_model.config import load_config

    return f"{load_config(REPO / 'risk_model' / 'examples' / 'demo.toml').training.tune_sample_rows:,}"


def project(r: dict, nodes: int, cores: int) -> float:
    """Seconds on `nodes` x `cores` workers: per stage max(longest unit, unit seconds / workers), plus the
    coordinator's own time as measured (training wall minus the stages' wall)."""
    k = nodes * cores
    stages = sum(max(max(s["units"]), sum(s["units"]) / k) for s in r["stages"] if s["units"])
    coordinator = r["train_s"] - sum(s["wall"] for s in r["stages"])
    return stages + coordinator


def design_floor(r: dict) -> tuple[float, float] | None:
    """What this design's training cannot go below, from this run's unit times: the champion's own
    cohort-grouped CV on all rows (the first unit of the tree-count stage, present when parameters were
    chosen on a sample) and its fit (the first unit of the fit stage). None without a tree-count stage."""
    stages = [s for s in r["stages"] if s["units"]]
    if len(stages) < 3 or stages[1]["fn"] != "search_point":
        return None
    return stages[1]["units"][0], stages[2]["units"][0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2])  # 0: none (with --probe)
    ap.add_argument("--pool", action="store_true", help="also the CLI's local 2-process pool")
    ap.add_argument("--compare-upto", type=int, default=1_000_000)
    ap.add_argument(
        "--probe", action="store_true", help="only data, a bare fit and the sample's pick (sizes too long to train)"
    )
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        n, layout, compare = int(args.one[0]), args.one[1].replace("_", " "), args.one[2] == "1"
        print(json.dumps(run_one(n, layout, compare)))
        return
    import lightgbm

    print(f"student-risk training at scale: {os.cpu_count()} cores, lightgbm {lightgbm.__version__}, load {load()}")
    layouts = [("1 worker" if w == 1 else f"{w} workers") for w in args.workers if w] + (["pool"] if args.pool else [])
    layouts += ["probe"] if args.probe else []
    rows = []
    for n in args.sizes:
        for layout in layouts:
            compare = layout == "2 workers" and n <= args.compare_upto
            cmd = [sys.executable, __file__, "--one", str(n), layout.replace(" ", "_"), "1" if compare else "0"]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # its progress goes to our stderr
            if proc.returncode:
                print(f"{n:>9} {layout}: failed (exit {proc.returncode}; see stderr)", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append(r)
            if layout == "probe":
                print(
                    f"{n:>9,} students ({r['rows']:,} training rows), probe: bare fit {r['bare_s']:.1f} s (1 thread "
                    f"{r['bare_1_s']:.1f} s, all {r['bare_all_s']:.1f} s); the {config_rows()}-row sample picks "
                    f"{r['sample_pick']} ({r['probe_s']:.0f} s; CV AUC {r['sample_auc']}); peak {r['peak_mb']:.0f} MB; "
                    f"load {r['load_start']} -> {r['load_end']}",
                    flush=True,
                )
                continue
            total = r["train_s"] + r["score_s"] + r["report_s"]
            print(
                f"{n:>9,} students ({r['rows']:,} training rows), {layout}: train {r['train_s']:.0f} s "
                f"(CPU {r['train_cpu_s']:.0f} s) = {r['train_s'] / r['bare_s']:.1f}x a bare fit "
                f"({r['bare_s']:.2f} s: 1 thread {r['bare_1_s']:.2f} s, all {r['bare_all_s']:.2f} s); "
                f"score {r['scored']:,} with factors {r['score_s']:.0f} s; report {r['report_s']:.0f} s; "
                f"train+score+report {total:.0f} s = {total / 60:.1f} min; peak {r['peak_mb']:.0f} MB "
                f"(largest worker {r.get('worker_peak_mb', 0):.0f} MB); chosen {r['chosen']}, {r['n_trees']} trees; "
                f"backtest AUC {r['validation_auc']:.4f}; load {r['load_start']} -> {r['load_end']}",
                flush=True,
            )
            for s in r["stages"]:
                print(
                    f"    stage {s['fn']}: {len(s['units'])} units, {s['wall']:.0f} s wall, unit seconds "
                    f"sum {sum(s['units']):.0f}, longest {max(s['units'], default=0):.0f}",
                    flush=True,
                )
            floor = design_floor(r)
            if floor:
                cv, fit = floor
                print(
                    f"    the champion alone, as this design runs it: its cohort-grouped CV on all rows {cv:.1f} s "
                    f"({cv / r['bare_s']:.1f}x a bare fit, one unit) and its fit unit (family choice, final fit) {fit:.1f} s: "
                    f"{(cv + fit) / r['bare_s']:.1f}x before any parameter search or backtest year",
                    flush=True,
                )
            if "compare" in r:
                cmp_ = r["compare"]
                print(
                    f"    sample ({cmp_['sample']['rows']:,} rows) picks {cmp_['sample']['pick']}; all rows "
                    f"({cmp_['all']['rows']:,}) pick {cmp_['all']['pick']}: {'SAME' if cmp_['same'] else 'DIFFERENT'} "
                    f"({r['compare_s']:.0f} s)\n      CV AUC on all rows {cmp_['all']['auc']}\n"
                    f"      CV AUC on the sample {cmp_['sample']['auc']}",
                    flush=True,
                )
            if layout == "2 workers" and r["stages"]:
                print(
                    "    projected training, from this run's unit times: "
                    + "; ".join(
                        f"{nodes} node(s) x {cores} cores {project(r, nodes, cores):.0f} s"
                        for nodes, cores in ((1, 2), (4, 2), (4, 8))
                    ),
                    flush=True,
                )
    print(f"load average at the end {load()}")


if __name__ == "__main__":
    main()
