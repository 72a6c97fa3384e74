"""Shared page plumbing: a plain-words verdict banner on top of an Evidently page, atomic writes."""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
from pathlib import Path

_STYLE = """
<style>
.sr-verdict{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:16px auto;
 padding:16px 20px;border-radius:8px;border:1px solid #ccc;background:#fafafa;color:#222;line-height:1.45}
.sr-verdict.ok{border-left:8px solid #2e7d32}.sr-verdict.warn{border-left:8px solid #c62828}
.sr-verdict h1{font-size:1.35em;margin:0 0 8px}.sr-verdict table{border-collapse:collapse;margin-top:8px}
.sr-verdict td,.sr-verdict th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.92em}
.sr-verdict .note{color:#555;font-size:.9em}
</style>
"""


def banner(title: str, verdict: str, *, warning: bool, body_html: str = "") -> str:
    """The block every report starts with: its question's answer in one sentence, then details."""
    cls = "warn" if warning else "ok"
    return (
        f'{_STYLE}<section class="sr-verdict {cls}" id="verdict"><h1>{html.escape(title)}</h1>'
        f'<p><strong data-testid="verdict">{html.escape(verdict)}</strong></p>{body_html}</section>'
    )


def table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A small HTML table of aggregates (never student rows)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)


def inject(page: str, block: str) -> str:
    """Put `block` first inside <body> of an Evidently page."""
    i = page.find("<body")
    if i < 0:
        return block + page
    j = page.find(">", i) + 1
    return page[:j] + block + page[j:]


def write_atomic(path: Path, text: str) -> None:
    """Write a file via a temporary file and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


# Nothing on a report page may load from anywhere but the page itself.
CSP = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data: blob:; "
    "font-src data:; connect-src 'none'; worker-src blob:\">"
)

_MAIN_STYLE = """
<style>
.sr-main{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;max-width:1100px;
 margin:0 auto 40px;padding:0 20px;line-height:1.45}
.sr-main h2{font-size:1.15em;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sr-main table{border-collapse:collapse;margin:8px 0}
.sr-main td,.sr-main th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.92em}
.sr-main th{background:#f3f3f3}.sr-main .note{color:#555;font-size:.9em}
.sr-main .warn-text{color:#c62828;font-weight:600}.sr-main a{color:#1565c0}
</style>
"""


def evidence(body: str) -> str:
    """The evidence below a verdict, in house style (also inside an Evidently page)."""
    return f'{_MAIN_STYLE}<main class="sr-main">{body}</main>'


def document(title: str, body: str) -> str:
    """A whole self-contained page: the CSP that forbids remote loads, then `body`."""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{CSP}'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{html.escape(title)}</title></head><body style="margin:0;background:#fff">{body}</body></html>'
    )


def inject_head(page: str, block: str) -> str:
    """Put `block` first inside <head> of an Evidently page (e.g. the CSP)."""
    m = re.search(r"<head(\s[^>]*)?>", page)
    return page[: m.end()] + block + page[m.end() :] if m else page


def pct(v: float | None, digits: int = 0) -> str:
    """0.123 -> '12%'; empty for a missing value."""
    if v is None or v != v:
        return "n/a"
    return f"{v:.{digits}%}"


def num(v: float | None, digits: int = 2) -> str:
    if v is None or v != v:
        return "n/a"
    return f"{v:.{digits}f}"
