"""The API's hot paths against their floor: a bare FastAPI endpoint doing the same PostgreSQL round trip.

    python bench/bench_fast.py [--students 100000] [--seconds 4] [--repeat 3] [--code DIR]

Loads scored students into a schema of its own and trains a tiny champion (`bench_api`), then
starts two uvicorn servers on loopback: the API, and a bare FastAPI app whose one endpoint runs the
lookup's own audited statement (the same SQL, psycopg async pool, autocommit, commit policy) and
returns a dict. `wrk` (one thread) drives, at 1 and 16 connections, each of: the bare endpoint, the
student lookup (of a student explained at scoring, and of one explained on this first read, then kept),
POST /v1/score with 1 record and 1,000 records: by default (factors for the records in the tiers the stored
cohort explained), with factors for all 1,000, and without. Every
case runs `--repeat` times, interleaved so load from other processes spreads over all cases; the
table shows the median p50, p99 and req/s, and each p50 as a ratio to the bare endpoint's at the same
concurrency. `--code` serves another checkout (e.g. `git archive` of an older commit) to compare.
The schema and the runtime folder are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from bench_api import (  # noqa: E402
    _free_port,
    load_students,
    scratch,
    stop,
    train_champion,
    wrk,
    wrk_script,
)


def bare_pg_app():
    """A bare FastAPI app: GET /v1/students/{id}/risk runs the lookup's audited SQL once and returns a dict."""
    from fastapi import FastAPI
    from psycopg_pool import AsyncConnectionPool
    from sqlalchemy import create_engine

    from api.lookups import _PG_LOOKUP
    from risk_model import store

    url, key_id = os.environ["STUDENT_RISK_STORE_URL"], int(os.environ["BENCH_KEY_ID"])
    engine = create_engine(url)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    engine.dispose()
    sql, defaults = _PG_LOOKUP[(False, False)]
    pools: dict[str, AsyncConnectionPool] = {}

    async def configure(conn) -> None:
        await conn.execute("SET synchronous_commit TO off")  # the API's default (api_durable_audit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            kwargs={**kwargs, "autocommit": True, "prepare_threshold": 0},
            min_size=2,
            max_size=8,
            configure=configure,
            open=False,
        )
        await pool.open(wait=True, timeout=10)
        pools["pg"] = pool
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/v1/students/{student_id}/risk")
    async def lookup(student_id: str) -> dict:
        params = {**defaults, **store.lookup_params(student_id, key_id=key_id, cohort=None, point=None)}
        async with pools["pg"].connection() as conn:
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        return {"student_id": student_id, "probability": rows[0][2] if rows else None}

    return app


def start(app: str, env: dict, port: int, code: Path, ready: str):
    """uvicorn serving `app` from the checkout `code`, once it answers `ready`."""
    import subprocess
    import urllib.request

    cmd = [sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--no-access-log", "--log-level", "warning", "--app-dir", str(REPO / "bench")]
    env = {**env, "PYTHONPATH": os.pathsep.join([str(code), str(REPO / "bench")])}
    proc = subprocess.Popen(cmd, env=env, cwd=code, start_new_session=True)
    deadline = time.time() + 240  # imports are slow on a loaded machine
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready}", timeout=2):
                return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"server {app} exited with {proc.returncode}") from None
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"server {app} did not answer {ready} within 240 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=4.0, help="per run (1000 records with factors: 2x)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout the API serves (default: this one)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("The load generator is wrk: apt-get install -y wrk")
    code = args.code.resolve()
    levels = [int(c) for c in args.concurrency.split(",")]
    load_before = os.getloadavg()

    import pandas as pd

    from api import keys
    from api.champions import contract_of
    from risk_model import store
    from risk_model.config import Settings
    from risk_model.registry import Registry
    from risk_model.schema import validate
    from risk_model.score import pending_inputs

    with ExitStack() as cleanup:
        work, url = scratch(cleanup, "bench-fast-")
        settings = Settings(home=work / "runtime", store_url=url)
        version, records = train_champion(settings)
        engine = store.connect(url)
        bundle = Registry(settings.registry_dir).load(version)
        load_students(url, args.students, version, bundle.features)
        # as many students stored without factors (outside the tiers explained at scoring): each first
        # lookup explains one and keeps its factors (random picks: few are looked up twice in a run)
        first = validate(pd.DataFrame(records[:1]), contract_of(bundle), stage="score", source="bench")
        load_students(
            url, args.students, version, bundle.features, prefix="P", inputs=pending_inputs(bundle, first, 3)[0]
        )
        read, read_key = keys.create_key(engine, name="bench-read", scope="read")
        _, score_key = keys.create_key(engine, name="bench-score", scope="score")
        engine.dispose()

        env = {
            **os.environ,
            "STUDENT_RISK_HOME": str(settings.home),
            "STUDENT_RISK_STORE_URL": url,
            "OMP_NUM_THREADS": "1",
            "BENCH_KEY_ID": str(read.id),
        }
        one, many = json.dumps({"records": records[:1]}), json.dumps({"records": records[:1000]})
        cases = {  # name -> (server, script)
            "bare: 1 PG round trip": ("bare", wrk_script(work, "bare", random_student=args.students)),
            "GET /v1/students/{id}/risk": (
                "api",
                wrk_script(work, "lookup", key=read_key, random_student=args.students),
            ),
            "GET risk, explained on 1st read": (
                "api",
                wrk_script(work, "lookup1st", key=read_key, random_student=args.students, prefix="P"),
            ),
            "POST /v1/score 1 record": ("api", wrk_script(work, "s1", key=score_key, path="/v1/score", body=one)),
            "POST /v1/score 1 rec, no factors": (
                "api",
                wrk_script(work, "s1q", key=score_key, path="/v1/score?factors=false", body=one),
            ),
            "POST /v1/score 1000 records": (
                "api",
                wrk_script(work, "s1000", key=score_key, path="/v1/score", body=many),
            ),
            "POST /v1/score 1000, factors=all": (
                "api",
                wrk_script(work, "s1000a", key=score_key, path="/v1/score?factors=all", body=many),
            ),
            "POST /v1/score 1000, no factors": (
                "api",
                wrk_script(work, "s1000q", key=score_key, path="/v1/score?factors=false", body=many),
            ),
        }
        ports = {"bare": _free_port(), "api": _free_port()}
        procs = {
            "bare": start("bench_fast:bare_pg_app", env, ports["bare"], code, "/ping"),
        }
        cleanup.callback(stop, procs["bare"])
        procs["api"] = start("api.app:app_from_env", env, ports["api"], code, "/health")
        cleanup.callback(stop, procs["api"])
        for name, (server, script) in cases.items():  # warm up: pools, caches, first champion use
            r = wrk(ports[server], script, 2, 1.0)
            if r["non2xx"] or r["errors"]:
                raise RuntimeError(f"{name}: {r['non2xx']} non-2xx answers, {r['errors']} errors in the warm-up")
        explained = {}  # how many records each POST case explains (the default: those in the acted-on tiers)
        for query in ("", "?factors=all", "?factors=false"):
            req = urllib.request.Request(
                f"http://127.0.0.1:{ports['api']}/v1/score{query}",
                data=many.encode(),
                headers={"X-API-Key": score_key, "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req, timeout=60) as answer:
                explained[query or "?factors=tiers"] = sum(x["explained"] for x in json.load(answer)["results"])
        print(f"  records explained of 1000 per request: {explained}", flush=True)
        runs: dict[tuple[str, int], list[dict]] = {}
        for rep in range(args.repeat):
            for c in levels:
                for name, (server, script) in cases.items():
                    seconds = args.seconds * (2 if name.startswith("POST /v1/score 1000") else 1)
                    r = wrk(ports[server], script, c, seconds)
                    runs.setdefault((name, c), []).append(r)
                    print(
                        f"  run {rep + 1} {name:<34} c={c:<3} {r['rps']:>8.1f} req/s  p50 {r['p50_us'] / 1000:>8.2f} ms"
                        f"  p99 {r['p99_us'] / 1000:>8.2f} ms  non-2xx {r['non2xx']}  errors {r['errors']}",
                        flush=True,
                    )

    load_after = os.getloadavg()
    print(
        f"\nstudent-risk hot paths ({code}): {args.students:,} students in PostgreSQL, 1 uvicorn worker, wrk 1 thread, "
        f"{args.seconds:g} s per run, median of {args.repeat} interleaved runs; server and load generator share "
        f"{os.cpu_count()} cores with other work: load average (1/5/15 min) "
        f"{'/'.join(f'{x:.1f}' for x in load_before)} before, {'/'.join(f'{x:.1f}' for x in load_after)} after"
    )
    print(f"{'case':<34} {'clients':>7} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'p50 / bare':>11} {'bad':>5}")
    for (name, c), rs in runs.items():
        p50 = statistics.median(r["p50_us"] for r in rs) / 1000
        p99 = statistics.median(r["p99_us"] for r in rs) / 1000
        rps = statistics.median(r["rps"] for r in rs)
        bare = statistics.median(r["p50_us"] for r in runs[("bare: 1 PG round trip", c)]) / 1000
        bad = sum(r["non2xx"] + r["errors"] for r in rs)
        print(f"{name:<34} {c:>7} {rps:>9.1f} {p50:>9.2f} {p99:>9.2f} {p50 / bare:>10.2f}x {bad:>5}")


if __name__ == "__main__":
    main()
