"""Benchmark the advisor's loop: alerts for a 1M-student cohort at a new point, and webhook throughput.

    python bench/bench_alerts.py [--students 1000000] [--batches 200] [--batch-size 500]

1. Two prediction points of `--students` scored students (each with three stored factor texts), about
   10% of them with a planted change (a rise, a move into the high tier, newly no activity):
   `risk_model.alerts.previous_scores` + `compute_alerts` timed, with the peak memory (the rise of the process's
   peak RSS, above what the inputs already hold), then `advising.write_alerts` into a SQLite store with one
   subscriber (alerts and their webhook batches in one transaction).
2. `--batches` outbox rows of `--batch-size` alerts each, delivered by `webhooks.dispatch.deliver` to a
   local receiver (http.server in a thread, verifying every signature): batches and alerts per second.
Everything is made in a temporary folder, removed at the end.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk_model import advising, alerts, outbox, store  # noqa: E402
from risk_model.config import AlertConfig  # noqa: E402
from webhooks import dispatch  # noqa: E402
from webhooks.sign import SIGNATURE_HEADER, verify  # noqa: E402


class PeakRss:
    """How far this process's peak resident memory rose while the block ran (getrusage: the peak so
    far, so only a rise above every earlier peak is seen; inputs are made before the block)."""

    def __enter__(self) -> PeakRss:
        self.base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return self

    def __exit__(self, *exc) -> None:
        self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.base) / 1024  # ru_maxrss is in KiB on Linux


def cohort(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    ids = np.char.add("S", np.arange(n).astype(str)).astype(object)
    p0 = rng.uniform(0.02, 0.6, n)
    change = rng.random(n)
    p1 = np.clip(p0 + rng.normal(0, 0.03, n), 0.001, 0.999)
    p1[change < 0.05] += 0.25  # 5% rise
    p1 = np.clip(p1, 0.001, 0.999)
    recency = np.where(change > 0.97, 21.0, rng.integers(0, 7, n).astype(float))  # 3% newly quiet
    texts = [
        {"feature": "activity_days_since_last", "direction": "raises", "text": "days since the last activity: 21"},
        {"feature": "assessment_2_submitted", "direction": "raises", "text": "assessment 2 not submitted"},
        {"feature": "prior_gpa", "direction": "lowers", "text": "prior grades: 3.4 (typical: 3.0)"},
    ]

    def frame(p: np.ndarray, point: str) -> pd.DataFrame:
        high = np.quantile(p, 0.9)
        return pd.DataFrame(
            {
                "cohort": "2025",
                "point": point,
                "student_id": ids,
                "probability": p.round(6),
                "tier": np.where(p >= high, "high", np.where(p >= np.quantile(p, 0.75), "medium", "low")),
                "factors": [texts] * n,
            }
        )

    return frame(p0, "day30"), frame(p1, "day60"), pd.Series(recency, index=ids)


def bench_alerts(n: int, tmp: Path) -> dict:
    day30, day60, recency = cohort(n)
    gc.collect()
    rules = AlertConfig()
    with PeakRss() as mem:
        t0 = time.perf_counter()
        previous = alerts.previous_scores(day30)
        found = alerts.compute_alerts(day60, previous, rules, recency=recency)
        seconds = time.perf_counter() - t0
    store.upgrade(f"sqlite:///{tmp / 'alerts.db'}")
    engine = store.connect(f"sqlite:///{tmp / 'alerts.db'}")
    outbox.add_subscriber(engine, name="bench", url="http://127.0.0.1:9/none")
    t0 = time.perf_counter()
    written = advising.write_alerts(engine, "2025", "day60", found, batch_size=rules.batch_size)
    write_s = time.perf_counter() - t0
    engine.dispose()
    return {
        "students": n,
        "alerts": int(len(found)),
        "by_rule": alerts.summary(found)["by_rule"],
        "compute_seconds": round(seconds, 2),
        "compute_peak_extra_mb": round(mem.extra_mb),
        "store_write_seconds_sqlite": round(write_s, 2),
        "webhook_rows_queued": written["webhook_rows_queued"],
    }


def bench_webhooks(batches: int, batch_size: int, tmp: Path) -> dict:
    received: list[int] = []
    bad = []
    secret_box: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if not verify(secret_box["s"], body, self.headers[SIGNATURE_HEADER]):
                bad.append(1)
            received.append(len(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    store.upgrade(f"sqlite:///{tmp / 'webhooks.db'}")
    engine = store.connect(f"sqlite:///{tmp / 'webhooks.db'}")
    _, secret_box["s"] = outbox.add_subscriber(
        engine, name="receiver", url=f"http://127.0.0.1:{server.server_address[1]}/hooks"
    )
    row = {
        "point": "day60",
        "previous_point": "day30",
        "previous_probability": 0.3,
        "probability": 0.62,
        "previous_tier": "medium",
        "tier": "high",
        "rise": 0.32,
        "kinds": "high,rise",
        "reason": "risk rose from 0.30 to 0.62 since day 30: no activity in 21 days; assessment 2 not submitted",
    }
    frame = pd.DataFrame([{**row, "cohort": "2025", "student_id": f"S{i}"} for i in range(batches * batch_size)])
    advising.write_alerts(engine, "2025", "day60", frame[alerts.ALERT_COLUMNS], batch_size=batch_size)
    t0 = time.perf_counter()
    result = dispatch.deliver(engine)
    seconds = time.perf_counter() - t0
    server.shutdown()
    server.server_close()
    engine.dispose()
    return {
        "batches": batches,
        "alerts_per_batch": batch_size,
        "body_kb": round(np.mean(received) / 1024, 1) if received else None,
        "delivered": result["delivered"],
        "bad_signatures": len(bad),
        "seconds": round(seconds, 2),
        "batches_per_second": round(result["delivered"] / seconds, 1),
        "alerts_per_second": round(result["delivered"] * batch_size / seconds),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=500)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(json.dumps({"alerts": bench_alerts(args.students, tmp)}), flush=True)
        print(json.dumps({"webhooks": bench_webhooks(args.batches, args.batch_size, tmp)}), flush=True)


if __name__ == "__main__":
    main()
