"""The index: every report under the reports folder, by cohort and model version, newest first.

It reads the JSON written beside each report (reports_dir/cohort/point/version/name.json),
so it always shows what is on disk; it is rebuilt after every report run.
"""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path

from reports.html import banner, document, evidence, write_atomic, write_json

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


def collect(reports_dir: Path) -> list[dict]:
    """One entry per report JSON found: its cohort, point, version, verdict, warning and page."""
    entries = []
    for js in sorted(Path(reports_dir).glob("*/*/*/*.json")):
        try:
            data = json.loads(js.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        page = js.with_suffix(".html")
        if "report" not in data or not page.exists():
            continue
        cohort, point, version = js.relative_to(reports_dir).parts[:3]
        entries.append(
            {
                "cohort": cohort,
                "point": point,
                "version": version,
                "report": data["report"],
                "verdict": data.get("verdict", ""),
                "warning": bool(data.get("warning")),
                "href": page.relative_to(reports_dir).as_posix(),
                "built": data.get("created_at")
                or datetime.fromtimestamp(js.stat().st_mtime, UTC).isoformat(timespec="seconds"),
            }
        )
    rank = {r: i for i, r in enumerate(ORDER)}
    entries.sort(key=lambda e: (rank.get(e["report"], 99), e["point"]))
    entries.sort(key=lambda e: (_natural(e["cohort"]), e["version"]), reverse=True)
    return entries


def build_index(reports_dir: Path) -> dict:
    """Write index.html and index.json in `reports_dir`; return the JSON."""
    reports_dir = Path(reports_dir)
    entries = collect(reports_dir)
    warnings = [e for e in entries if e["warning"]]
    latest = entries[0]["cohort"] if entries else None
    latest_warn = [e for e in warnings if e["cohort"] == latest]
    outcome = next((e for e in entries if e["cohort"] == latest and e["report"] == "outcomes"), None)
    others = [e for e in latest_warn if e is not outcome]
    names = ", ".join(NAMES.get(e["report"], e["report"]) for e in others)
    if not entries:
        verdict = "No reports yet: run `student-risk report` after scoring a cohort."
    elif outcome is not None:  # real outcomes are the final word on this cohort's scores
        verdict = outcome["verdict"] + (
            f" {len(others)} other report{' needs' if len(others) == 1 else 's need'} attention: {names}."
            if others
            else " No other report raised a warning."
        )
    elif latest_warn:
        n_latest = sum(e["cohort"] == latest for e in entries)
        verdict = (
            f"Cohort {latest}: {len(latest_warn)} of {n_latest} reports {'needs' if len(latest_warn) == 1 else 'need'} "
            f"attention before its risk scores are trusted ({names}). Read those first."
        )
    else:
        verdict = f"Cohort {latest}: no report raised a warning; its risk scores can be used as validated."
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        groups.setdefault((e["cohort"], e["point"], e["version"]), []).append(e)
    sections = []
    for (cohort, point, version), items in groups.items():
        rows = "".join(
            f'<tr><td><a href="{html.escape(e["href"])}">{html.escape(NAMES.get(e["report"], e["report"]))}</a>'
            f"<div class='note'>{html.escape(QUESTIONS.get(e['report'], ''))}</div></td>"
            f"<td>{'<span class=warn-text>needs attention</span>' if e['warning'] else 'ok'}</td>"
            f'<td data-testid="report-verdict">{html.escape(e["verdict"])}</td>'
            f"<td class='note'>{html.escape(e['built'][:16].replace('T', ' '))}</td></tr>"
            for e in items
        )
        where = "" if point == "default" else f", prediction point {html.escape(point)}"
        sections.append(
            f"<h2>Cohort {html.escape(cohort)} &middot; model {html.escape(version)}{where}</h2>"
            f"<table><thead><tr><th>report</th><th>status</th><th>answer</th><th>built (UTC)</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    body = (
        "<p>Each report answers one question in plain words at its top, with the evidence below. "
        "Newest cohort first.</p>" + "".join(sections)
    )
    title = "Student risk reports"
    write_atomic(
        reports_dir / "index.html", document(title, banner(title, verdict, warning=bool(latest_warn)) + evidence(body))
    )
    numbers = {
        "verdict": verdict,
        "warning": bool(latest_warn),
        "reports": entries,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_json(reports_dir / "index.json", numbers)
    return numbers
