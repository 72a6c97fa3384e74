"""Read a staff member's export as it comes: CSV in any common dialect, Excel, Parquet, compressed.

CSV (also `.txt`, `.tsv`, `.csv.gz`, `.csv.zip`): the encoding is detected (a UTF-8 or UTF-16
byte-order mark, else UTF-8, else Windows-1252/Latin-1) and the delimiter too (`,` `;` tab or
`|`: the one that splits the first lines into the same number of fields, most fields wins),
unless the contract sets `delimiter` or `encoding`. Line ends may be CRLF. Header names are kept
exactly as written, tabs and trailing spaces included: validation matches them as written and
suggests the near match. Every CSV/Excel value is read as text; validation types it.
"""

from __future__ import annotations

import csv
import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

DELIMITERS = (",", ";", "\t", "|")
NA_VALUES = ["", "NA", "NaN", "nan", "null"]
TEXT_SUFFIXES = (".csv", ".txt", ".tsv", ".csv.gz", ".txt.gz", ".tsv.gz", ".csv.zip", ".zip", ".gz")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
SUPPORTED = ".csv, .tsv, .txt (also .gz or .zip), .xlsx, .parquet"


class ReadError(ValueError):
    """A file that cannot be read as a table; the message says why and what to do."""


@dataclass(frozen=True)
class Dialect:
    """How a text export was read, for messages and for `student-risk init`."""

    encoding: str
    delimiter: str
    detected: bool  # True when both were detected rather than set in the contract


def kind(path: str | Path) -> str:
    """'text', 'excel' or 'parquet' from the file name; ReadError for anything else."""
    name = Path(path).name.lower()
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith(EXCEL_SUFFIXES):
        return "excel"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    raise ReadError(f"{path}: unsupported file type {Path(path).suffix!r}. Use {SUPPORTED}.")


def read_export(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> pd.DataFrame:
    """The table in `path`, every CSV/Excel value as text (None when empty). See the module doc."""
    return read_export_with_dialect(path, delimiter=delimiter, encoding=encoding, sheet=sheet)[0]


def read_export_with_dialect(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str | None = None,
    sheet: str | int | None = None,
) -> tuple[pd.DataFrame, Dialect | None]:
    """`read_export`, and for text files the encoding and delimiter used."""
    path = Path(path)
    if not path.exists():
        raise ReadError(f"{path}: file not found. Check the path, or export the table as {SUPPORTED}.")
    what = kind(path)
    try:
        if what == "parquet":
            return pd.read_parquet(path), None
        if what == "excel":
            return _read_excel(path, sheet), None
        return _read_text(path, delimiter, encoding)
    except pd.errors.EmptyDataError:
        raise ReadError(f"{path}: the file is empty. Export the table again with a header row and data.") from None
    except ReadError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, gzip.BadGzipFile, UnicodeError) as exc:
        raise ReadError(f"{path}: cannot be read as {what} ({exc}).") from None


def _read_excel(path: Path, sheet: str | int | None) -> pd.DataFrame:
    import openpyxl  # noqa: F401  (a clear ImportError here rather than deep inside pandas)

    try:
        df = pd.read_excel(path, sheet_name=0 if sheet is None else sheet, dtype=object, engine="openpyxl")
    except ValueError as exc:
        if "not found" in str(exc) or "index" in str(exc).lower():
            names = pd.ExcelFile(path, engine="openpyxl").sheet_names
            raise ReadError(
                f"{path}: no sheet {sheet!r}; the workbook has {names}. Set `sheet` in [dataset] to one of them."
            ) from None
        raise
    if df.empty and len(df.columns) == 0:
        raise pd.errors.EmptyDataError
    return df.map(_cell_text).astype(object).where(df.notna(), None)


def _cell_text(v: object) -> object:
    """An Excel cell as the text a CSV export would have: 2025, not 2025.0."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat() if v == v.normalize() else v.isoformat()
    return str(v).strip() or None


def _raw_bytes(path: Path) -> bytes:
    name = path.name.lower()
    data = path.read_bytes()
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zip"):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = [m for m in zf.namelist() if not m.endswith("/") and not m.startswith("__MACOSX")]
            if len(members) != 1:
                raise ReadError(
                    f"{path}: the zip holds {len(members)} files {members[:5]}; it must hold exactly one table."
                )
            return zf.read(members[0])
    return data


def detect_encoding(data: bytes) -> str:
    """The encoding of exported text: byte-order mark, else UTF-8 if it decodes, else Windows-1252/Latin-1."""
    if data.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        data.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def detect_delimiter(text: str) -> str:
    """The delimiter that splits the first lines into the same number of fields (most fields wins); `,` if none."""
    lines = text.splitlines()[:20]
    best, best_fields = ",", 1
    for d in DELIMITERS:
        counts = {len(row) for row in csv.reader(lines, delimiter=d) if row}
        if len(counts) == 1 and (n := counts.pop()) > best_fields:
            best, best_fields = d, n
    if best_fields == 1:  # ragged rows everywhere: go by the header alone
        header = next(csv.reader(lines[:1], delimiter=","), [""])
        joined = ",".join(header)
        best = max(DELIMITERS, key=lambda d: (joined.count(d), d == ","))
    return best


def _read_text(path: Path, delimiter: str | None, encoding: str | None) -> tuple[pd.DataFrame, Dialect]:
    data = _raw_bytes(path)
    if not data.strip():
        raise pd.errors.EmptyDataError
    enc = encoding or detect_encoding(data)
    try:
        text = data.decode(enc)
    except LookupError:
        raise ReadError(
            f"{path}: unknown encoding {enc!r} in the settings file. Use e.g. utf-8, utf-16 or latin-1."
        ) from None
    except UnicodeDecodeError as exc:
        raise ReadError(
            f"{path}: not {enc} text (byte {exc.start}). Fix `encoding` in [dataset], or remove it to detect it."
        ) from None
    if enc.replace("-", "").lower() in {"utf8", "utf16"}:
        text = text.removeprefix("\ufeff")
    sep = delimiter or detect_delimiter(text)
    df = pd.read_csv(
        io.StringIO(text, newline=""),
        sep=sep,
        dtype=str,
        keep_default_na=False,
        na_values=NA_VALUES,
        skip_blank_lines=True,
    )
    return df, Dialect(enc, sep, delimiter is None and encoding is None)
