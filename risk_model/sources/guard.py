"""A cheap look at a text file before it is read whole: is it a table at all?

pandas reads a 1 GB file of junk (binary, or one endless line) into memory before any check
can refuse it (4.8 GB peak seen). `check_looks_like_table` reads only the first block.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from risk_model.schema import ContractError

SAMPLE_BYTES = 256 * 1024
DELIMITERS = ",;\t|"
_FIX = "Export the table again as CSV (a header row, then one student per line) or as Parquet."


def check_looks_like_table(path: str | Path, *, sample_bytes: int = SAMPLE_BYTES) -> None:
    """Raise ContractError unless the start of `path` looks like a delimited table.

    Looks at the first `sample_bytes` only: no NUL bytes (binary) unless UTF-16 with a BOM, a
    complete header line with a delimiter (, ; tab |), and sample lines splitting into about as
    many fields as the header."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(sample_bytes)
        at_end = not fh.read(1)
    if not head:
        return  # empty: the reader says so with its own message
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", errors="ignore")
    elif b"\x00" in head:
        raise ContractError(f"{path}: a binary file, not a table (it contains NUL bytes). {_FIX}")
    else:
        text = head.decode("utf-8", errors="replace")
    lines = text.splitlines()
    if not at_end:
        lines = lines[:-1]  # the last line of the block may be cut
    if not lines:
        raise ContractError(
            f"{path}: no header line in its first {sample_bytes // 1024} KiB (one endless line): not a table. {_FIX}"
        )
    header = lines[0]
    delimiter = max(DELIMITERS, key=header.count)
    if header.count(delimiter) == 0:
        raise ContractError(
            f"{path}: the first line has no column delimiter (comma, semicolon, tab or |): not a table "
            f"(a student table has at least an id and a cohort column). {_FIX}"
        )
    rows = [r for r in csv.reader(io.StringIO("\n".join(lines[:200])), delimiter=delimiter) if r]
    width = len(rows[0])
    odd = sum(len(r) != width for r in rows[1:])
    if len(rows) > 1 and odd > max(2, (len(rows) - 1) // 10):
        raise ContractError(
            f"{path}: {odd} of the first {len(rows) - 1} lines do not have the header's {width} fields "
            f"(delimiter {delimiter!r}): not a table, or a broken export. {_FIX}"
        )
