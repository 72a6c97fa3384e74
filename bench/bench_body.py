"""What an oversized POST /v1/score body costs the API: its memory and the lookups it delays.

    python bench/bench_body.py [--mb 70] [--code DIR]

Trains a tiny champion, starts one uvicorn worker on loopback (SQLite store) and, while a
thread looks a student up in a loop, sends 70 MB bodies: one with a key, one without, eight
without at once, and one chunked (no Content-Length) with a key. For each case it prints the
answer, how long the big request took, the server's peak RSS (VmHWM, reset before each case)
and the lookups' median and worst latency meanwhile. `--code` runs another checkout of the
project (e.g. `git archive` of an older commit) to compare. Everything runs in a temporary
folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def rss_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def post(port: int, body: bytes, headers: dict[str, str], chunked: bool = False) -> tuple[str, float]:
    """Send `body`; return (status or what went wrong, seconds to the answer)."""
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        if chunked:
            step = 1 << 20
            conn.request(
                "POST",
                "/v1/score",
                body=(body[i : i + step] for i in range(0, len(body), step)),
                headers=headers,
                encode_chunked=True,
            )
        else:
            conn.request("POST", "/v1/score", body=body, headers={**headers, "Content-Length": str(len(body))})
        status = str(conn.getresponse().status)
    except OSError as exc:  # the server answered and closed before the body was sent
        try:
            status = f"{conn.getresponse().status} (connection closed early)"
        except Exception:
            status = type(exc).__name__
    finally:
        conn.close()
    return status, time.perf_counter() - t


class Lookups(threading.Thread):
    """Looks one student up in a loop and keeps each latency."""

    def __init__(self, port: int, key: str, sid: str) -> None:
        super().__init__(daemon=True)
        self.port, self.key, self.sid = port, key, sid
        self.times: list[float] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                conn.request("GET", f"/v1/students/{self.sid}/risk", headers={"X-API-Key": self.key})
                ok = conn.getresponse().status == 200
                conn.close()
            except OSError:
                ok = False
            self.times.append(time.perf_counter() - t)
            self.failed += not ok
            time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=70)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout to serve (default: this one)")
    args = parser.parse_args()
    code = args.code.resolve()
    sys.path.insert(0, str(code))
    from bench_api import _free_port, stop, train_champion

    from api import keys
    from risk_model import store
    from risk_model.config import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-body-"))
    proc = None
    try:
        settings = Settings(home=work / "runtime")
        _, records = train_champion(settings)
        engine = store.connect(settings.resolved_store_url)
        import pandas as pd

        sid = str(records[0]["student_id"])
        frame = pd.DataFrame(
            {
                "cohort": ["2025"],
                "point": ["default"],
                "student_id": [sid],
                "probability": [0.5],
                "tier": ["medium"],
                "rank": [1],
                "factors": [[]],
                "model_version": ["v"],
                "scored_at": [pd.Timestamp("2025-09-01", tz="UTC")],
            }
        )
        store.write_scores(engine, frame, {})
        _, read_key = keys.create_key(engine, name="bench-read", scope="read")
        _, score_key = keys.create_key(engine, name="bench-score", scope="score")
        engine.dispose()
        port = _free_port()
        env = {**os.environ, "STUDENT_RISK_HOME": str(settings.home), "OMP_NUM_THREADS": "1"}
        cmd = [sys.executable, "-m", "uvicorn", "api.app:app_from_env", "--factory", "--port", str(port)]
        proc = subprocess.Popen(
            cmd + ["--no-access-log", "--log-level", "warning"], env=env, cwd=code, start_new_session=True
        )
        deadline = time.time() + 120
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/health")
                c.getresponse()
                break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("the API did not start") from None
                time.sleep(0.3)

        one = json.dumps(records[0]).encode()
        body = b'{"records": [' + b",".join([one] * (args.mb * 2**20 // (len(one) + 1))) + b"]}"
        json_type = {"Content-Type": "application/json"}
        cases = {
            "idle (lookups only)": [],
            f"{args.mb} MB with key": [(json_type | {"X-API-Key": score_key}, False)],
            f"{args.mb} MB without key": [(json_type, False)],
            f"8 x {args.mb} MB without key": [(json_type, False)] * 8,
            f"{args.mb} MB chunked with key": [(json_type | {"X-API-Key": score_key}, True)],
            f"{args.mb} MB chunked without key": [(json_type, True)],
        }
        print(f"server code: {code}; body {len(body) / 2**20:.0f} MB; RSS at start {rss_mb(proc.pid, 'VmRSS'):.0f} MB")
        for name, sends in cases.items():
            reset_peak(proc.pid)
            looker = Lookups(port, read_key, sid)
            looker.start()
            time.sleep(0.5)
            answers: list[tuple[str, float]] = []
            senders = [
                threading.Thread(target=lambda h=h, c=c, a=answers: a.append(post(port, body, h, c))) for h, c in sends
            ]
            for s in senders:
                s.start()
            for s in senders:
                s.join()
            time.sleep(0.5 if sends else 2.0)
            looker.stop.set()
            looker.join()
            ms = [t * 1000 for t in looker.times]
            statuses = sorted({a[0] for a in answers}) or ["-"]
            slowest = max((a[1] for a in answers), default=0.0)
            print(
                f"{name:32s} answer {', '.join(statuses):36s} big request {slowest:6.2f} s  "
                f"peak RSS {rss_mb(proc.pid, 'VmHWM'):6.0f} MB  lookups n={len(ms)} p50 {statistics.median(ms):6.1f} ms "
                f"max {max(ms):7.1f} ms failed {looker.failed}"
            )
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
