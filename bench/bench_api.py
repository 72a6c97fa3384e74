"""Benchmark the advising API against a PostgreSQL store holding 1M scored students.

    python bench/bench_api.py [--students 1000000] [--seconds 5] [--workers 1]

Loads the students into a schema of its own (INSERT ... SELECT generate_series, server side),
trains a tiny champion, starts uvicorn on loopback in a subprocess and drives it with `wrk`
(Debian: `apt-get install -y wrk`), a separate C process, at 1, 16 and 64 connections:
the single-student lookup, POST /v1/score with 1 and 1000 records, and a bare FastAPI
endpoint returning a constant (the ceiling of this machine). Every run is bounded in time;
the schema and the runtime folder are dropped at the end.

The server and the load generator share this machine's cores (2 here): the numbers are a
floor for a real deployment, where they run on separate machines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PG_URL = os.environ.get("STUDENT_RISK_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PY = sys.executable

WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK {"requests": %d, "seconds": %.3f, "p50_us": %d, "p99_us": %d, "non2xx": %d, '
    .. '"errors": %d}\\n', summary.requests, summary.duration / 1e6, latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def ceiling_app():
    """A bare FastAPI app: one endpoint returning a constant (what this machine can serve at best)."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_students(
    url: str, n: int, version: str, features: list[str], *, prefix: str = "S", inputs: dict | None = None
) -> float:
    """n scored students of cohort 2025 (ties in probability on purpose), bulk-loaded server side; ids are
    `prefix` and 7 digits. With `inputs` (`score.pending_inputs` of one student) they are stored without
    factors, as students outside the tiers explained at scoring: a lookup explains them first."""
    from sqlalchemy import create_engine, text

    factors = json.dumps(
        [
            {"feature": f, "direction": d, "contribution": c, "value": 1.0}
            for f, d, c in zip(features[:3], ["raises", "lowers", "raises"], [0.8, -0.4, 0.2], strict=True)
        ]
    )
    t = time.perf_counter()
    engine = create_engine(url)
    with engine.begin() as conn:
        # build the secondary indexes once after the load (sorted builds) instead of row by row
        indexes = conn.execute(
            text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = 'scores' AND indexname LIKE 'ix_%'"
            )
        ).all()
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        conn.execute(
            text("""
            INSERT INTO scores
                (cohort, point, student_id, probability, tier, rank, factors, model_version, scored_at, inputs)
            SELECT '2025', 'default', :prefix || lpad(g::text, 7, '0'), p,
                   CASE WHEN r <= :n * 0.10 THEN 'high' WHEN r <= :n * 0.25 THEN 'medium' ELSE 'low' END,
                   r, CAST(:factors AS json), :version, now(), CAST(:inputs AS json)
            FROM (SELECT g, p, row_number() OVER (ORDER BY p DESC, g) AS r
                  FROM (SELECT g, round(((g::bigint * 7919) % 1000003) / 1000003.0, 4)::float8 AS p
                        FROM generate_series(1, :n) g) x) y"""),
            {
                "n": n,
                "factors": "[]" if inputs else factors,
                "version": version,
                "prefix": prefix,
                "inputs": json.dumps(inputs) if inputs else None,
            },
        )
        if prefix == "S":  # the run, once (other prefixes are more students of it)
            conn.execute(
                text("""INSERT INTO score_runs (cohort, point, model_version, n_students, summary, scored_at)
                             VALUES ('2025', 'default', :version, :n, CAST('{}' AS json), now())"""),
                {"n": n, "version": version},
            )
        for _, definition in indexes:
            conn.execute(text(definition))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE scores"))
    engine.dispose()
    return time.perf_counter() - t


def train_champion(settings) -> tuple[str, list[dict]]:
    """A tiny champion on demo data (single-threaded LightGBM) and 1000 intake records to score."""
    from risk_model import jobs
    from risk_model.config import TrainingConfig, load_config
    from risk_model.demo import make_demo
    from risk_model.schema import validate

    config = load_config(REPO / "risk_model" / "examples" / "demo.toml")
    grid = [{"num_leaves": 15, "min_data_in_leaf": 20, "lambda_l2": 1.0, "num_threads": 1}]
    training = TrainingConfig(
        **{**config.training.model_dump(), "param_grid": grid, "max_trees": 200, "reference_sample": 500}
    )
    config = config.model_copy(update={"training": training})
    d = make_demo(n_per_cohort=1000, n_past=3, seed=7)
    history = validate(d.history, config.dataset, stage="train", source="history")
    out = jobs.train_and_register(settings, config, history, progress=lambda m: None)
    return out["version"], json.loads(d.intake.head(1000).to_json(orient="records"))


def scratch(cleanup: ExitStack, prefix: str) -> tuple[Path, str]:
    """A temporary runtime folder and a PostgreSQL store URL on a schema of its own, both removed by `cleanup`."""
    from sqlalchemy import create_engine, text

    schema = f"bench_{os.getpid()}"
    url = f"{PG_URL}{'&' if '?' in PG_URL else '?'}options=-csearch_path%3D{schema}"
    admin = create_engine(PG_URL)
    work = Path(tempfile.mkdtemp(prefix=prefix))
    cleanup.callback(shutil.rmtree, work, True)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    cleanup.callback(admin.dispose)

    @cleanup.callback
    def drop_schema() -> None:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))

    from risk_model import store

    store.upgrade(url)  # the deploy step (`student-risk db upgrade`): the API and `connect` only check
    return work, url


def start_server(app: str, env: dict, port: int, workers: int, factory: bool = True) -> subprocess.Popen:
    cmd = [
        PY,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
        "--app-dir",
        str(REPO / "bench"),
    ]
    proc = subprocess.Popen(cmd + (["--factory"] if factory else []), env=env, cwd=REPO, start_new_session=True)
    deadline = time.time() + 180  # imports are slow here: no bytecode cache (PYTHONDONTWRITEBYTECODE)
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/health" if app.startswith("api.") else f"http://127.0.0.1:{port}/ping",
                timeout=2,
            ):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server {app} exited with {proc.returncode}") from None
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"server {app} did not answer within 180 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wrk_script(
    folder: Path,
    name: str,
    *,
    key: str | None = None,
    path: str = "/",
    body: str | None = None,
    random_student: int = 0,
    prefix: str = "S",
) -> Path:
    lines = []
    if key:
        lines.append(f'wrk.headers["X-API-Key"] = "{key}"')
    if body is not None:
        (folder / f"{name}.json").write_text(body)
        lines += [
            'wrk.method = "POST"',
            'wrk.headers["Content-Type"] = "application/json"',
            f'local f = io.open("{folder / name}.json"); wrk.body = f:read("*a"); f:close()',
        ]
    if random_student:
        lines += [
            "math.randomseed(os.time())",
            "request = function()",
            f'  return wrk.format(nil, string.format("/v1/students/{prefix}%07d/risk", math.random(1, {random_student})))',
            "end",
        ]
    else:
        lines.append(f'wrk.path = "{path}"')
    script = folder / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n" + WRK_DONE)
    return script


def wrk(port: int, script: Path, connections: int, seconds: float) -> dict:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "60s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 90).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    r = json.loads(line[4:])
    r["rps"] = r["requests"] / r["seconds"] if r["seconds"] else 0.0
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=5.0, help="per run (1000-record scoring runs 3x longer)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--only", default="ceiling,lookup,score1,score1000", help="which of the four to run")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("The load generator is wrk: apt-get install -y wrk")
    levels = [int(c) for c in args.concurrency.split(",")]
    load_before = os.getloadavg()[0]

    from api import keys
    from risk_model import store
    from risk_model.config import Settings

    with ExitStack() as cleanup:
        work, url = scratch(cleanup, "bench-api-")
        settings = Settings(home=work / "runtime", store_url=url)
        t = time.perf_counter()
        version, records = train_champion(settings)
        print(f"champion {version} trained in {time.perf_counter() - t:.1f} s")
        engine = store.connect(url)
        from risk_model.registry import Registry

        features = Registry(settings.registry_dir).load(version).features
        print(
            f"loaded {args.students:,} scored students into a scratch schema in "
            f"{load_students(url, args.students, version, features):.1f} s"
        )
        _, read_key = keys.create_key(engine, name="bench-read", scope="read")
        _, score_key = keys.create_key(engine, name="bench-score", scope="score")
        engine.dispose()

        env = {
            **os.environ,
            "STUDENT_RISK_HOME": str(settings.home),
            "STUDENT_RISK_STORE_URL": url,
            "OMP_NUM_THREADS": "1",
            "STUDENT_RISK_API_WORKERS": str(args.workers),
            "PYTHONPATH": str(REPO / "bench"),
        }
        scripts = {
            "ceiling GET /ping": wrk_script(work, "ceiling", path="/ping"),
            "GET /v1/students/{id}/risk": wrk_script(work, "lookup", key=read_key, random_student=args.students),
            "POST /v1/score (1 record)": wrk_script(
                work, "score1", key=score_key, path="/v1/score", body=json.dumps({"records": records[:1]})
            ),
            "POST /v1/score (1000 records)": wrk_script(
                work, "score1000", key=score_key, path="/v1/score", body=json.dumps({"records": records[:1000]})
            ),
        }
        wanted = set(args.only.split(","))
        results: dict[tuple[str, int], dict] = {}
        for name, script in scripts.items():
            if script.stem not in wanted:
                continue
            port = _free_port()
            if name.startswith("ceiling"):
                proc = start_server("bench_api:ceiling_app", env, port, args.workers)
            else:
                proc = start_server("api.app:app_from_env", env, port, args.workers)
            try:
                seconds = args.seconds * (3 if "1000" in name else 1)
                wrk(port, script, 4, min(2.0, seconds))  # warm up: pools, caches, first champion use
                for c in levels:
                    results[(name, c)] = r = wrk(port, script, c, seconds)
                    print(
                        f"  {name:<32} c={c:<3} {r['rps']:>8.1f} req/s  p50 {r['p50_us'] / 1000:>8.2f} ms  "
                        f"p99 {r['p99_us'] / 1000:>8.2f} ms  non-2xx {r['non2xx']}  errors {r['errors']}",
                        flush=True,
                    )
            finally:
                stop(proc)

    print(
        f"\nstudent-risk API benchmark: {args.students:,} students in PostgreSQL, {args.workers} uvicorn worker(s), "
        f"wrk 1 thread; server and load generator share {os.cpu_count()} cores; {args.seconds:g} s per run; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (other processes count too)"
    )
    print(f"{'endpoint':<32} {'clients':>7} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'p50 vs ceiling':>15}")
    for (name, c), r in results.items():
        ceiling = results.get(("ceiling GET /ping", c))
        ratio = f"{r['p50_us'] / ceiling['p50_us']:.2f}x" if ceiling and ceiling["p50_us"] else "-"
        bad = f"  ({r['non2xx']} non-2xx, {r['errors']} errors)" if r["non2xx"] or r["errors"] else ""
        print(
            f"{name:<32} {c:>7} {r['rps']:>9.1f} {r['p50_us'] / 1000:>9.2f} {r['p99_us'] / 1000:>9.2f} {ratio:>15}{bad}"
        )


if __name__ == "__main__":
    main()
