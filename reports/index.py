"""The index: every report under the reports folder, by cohort and model version, newest first.

It reads the JSON written beside each report (reports_dir/cohort/point/version/name.json),
so it always shows what is on disk; it is rebuilt after every report run. A report as it was
before real outcomes arrived (kept in before-outcomes/, see `page.keep_before_outcomes`) is listed
beside the current one: it is what was promised. Each cohort, point and version shows at its head
what was expected of the intake before its outcomes and the promise (from the intake report,
the copy from before outcomes first).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from reports import page
from reports.page import BEFORE_OUTCOMES, write_atomic, write_json
from risk_model.paths import unsafe_name

ORDER = ["intake_drift", "outcomes", "generalization", "fairness"]
NAMES = {
    "intake_drift": "Intake drift",
    "outcomes": "Outcomes vs. promise",
    "generalization": "Generalization",
    "fairness": "Fairness",
}
QUESTIONS = {
    "intake_drift": "Does the new cohort look like the ones the model learned from?",
    "outcomes": "Now that real outcomes are in, did the model do what validation promised?",
    "generalization": "Does the model work on students it never saw?",
    "fairness": "Does the model serve every group of students alike?",
}


def _natural(s: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|\D+", s))


def _entry(reports_dir: Path, js: Path, kept: bool) -> dict | None:
    try:
        data = json.loads(js.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    page_path = js.with_suffix(".html")
    if not isinstance(data, dict) or "report" not in data or not page_path.exists():
        return None
    cohort, point, version = (unsafe_name(p) for p in js.relative_to(reports_dir).parts[:3])
    return {
        "cohort": cohort,
        "point": point,
        "version": version,
        "report": data["report"],
        "verdict": data.get("verdict", ""),
        "warning": bool(data.get("warning")),
        "href": page_path.relative_to(reports_dir).as_posix(),
        "built": data.get("created_at")
        or datetime.fromtimestamp(js.stat().st_mtime, UTC).isoformat(timespec="seconds"),
        "before_outcomes": kept,
        "expected": data.get("expected"),
        "promise": data.get("promise"),
        "k_percent": data.get("k_percent"),
    }


def collect(reports_dir: Path) -> list[dict]:
    """One entry per report JSON found: its cohort, point, version, verdict, warning and page; reports
    kept from before the outcomes (`before_outcomes`) follow the current one."""
    reports_dir = Path(reports_dir)
    found = [(js, False) for js in sorted(reports_dir.glob("*/*/*/*.json"))]
    found += [(js, True) for js in sorted(reports_dir.glob(f"*/*/*/{BEFORE_OUTCOMES}/*.json"))]
    entries = [e for js, kept in found if (e := _entry(reports_dir, js, kept)) is not None]
    rank = {r: i for i, r in enumerate(ORDER)}
    entries.sort(key=lambda e: (rank.get(e["report"], 99), e["before_outcomes"], e["point"]))
    entries.sort(key=lambda e: (_natural(e["cohort"]), e["version"]), reverse=True)
    return entries


def judge(entries: list[dict]) -> tuple[str, bool]:
    """(verdict, warning) for the newest cohort: real outcomes have the final word, else any warning."""
    current = [e for e in entries if not e["before_outcomes"]]
    latest = current[0]["cohort"] if current else None
    latest_warn = [e for e in current if e["warning"] and e["cohort"] == latest]
    outcome = next((e for e in current if e["cohort"] == latest and e["report"] == "outcomes"), None)
    others = [e for e in latest_warn if e is not outcome]
    names = ", ".join(NAMES.get(e["report"], e["report"]) for e in others)
    if not current:
        return "No reports yet: run `student-risk report` after scoring a cohort.", False
    if outcome is not None:  # real outcomes are the final word on this cohort's scores
        return outcome["verdict"] + (
            f" {len(others)} other report{' needs' if len(others) == 1 else 's need'} attention: {names}."
            if others
            else " No other report raised a warning."
        ), bool(latest_warn)
    if latest_warn:
        n_latest = sum(e["cohort"] == latest for e in current)
        return (
            f"Cohort {latest}: {len(latest_warn)} of {n_latest} reports {'needs' if len(latest_warn) == 1 else 'need'} "
            f"attention before its risk scores are trusted ({names}). Read those first."
        ), True
    return f"Cohort {latest}: no report raised a warning; its risk scores can be used as validated.", False


def expectation(items: list[dict]) -> dict | None:
    """What was expected of a group's intake before outcomes: the intake report kept from before them
    first, else the current one; None without an intake report that states it."""
    intakes = [e for e in items if e["report"] == "intake_drift" and e.get("expected")]
    intakes.sort(key=lambda e: not e["before_outcomes"])
    if not intakes:
        return None
    e = intakes[0]
    return {"expected": e["expected"], "promise": e["promise"], "k": f"{e.get('k_percent') or 10:g}"}


def sections(entries: list[dict]) -> list[dict]:
    """The entries grouped by cohort, prediction point and model version, each with its display fields
    and what was expected of the intake before outcomes."""
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault((e["cohort"], e["point"], e["version"]), []).append(
            e
            | {
                "name": NAMES.get(e["report"], e["report"]),
                "question": QUESTIONS.get(e["report"], ""),
                "built_at": e["built"][:16].replace("T", " "),
            }
        )
    return [
        {"cohort": c, "point": p, "version": v, "reports": items, "expectation": expectation(items)}
        for (c, p, v), items in groups.items()
    ]


def alert_rows(alerts: list[dict] | None) -> list[dict]:
    """Alert counts per cohort and point (`risk_model.advising.alert_counts`), newest cohort and point first."""
    rows = [
        a | {"made": str(a["created_at"])[:16].replace("T", " ") if a.get("created_at") else ""} for a in alerts or []
    ]
    return sorted(rows, key=lambda a: (_natural(a["cohort"]), _natural(a["point"])), reverse=True)


def build_index(reports_dir: Path, *, alerts: list[dict] | None = None) -> dict:
    """Write index.html and index.json in `reports_dir` (with the alert counts, if given); return the JSON."""
    reports_dir = Path(reports_dir)
    entries = collect(reports_dir)
    verdict, warning = judge(entries)
    title = "Student risk reports"
    html_page = page.render(
        "index.html.j2",
        title=title,
        verdict=verdict,
        warning=warning,
        advice="",
        sections=sections(entries),
        alerts=alert_rows(alerts),
        charts=None,
    )
    write_atomic(reports_dir / "index.html", html_page)
    numbers = {
        "verdict": verdict,
        "warning": warning,
        "reports": entries,
        "alerts": [{k: a[k] for k in ("cohort", "point", "n_alerts", "by_rule", "made")} for a in alert_rows(alerts)],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(reports_dir / "index.json", numbers)
    return numbers
