"""What was promised about a cohort before its outcomes: read back from the intake report's JSON.

The intake report stores the intake's expected performance and the promise (`reports.intake`).
Once outcomes arrive the intake report may be rebuilt, so the version kept in before-outcomes/
(`page.keep_before_outcomes`) is read first: what was promised is what was said before the truth.
"""

from __future__ import annotations

import json
from pathlib import Path

from reports.page import BEFORE_OUTCOMES

INTAKE = "intake_drift"


def _read(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("expected") is not None else None


def intake_expectation(out_dir: Path) -> dict | None:
    """{"expected", "promise", "created_at", "before_outcomes"} from the intake report of `out_dir` (one
    cohort, point and model version): the copy kept from before outcomes first, else the current one
    (`before_outcomes` says whether it was made before the outcomes were recorded). None without one."""
    out_dir = Path(out_dir)
    for path, kept in ((out_dir / BEFORE_OUTCOMES / f"{INTAKE}.json", True), (out_dir / f"{INTAKE}.json", False)):
        data = _read(path)
        if data is not None:
            return {
                "expected": data["expected"],
                "promise": data.get("promise"),
                "k_percent": data.get("k_percent"),
                "created_at": data.get("created_at"),
                "before_outcomes": kept or not data.get("outcomes_known", False),
            }
    return None
