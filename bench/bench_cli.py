"""What the CLI costs over the library: `student-risk score` on the demo intake vs. the same
library calls in a plain Python process (issue 13: at most 1.5x).

Both are whole processes (start-up and imports included), timed over `--runs` runs each after
one warm-up; the median is printed. Trains the demo model first (not timed).

    python bench/bench_cli.py [--runs 5] [--students 3000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LIBRARY_CALL = """
import sys
from risk_model import jobs
from risk_model.config import Settings, load_config
config = load_config(sys.argv[1])
settings = Settings(home=sys.argv[3])
df = jobs.prepare(config, sys.argv[2], stage="score")
jobs.score_and_store(settings, config, df)
"""


def timed(argv: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--students", type=int, default=3000)
    args = ap.parse_args()
    from risk_model.demo import make_demo

    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    d = make_demo(n_per_cohort=args.students)
    d.history.to_csv(work / "history.csv", index=False)
    d.intake.to_csv(work / "intake.csv", index=False)
    config = str(REPO / "risk_model" / "examples" / "demo.toml")
    home = str(work / "runtime")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    cli = [str(BIN / "student-risk")]
    subprocess.run(
        [*cli, "train", str(work / "history.csv"), "-c", config, "--home", home],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    commands = {
        "library call (plain python)": [sys.executable, "-c", LIBRARY_CALL, config, str(work / "intake.csv"), home],
        "student-risk score": [*cli, "score", str(work / "intake.csv"), "-c", config, "--home", home],
    }
    print(
        f"{len(d.intake)} students, {args.runs} runs each after a warm-up, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    medians = {}
    for name, argv in commands.items():
        timed(argv, env)
        runs = [timed(argv, env) for _ in range(args.runs)]
        medians[name] = statistics.median(runs)
        print(f"{name:<30} median {medians[name]:5.2f} s  (min {min(runs):.2f}, max {max(runs):.2f})")
    ratio = medians["student-risk score"] / medians["library call (plain python)"]
    print(f"CLI / library = {ratio:.2f}x (aim: at most 1.5x)")


if __name__ == "__main__":
    main()
