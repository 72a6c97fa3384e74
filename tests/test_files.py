"""Exports read as they come (issue 13): delimiter and encoding detected or set in the contract,
Excel sheets, Parquet, compressed CSV; header names kept exactly as written."""

from __future__ import annotations

import gzip
import zipfile

import pandas as pd
import pytest

from risk_model.config import Config, DatasetContract
from risk_model.schema import ContractError, read_table, validate
from risk_model.sources import load_table
from risk_model.sources.files import detect_delimiter, detect_encoding, read_export_with_dialect

HEADER = ["Student ID", "Daytime/evening attendance\t", "Mother's qualification", "Année", "Target"]
ROWS = [["a1", "1", "19", "2025", "Dropout"], ["a2", "0", "", "2025", "Graduate"], ["a3", "1", "3", "2024", "Enrolled"]]


def _header(sep: str) -> list[str]:
    return [h.strip() for h in HEADER] if sep == "\t" else HEADER  # a tab in a tab-separated header is a separator


def _text(sep: str, newline: str = "\r\n") -> str:
    return newline.join(sep.join(r) for r in [_header(sep), *ROWS]) + newline


def _contract(**kw) -> DatasetContract:
    base = {
        "id_column": "Student ID",
        "cohort_column": "Année",
        "outcome_column": "Target",
        "at_risk_values": ["Dropout"],
        "numeric_features": ["Daytime/evening attendance\t"],
        "categorical_features": ["Mother's qualification"],
    }
    return DatasetContract(**{**base, **kw})


@pytest.mark.parametrize(
    ("sep", "encoding"),
    [(";", "utf-8-sig"), (",", "utf-16"), ("\t", "utf-8"), (";", "latin-1"), ("|", "cp1252")],
)
def test_csv_dialects_are_detected(tmp_path, sep, encoding):
    path = tmp_path / "export.csv"
    path.write_bytes(_text(sep).encode(encoding))
    df, dialect = read_export_with_dialect(path)
    assert list(df.columns) == _header(sep)  # names as written: the tab, the apostrophe, the accent, no BOM
    assert df["Student ID"].tolist() == ["a1", "a2", "a3"]
    assert df["Mother's qualification"].isna().tolist() == [False, True, False]
    assert dialect.delimiter == sep
    assert dialect.encoding == {"latin-1": "cp1252", "utf-16": "utf-16"}.get(encoding, encoding)
    assert not df["Target"].str.endswith("\r").any()  # CRLF fine


def test_detect_helpers():
    assert detect_encoding("Année".encode()) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbfid") == "utf-8-sig"
    assert detect_encoding("Année".encode("latin-1")) == "cp1252"
    assert detect_delimiter("a;b;c\n1;2;3\n") == ";"
    assert detect_delimiter('name,comment\n"x","a;b;c"\n') == ","  # a ; inside quotes is not a delimiter
    assert detect_delimiter("only\n1\n") == ","


def test_compressed_excel_and_parquet(tmp_path):
    text = _text(";").encode("utf-8-sig")
    gz = tmp_path / "export.csv.gz"
    gz.write_bytes(gzip.compress(text))
    zipped = tmp_path / "export.csv.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("export.csv", text)
    frame = pd.DataFrame(ROWS, columns=HEADER)
    xlsx = tmp_path / "export.xlsx"
    with pd.ExcelWriter(xlsx) as writer:
        pd.DataFrame({"note": ["cover sheet"]}).to_excel(writer, sheet_name="About", index=False)
        frame.assign(**{"Année": [2025, 2025, 2024]}).to_excel(writer, sheet_name="Students", index=False)
    parquet = tmp_path / "export.parquet"
    frame.to_parquet(parquet)
    for path in (gz, zipped, parquet):
        assert list(read_table(path).columns) == HEADER, path
    sheet = read_table(xlsx, sheet="Students")
    assert list(sheet.columns) == HEADER
    assert sheet["Année"].tolist() == ["2025", "2025", "2024"]  # Excel numbers as the text a CSV would have
    with pytest.raises(
        ContractError, match=r"export.xlsx: no sheet 'Cohorts'; the workbook has \['About', 'Students'\]"
    ):
        read_table(xlsx, sheet="Cohorts")


def test_zip_with_two_files_and_unknown_type(tmp_path):
    zipped = tmp_path / "two.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("a.csv", "x\n1\n")
        zf.writestr("b.csv", "x\n2\n")
    with pytest.raises(
        ContractError, match=r"two.zip: the zip holds 2 files \['a.csv', 'b.csv'\]; it must hold exactly one"
    ):
        read_table(zipped)
    odd = tmp_path / "export.sav"
    odd.write_text("x")
    with pytest.raises(ContractError, match=r"export.sav: unsupported file type '.sav'. Use .csv, .tsv, .txt"):
        read_table(odd)


def test_semicolon_file_read_as_one_column_names_the_delimiter_fix(tmp_path):
    """Friction 1: a `;` file read with `,` used to report all 24 columns missing."""
    path = tmp_path / "export.csv"
    path.write_bytes(_text(";").encode("utf-8-sig"))
    contract = _contract(delimiter=",")
    df = load_table(Config(dataset=contract), path)
    assert len(df.columns) == 1
    with pytest.raises(ContractError) as err:
        validate(df, contract, stage="train", source=str(path))
    assert str(err.value) == (
        f"{path}: the whole header was read as one column (\"Student ID;Daytime/evening attendance\\t;Mother's "
        'qualifica..."): the file is semicolon-separated but was read with another delimiter. Set delimiter '
        '= ";" in the [dataset] section of the settings file, or remove the delimiter key to let it be detected.'
    )
    assert "missing column" not in str(err.value)
    detected = load_table(Config(dataset=_contract()), path)  # without the key: detected, and valid
    assert len(validate(detected, _contract(), stage="train", source=str(path))) == 3


def test_encoding_set_in_contract_is_used_and_a_wrong_one_explained(tmp_path):
    path = tmp_path / "export.csv"
    path.write_bytes(_text(";").encode("latin-1"))
    df = load_table(Config(dataset=_contract(encoding="latin-1")), path)
    assert "Année" in df.columns
    with pytest.raises(ContractError, match=r"export.csv: not utf-8 text \(byte \d+\). Fix `encoding` in \[dataset\]"):
        load_table(Config(dataset=_contract(encoding="utf-8")), path)


def test_cohort_filter_reads_decimal_years_as_validation_does(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(
        "Student ID;Année;Daytime/evening attendance\t;Mother's qualification;Target\na;2025.0;1;2;Dropout\n"
        "b;2024;1;2;Dropout\nc;2025;0;2;Graduate\n"
    )
    df = load_table(Config(dataset=_contract()), path, cohorts=["2025"])
    assert df["Student ID"].tolist() == ["a", "c"]
