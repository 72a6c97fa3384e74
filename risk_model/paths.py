"""File and folder names built from values in a user's file (cohorts) or settings (prediction points).

A cohort is data, not a path: `2025/26` would make a sub-folder and `../../../escaped` would
leave the runtime folder. `safe_name` turns any value into one harmless path component.
"""

from __future__ import annotations

import hashlib
import re

_MAX = 120  # characters; well under the 255 bytes of common file systems, leaving room for affixes
_KEEP = re.compile(r"[A-Za-z0-9._-]")
_ESCAPE = re.compile(r"~([0-9A-F]{2})")


def safe_name(value: object) -> str:
    """One path component for `value`: each UTF-8 byte outside `[A-Za-z0-9._-]` written `~XX` (hex).

    Like percent-encoding, but with `~`, which URLs, HTML, shells and Windows all leave alone (a
    `%2F` in a file name would be decoded by a browser following a link). `~` itself is encoded,
    so two values never share a name, and `unsafe_name` reverses it. A leading dot is encoded too:
    no `.`, `..` or hidden names. Past 120 characters the name is cut and ends with `~~` and a
    hash of the whole value: still unique, no longer reversible.
    """
    text = str(value)
    name = "".join(ch if _KEEP.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode()) for ch in text)
    if name.startswith("."):
        name = "~2E" + name[1:]
    if not name:
        return "~empty"
    if len(name) > _MAX:
        cut = name[: _MAX - 18]
        escape = cut.rfind("~", len(cut) - 2)  # never end inside a ~XX escape
        name = (cut[:escape] if escape >= 0 else cut) + "~~" + hashlib.sha256(text.encode()).hexdigest()[:16]
    return name


def unsafe_name(name: str) -> str:
    """The value a `safe_name` came from (names that were cut keep only their beginning)."""
    if name == "~empty":
        return ""
    name = name.split("~~")[0]
    raw = bytearray()
    i = 0
    while i < len(name):
        m = _ESCAPE.match(name, i)
        if m:
            raw.append(int(m.group(1), 16))
            i = m.end()
        else:
            raw += name[i].encode()
            i += 1
    return raw.decode(errors="replace")
