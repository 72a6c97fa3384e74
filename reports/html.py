"""Shared page plumbing: a plain-words verdict banner on top of an Evidently page, atomic writes."""

from __future__ import annotations

import html
import json
import os
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
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>" for r in rows
    )
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
