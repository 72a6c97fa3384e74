"""Reading and windowing a click log: pandas vs Polars vs DuckDB, then the product's own reader.

Each tool reads OULAD's `studentVle.csv.gz` (7.0M rows) and computes, for days 0/30/60/90/120,
per student-module: clicks so far, active days, distinct sites, last day and clicks in the last
14 days. Each run is a separate process so its peak memory is its own. Then the product's
`risk_model.sources.activity` reads a 10M-row log (OULAD's rows plus 3M copies with other
student ids, written once to a temporary .csv.gz) and builds every feature for five days.

    python bench/bench_activity.py [--data ../shared/data/oulad]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DAYS = [0, 30, 60, 90, 120]

TOOLS = {
    "pandas": """
import pandas as pd
v = pd.read_csv(F, dtype={"code_module": "category", "code_presentation": "category", "id_student": "int32",
                          "id_site": "int32", "date": "int16", "sum_click": "int32"})
read = time.perf_counter() - t0
key = ["code_module", "code_presentation", "id_student"]
for d in DAYS:
    w = v[v.date <= d]
    g = w.groupby(key, observed=True).agg(clicks=("sum_click", "sum"), days=("date", "nunique"),
                                          sites=("id_site", "nunique"), last=("date", "max"))
    g["last14"] = w[w.date > d - 14].groupby(key, observed=True).sum_click.sum()
""",
    "polars": """
import polars as pl
v = pl.read_csv(F, schema_overrides={"id_student": pl.Int32, "id_site": pl.Int32, "date": pl.Int16, "sum_click": pl.Int32})
read = time.perf_counter() - t0
for d in DAYS:
    g = v.filter(pl.col("date") <= d).group_by(["code_module", "code_presentation", "id_student"]).agg(
        pl.col("sum_click").sum().alias("clicks"), pl.col("date").n_unique().alias("days"),
        pl.col("id_site").n_unique().alias("sites"), pl.col("date").max().alias("last"),
        pl.col("sum_click").filter(pl.col("date") > d - 14).sum().alias("last14")).to_pandas()
""",
    "duckdb": """
import duckdb
con = duckdb.connect(config={"threads": 2})
con.execute("SET enable_progress_bar = false")
con.execute(f"CREATE TABLE v AS SELECT * FROM read_csv('{F}')")
read = time.perf_counter() - t0
for d in DAYS:
    g = con.execute(f"SELECT code_module, code_presentation, id_student, sum(sum_click) AS clicks, "
                    f"count(DISTINCT date) AS days, count(DISTINCT id_site) AS sites, max(date) AS last_day, "
                    f"sum(sum_click) FILTER (WHERE date > {d} - 14) AS last14 FROM v WHERE date <= {d} GROUP BY ALL").df()
""",
    "product (risk_model.sources.activity, every feature)": """
from risk_model.config import load_config
from risk_model.sources.activity import read_log
import pandas as pd
cfg = load_config(REPO / "risk_model" / "examples" / "oulad.toml").activity.model_copy(update={"file": str(F)})
log = read_log(cfg, Path(F).parent)
read = time.perf_counter() - t0
ids = log.con.execute("SELECT DISTINCT id, cohort FROM daily").df()
rows = ids.assign(code_module=ids.id.str.split("-").str[0])
for d in DAYS:
    log.features(rows, d)
""",
}

RUN = """
import sys, time, resource
from pathlib import Path
REPO, F, DAYS = Path({repo!r}), {file!r}, {days!r}
sys.path.insert(0, str(REPO))
t0 = time.perf_counter()
{body}
total = time.perf_counter() - t0
print(f"read {{read:.1f}} s, five windows {{total - read:.1f}} s, total {{total:.1f}} s, "
      f"peak {{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}} MB")
"""


def run(name: str, file: Path) -> None:
    code = RUN.format(repo=str(REPO), file=str(file), days=DAYS, body=TOOLS[name])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    print(f"{name:>52}: {out.stdout.strip() or out.stderr.strip().splitlines()[-1]}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "oulad")
    args = ap.parse_args()
    clicks = args.data / "studentVle.csv.gz"
    print(f"{clicks} (7.0M rows), days {DAYS}:")
    for name in TOOLS:
        run(name, clicks)
    import duckdb

    duckdb.execute("SET enable_progress_bar = false")
    with tempfile.TemporaryDirectory() as tmp:
        big = Path(tmp) / "studentVle.csv.gz"
        duckdb.execute(
            f"COPY (SELECT * FROM read_csv('{clicks}') UNION ALL SELECT code_module, code_presentation, "
            f"id_student + 10000000 AS id_student, id_site, date, sum_click FROM read_csv('{clicks}') "
            f"WHERE code_presentation = '2013J') TO '{big}' (HEADER)"
        )
        n = duckdb.execute(f"SELECT count(*) FROM read_csv('{big}')").fetchone()[0]
        (Path(tmp) / "vle.csv").symlink_to(args.data / "vle.csv")
        print(f"{n / 1e6:.1f}M rows:")
        run("product (risk_model.sources.activity, every feature)", big)


if __name__ == "__main__":
    main()
