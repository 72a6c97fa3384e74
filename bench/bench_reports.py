"""Time and size of each staff report on large cohorts.

Trains once on a small demo history (4 cohorts), then for each size scores a demo intake of
that many students (drifted, with a performance drop planted), records its outcomes, and
builds every report through `reports.build`, as the report flow does (store reads included).
Scoring and storing are set-up, timed apart from the reports.

    python bench/bench_reports.py --sizes 10000,100000,1000000 [--out bench/out]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _config():
    from risk_model.config import TrainingConfig, load_config

    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    training = TrainingConfig(
        **{
            **config.training.model_dump(),
            "param_grid": [{"num_leaves": 15, "min_data_in_leaf": 40, "lambda_l2": 1.0}],
            "max_trees": 300,
            "learning_rate": 0.1,
            "early_stopping_rounds": 20,
        }
    )
    return config.model_copy(update={"training": training})


def _size(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:6.1f} MB"


def _build(name: str, settings, config, intake, cohort: str, done: dict) -> dict:
    """One report, as the report flow builds it."""
    from reports import build

    if name == "intake_drift":
        return build.intake_report(settings, config, intake)
    if name == "outcomes":
        return build.outcomes_report(settings, config, cohort)
    if name == "generalization":
        return build.generalization_report(settings, config, cohort, outcomes=done["outcomes"])
    if name == "fairness":
        return build.fairness_report(settings, config, intake)
    return build.rebuild_index(settings)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="Comma-separated cohort sizes, e.g. 10000,100000,1000000.")
    ap.add_argument("--out", default=str(REPO / "bench" / "out"), help="Scratch folder (git-ignored).")
    ap.add_argument("--history", type=int, default=3000, help="Students per past cohort used for training.")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    from risk_model import jobs
    from risk_model.config import Settings
    from risk_model.demo import make_demo
    from risk_model.schema import validate

    config = _config()
    c = config.dataset
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    trained = Settings(home=out / "trained")
    t = time.perf_counter()
    history = make_demo(n_per_cohort=args.history, n_past=4, first_year=2019, seed=0).history
    jobs.train_and_register(trained, config, validate(history, c, stage="train"), progress=lambda _: None)
    print(f"trained on {len(history)} students (4 cohorts) in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    import evidently  # noqa: F401  (its import cost is paid once, not by the first report)

    print(f"import evidently: {time.perf_counter() - t:.1f} s\n", flush=True)

    print(f"{'students':>9}  {'report':<15} {'time':>8}  {'html':>9}  {'json':>9}", flush=True)
    for n in sizes:
        settings = Settings(home=out / f"n{n}")
        shutil.copytree(trained.home, settings.home)
        d = make_demo(n_per_cohort=n, n_past=1, first_year=2022, seed=n, drift=True, mechanism_shift=1.0)
        t = time.perf_counter()
        intake = validate(d.intake, c, stage="score")
        jobs.score_and_store(settings, config, intake, factors=False, progress=lambda _: None)
        jobs.record_outcomes(settings, config, validate(d.outcomes, c, stage="outcomes"))
        setup = time.perf_counter() - t
        cohort = str(intake[c.cohort_column].iloc[0])
        results: dict[str, dict] = {}
        total = 0.0
        for name in ("intake_drift", "outcomes", "generalization", "fairness", "index"):
            t = time.perf_counter()
            results[name] = _build(name, settings, config, intake, cohort, results)
            dt = time.perf_counter() - t
            total += dt
            if name == "index":
                html, js = settings.reports_dir / "index.html", settings.reports_dir / "index.json"
            else:
                html = Path(results[name]["html"])
                js = html.with_suffix(".json")
            print(f"{n:>9}  {name:<15} {dt:>6.1f} s  {_size(html)}  {js.stat().st_size / 1e3:6.1f} kB", flush=True)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(
            f"{n:>9}  {'all reports':<15} {total:>6.1f} s   (set-up: score + store + outcomes {setup:.0f} s; "
            f"peak memory so far {peak:.1f} GB)",
            flush=True,
        )
        for name, r in results.items():
            print(f"{'':>11}{name}: {r['verdict'][:150]}{'...' if len(r['verdict']) > 150 else ''}", flush=True)
        print(flush=True)
        shutil.rmtree(settings.home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
