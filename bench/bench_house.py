"""The house in figures: lines and files per package, the longest function of each, test-tier times.

Issue 14 asks for these figures after each redesign step; this script counts them so they are
reproducible rather than hand-counted. Lines are physical lines of every `.py` file under a package
(`code` leaves out blank lines and comment-only lines). A function's length runs from its first
decorator (or its `def`) to its last line, read with `ast`; nested functions and methods count on
their own, named by their qualified name (`outer.<locals>.inner`, `Class.method`), and their
lines also count inside the function around them.

With `--unit` (or `--full`) it also runs `make test-unit`'s pytest command (or the whole suite)
in a child process and prints its wall time, the CPU time of the run and its children (user +
sys: on a shared machine, the figure that predicts the wall time on a quiet one) and the load
average before and after. The unit tier runs on `--workers` pytest-xdist processes as `make
test-unit` does (0: in one process); each worker's own CPU time is printed too: on a quiet machine
with a core per worker, the largest is about the wall time.

    python bench/bench_house.py [--top 3] [--unit [--workers 2]] [--full]
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("risk_model", "reports", "flows", "api", "cli", "webhooks")
UNIT = ["-m", "pytest", "-q", "-m", "not postgres and not browser and not slow"]  # as `make test-unit`
FULL = ["-m", "pytest", "-q"]
CPU_DIR = "BENCH_HOUSE_CPU_DIR"  # where each pytest process of a run writes its own CPU time


def pytest_sessionfinish(session) -> None:
    """Loaded into each pytest process of a timed run (`-p bench_house`): write its own CPU time."""
    folder = os.environ.get(CPU_DIR)
    if folder:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        name = os.environ.get("PYTEST_XDIST_WORKER", "main")
        cpu = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        Path(folder, name).write_text(f"{cpu:.1f}")


@dataclass(frozen=True)
class Function:
    path: str  # relative to the repository
    line: int
    name: str  # qualified: Class.method, outer.<locals>.inner
    lines: int


@dataclass(frozen=True)
class Package:
    name: str
    files: int
    lines: int
    code: int
    functions: list[Function]


def code_lines(text: str) -> int:
    """Lines that are neither blank nor a comment alone."""
    return sum(1 for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#"))


def functions(tree: ast.Module, path: str) -> list[Function]:
    """Every function and method of a module with its length in lines (decorators included)."""
    found: list[Function] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                end = child.end_lineno or child.lineno
                name = f"{prefix}{child.name}"
                found.append(Function(path, child.lineno, name, end - start + 1))
                visit(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def measure(name: str, root: Path = REPO) -> Package:
    """Files, lines, code lines and functions of one package."""
    files = sorted((root / name).rglob("*.py"))
    lines = code = 0
    found: list[Function] = []
    for f in files:
        text = f.read_text(encoding="utf-8")
        lines += len(text.splitlines())
        code += code_lines(text)
        rel = f.relative_to(root).as_posix()
        found += functions(ast.parse(text, filename=rel), rel)
    found.sort(key=lambda fn: (-fn.lines, fn.path, fn.line))
    return Package(name, len(files), lines, code, found)


def run_tests(args: list[str], label: str) -> None:
    """Run pytest in a child process; print its summary line, wall time, CPU time and load."""
    load_before = os.getloadavg()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as cpu_dir:
        env = {**os.environ, CPU_DIR: cpu_dir, "PYTHONPATH": os.pathsep.join([str(REPO / "bench"), str(REPO)])}
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, *args, "-p", "bench_house"], cwd=REPO, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - t
        per_process = {f.name: float(f.read_text()) for f in sorted(Path(cpu_dir).iterdir())}
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    user, sys_ = after.ru_utime - used.ru_utime, after.ru_stime - used.ru_stime
    summary = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"\n{label}: {' '.join(args[1:])}")
    print(f"  {summary}")
    print(f"  wall {wall:.1f} s; CPU {user + sys_:.1f} s (user {user:.1f} + sys {sys_:.1f})")
    workers = {k: v for k, v in per_process.items() if k != "main"}
    if workers:
        each = ", ".join(f"{k} {v:.1f} s" for k, v in workers.items())
        print(f"  CPU per worker: {each} (on a quiet machine, a core each: the largest is about the wall time)")
    print(
        "  load average before {:.2f} {:.2f} {:.2f}, after {:.2f} {:.2f} {:.2f}".format(*load_before, *os.getloadavg())
    )
    if proc.returncode != 0:
        print(f"  exit code {proc.returncode}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=1, help="longest functions listed per package")
    parser.add_argument("--unit", action="store_true", help="also time `make test-unit`'s pytest run")
    parser.add_argument("--workers", type=int, default=2, help="pytest-xdist workers of --unit (0: one process)")
    parser.add_argument("--full", action="store_true", help="also time the whole test suite (minutes)")
    args = parser.parse_args()

    packages = [measure(p) for p in PACKAGES]
    print(f"{'package':<11} {'files':>5} {'lines':>6} {'code':>6}  longest function (lines)")
    for p in packages:
        for i, fn in enumerate(p.functions[: max(1, args.top)]):
            head = f"{p.name:<11} {p.files:>5} {p.lines:>6} {p.code:>6}" if i == 0 else " " * 31
            print(f"{head}  {fn.path}:{fn.line} {fn.name} ({fn.lines})")
    total = (sum(p.files for p in packages), sum(p.lines for p in packages), sum(p.code for p in packages))
    print(f"{'all':<11} {total[0]:>5} {total[1]:>6} {total[2]:>6}")
    tests = measure("tests")
    print(f"{'tests':<11} {tests.files:>5} {tests.lines:>6} {tests.code:>6}")
    if args.unit:
        run_tests([*UNIT, "-n", str(args.workers), "--dist", "loadfile"], "unit tier (make test-unit)")
    if args.full:
        run_tests(FULL, "whole suite (make test runs it after the gates)")


if __name__ == "__main__":
    main()
