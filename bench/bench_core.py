"""Core benchmark: train, score and report on demo data of 10k, 100k and 1M students.

For each size N (students in all, six past cohorts plus one new intake of N/7 each) it
prints the wall time of training (cohort-grouped CV, forward backtest with nested
selection, baselines), of scoring the intake (with and without top factors) including the
store write, and of the intake drift report; the peak memory of the run; and scoring
throughput in students/s with its ratio to a bare `Booster.predict` on the same rows.
Each size runs in its own process so peak memory is its own.

    python bench/bench_core.py [--sizes 10000 100000 1000000]
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


def run_one(n: int) -> dict:
    from reports import build
    from risk_model import jobs
    from risk_model.config import Settings, load_config
    from risk_model.demo import make_demo
    from risk_model.features import build_features
    from risk_model.registry import Registry
    from risk_model.schema import validate

    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    c = config.dataset
    home = Path(tempfile.mkdtemp(prefix=f"bench-core-{n}-"))
    settings = Settings(home=home)
    quiet = lambda _: None  # noqa: E731
    out: dict = {"n_students": n}
    t = time.perf_counter()
    d = make_demo(n_per_cohort=n // 7, n_past=6, seed=0, activity=False)
    out["generate_s"] = time.perf_counter() - t

    t = time.perf_counter()
    history = validate(d.history, c, stage="train", source="history")
    res = jobs.train_and_register(settings, config, history, progress=quiet)
    out["train_s"] = time.perf_counter() - t
    out["validation_auc"] = res["validation_auc"]

    intake = validate(d.intake, c, stage="score", source="intake")
    bundle = Registry(settings.registry_dir).load()
    X = build_features(intake, c, bundle.levels)
    t = time.perf_counter()
    bundle.booster.predict(X, raw_score=True)
    bare = time.perf_counter() - t
    t = time.perf_counter()
    bundle.booster.predict(X, pred_contrib=True)
    bare_contrib = time.perf_counter() - t

    from risk_model.score import score

    score(bundle, intake.head(100), c, config.scoring, progress=quiet)  # warm-up
    t = time.perf_counter()
    score(bundle, intake, c, config.scoring, factors=False, progress=quiet)
    score_plain = time.perf_counter() - t
    t = time.perf_counter()
    score(bundle, intake, c, config.scoring, factors=True, progress=quiet)
    score_factors = time.perf_counter() - t
    jobs.score_and_store(settings, config, intake.head(100), factors=False, progress=quiet)  # store set-up
    t = time.perf_counter()
    jobs.score_and_store(settings, config, intake, factors=True, progress=quiet)
    score_store = time.perf_counter() - t
    m = len(intake)
    out.update(
        n_scored=m,
        score_s=score_store,
        score_no_factors_s=score_plain,
        throughput_no_factors=m / score_plain,
        throughput_factors=m / score_factors,
        bare_predict_per_s=m / bare,
        bare_contrib_per_s=m / bare_contrib,
    )
    t = time.perf_counter()
    build.intake_report(settings, config, intake)
    out["report_s"] = time.perf_counter() - t
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    print(f"student-risk core benchmark: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    head = (
        f"{'students':>9} {'intake':>7} {'train s':>8} {'score+store s':>13} {'report s':>8} {'peak MB':>8} "
        f"{'scored/s':>9} {'bare/s':>9} {'ratio':>6} {'w/ factors/s':>12} {'bare contrib/s':>14} {'ratio':>6}"
    )
    print(head)
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{n:>9} {r['n_scored']:>7} {r['train_s']:>8.1f} {r['score_s']:>13.1f} {r['report_s']:>8.1f} "
            f"{r['peak_mb']:>8.0f} {r['throughput_no_factors']:>9.0f} {r['bare_predict_per_s']:>9.0f} "
            f"{r['throughput_no_factors'] / r['bare_predict_per_s']:>6.2f} {r['throughput_factors']:>12.0f} "
            f"{r['bare_contrib_per_s']:>14.0f} {r['throughput_factors'] / r['bare_contrib_per_s']:>6.2f}",
            flush=True,
        )
    print(
        f"load average at the end {os.getloadavg()[0]:.1f}. score+store s: score with factors, write to SQLite, "
        "export CSV. scored/s: risk_model.score.score (features, calibration, ranks, tiers) without / with factors; "
        "ratio = that / bare Booster.predict (raw, or pred_contrib) on the same rows."
    )


if __name__ == "__main__":
    main()
