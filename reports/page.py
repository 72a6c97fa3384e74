"""Shared page plumbing: templates with autoescape, a hash-based Content-Security-Policy, the
Evidently page shown apart from ours, atomic writes, and evidence that is never overwritten.

Every value that reaches a page goes through a Jinja2 template with autoescape on. The only
unescaped text on a page is the scripts this module was handed (plotly.js, each chart's call and
Evidently's own scripts); their SHA-256 hashes are the page's whole `script-src`, so an inline
handler or a script smuggled in by a hostile value does not run even if it reached the markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import shutil
import tempfile
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

BEFORE_OUTCOMES = "before-outcomes"  # subfolder holding a report as it was before real outcomes arrived
EVIDENTLY = "evidently"  # subfolder holding Evidently's own page and its snapshot


def pct(v: float | None, digits: int = 0) -> str:
    """0.123 -> '12%'; 'n/a' for a missing value."""
    if v is None or v != v:
        return "n/a"
    return f"{v:.{digits}%}"


def num(v: float | None, digits: int = 2) -> str:
    """0.1234 -> '0.12'; 'n/a' for a missing value."""
    if v is None or v != v:
        return "n/a"
    return f"{v:.{digits}f}"


def printed(v: float, fmt: str) -> int:
    """`v` as a page prints it with `fmt` ('.2f', '.0%', '+.1%'), in units of the last digit shown:
    printed(0.905, '.2f') == 91, printed(0.4549, '.0%') == 45. Verdicts compare these, not the raw
    values, so the words always agree with the numbers beside them."""
    return int(format(v, fmt).rstrip("%").replace(".", "").replace("+", ""))


def apart(v: float | None, threshold: float | None, digits: int = 3) -> str:
    """`v` with `digits` decimals, or more if needed so it does not print equal to the `threshold` it was
    judged against (a score of 0.1004 judged above 0.1 prints 0.1004, not 0.100)."""
    if v is None or v != v:
        return "n/a"
    if threshold is None:
        return f"{v:.{digits}f}"
    while digits < 8 and f"{v:.{digits}f}" == f"{threshold:.{digits}f}" and v != threshold:
        digits += 1
    return f"{v:.{digits}f}"


def cell(v: Any) -> str:
    """A table cell: floats to three decimals, None empty."""
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def _escape_str(v: Any) -> Any:
    # Autoescape with the standard library's escaping (' -> &#x27;), the form the pages always had.
    return Markup(html.escape(v)) if isinstance(v, str) and not isinstance(v, Markup) else v


@cache
def environment() -> Environment:
    """The templates of reports/templates, autoescaped."""
    env = Environment(
        loader=PackageLoader("reports", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True, default_for_string=True),
        undefined=StrictUndefined,
        finalize=_escape_str,
    )
    env.filters.update(pct=pct, num=num, cell=cell)
    return env


def script_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def csp(scripts: list[str]) -> str:
    """A policy that loads nothing from anywhere and runs only `scripts` (by hash; no eval, no inline
    handler). Inline styles stay allowed: plotly and Evidently set them, and a style runs no code."""
    sources = " ".join(dict.fromkeys(script_hash(s) for s in scripts)) or "'none'"
    return (
        f"default-src 'none'; script-src {sources}; style-src 'unsafe-inline'; img-src data: blob:; "
        "font-src data:; connect-src 'none'; worker-src blob:; base-uri 'none'; form-action 'none'"
    )


def render(template: str, *, scripts: list[str] | None = None, **context: Any) -> str:
    """Render a page template; `scripts` are the inline scripts it emits (and all the CSP allows)."""
    scripts = scripts or []
    return environment().get_template(template).render(csp=csp(scripts), **context)


# ---------------------------------------------------------------------------------------------- Evidently


class _Scripts(HTMLParser):
    """The text of every <script> element, as a browser would split the page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts: list[str] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "script":
            self._open = True
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.scripts[-1] += data


EVIDENTLY_SCRIPTS = 4  # file_html_template: the data, `var global`, the bundled library, the draw call


def evidently_page(snapshot: Any, title: str) -> str:
    """Evidently's own page, untouched, inside a sandboxed iframe (`srcdoc`, escaped) of our page.

    The iframe inherits our policy: only Evidently's four scripts, by hash. Values are neutralised
    before they reach Evidently (`defang`); should one still break out of its data script, the page
    would have more scripts than Evidently writes, and it is refused rather than allowed."""
    inner = snapshot.get_html_str(as_iframe=False)
    parser = _Scripts()
    parser.feed(inner)
    parser.close()
    if len(parser.scripts) != EVIDENTLY_SCRIPTS:
        raise ValueError(
            f"Evidently's page has {len(parser.scripts)} scripts, expected {EVIDENTLY_SCRIPTS}: "
            "a value may have broken out of its data; refusing to write it"
        )
    return environment().get_template("evidently.html.j2").render(csp=csp(parser.scripts), title=title, inner=inner)


def defang(value: Any) -> Any:
    """A user's value as Evidently may show it: '<' and '>' become look-alikes, so no value can close
    Evidently's data script (it embeds JSON raw in a <script>)."""
    return value.replace("<", "\u2039").replace(">", "\u203a") if isinstance(value, str) else value


# ---------------------------------------------------------------------------------------------- writing


def write_atomic(path: Path, text: str) -> None:
    """Write a file via a temporary file and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    """`data` as indented JSON, atomically."""
    write_atomic(path, json.dumps(data, indent=2, default=str))


def _files(out_dir: Path, name: str) -> list[Path]:
    return [
        out_dir / f"{name}.html",
        out_dir / f"{name}.json",
        out_dir / EVIDENTLY / f"{name}.html",
        out_dir / EVIDENTLY / f"{name}.snapshot.json",
    ]


def made_with_outcomes(numbers: dict) -> bool:
    """Whether a report's numbers were made with the cohort's real outcomes known; for reports written
    before the flag existed, what their own numbers say (an intake report cannot tell: kept)."""
    if "outcomes_known" in numbers:
        return bool(numbers["outcomes_known"])
    report = numbers.get("report")
    if report == "outcomes":
        return True
    if report == "generalization":
        return numbers.get("new_cohort") is not None
    if report == "fairness":
        return "real outcomes" in str(numbers.get("source", ""))
    return False


def keep_before_outcomes(out_dir: Path, name: str, outcomes_known: bool) -> Path | None:
    """Copy the report `name` made before real outcomes arrived into `before-outcomes/`, once.

    What a report said before the outcomes is what was promised: a rebuild with outcomes must
    not erase it, and a second rebuild must not replace the first copy. Returns the kept JSON."""
    current = out_dir / f"{name}.json"
    kept = out_dir / BEFORE_OUTCOMES / f"{name}.json"
    if not outcomes_known or not current.exists() or kept.exists():
        return None
    try:
        if made_with_outcomes(json.loads(current.read_text())):
            return None
    except (OSError, json.JSONDecodeError):
        return None
    for src in _files(out_dir, name):
        if src.exists():
            dst = out_dir / BEFORE_OUTCOMES / src.relative_to(out_dir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    return kept


def write_report(out_dir: Path, name: str, page: str, numbers: dict, *, snapshot: Any = None) -> None:
    """Write `name`.html and .json (and Evidently's page and snapshot beside them), keeping any earlier
    version made before outcomes (see `keep_before_outcomes`)."""
    out_dir = Path(out_dir)
    keep_before_outcomes(out_dir, name, bool(numbers.get("outcomes_known")))
    if snapshot is not None:
        write_atomic(out_dir / EVIDENTLY / f"{name}.snapshot.json", snapshot.dumps())  # Snapshot.load reopens it
        write_atomic(out_dir / EVIDENTLY / f"{name}.html", evidently_page(snapshot, numbers.get("title", name)))
    write_atomic(out_dir / f"{name}.html", page)
    write_json(out_dir / f"{name}.json", numbers)
