"""Path and query parameters shared by the routes."""

from typing import Annotated

from fastapi import Path, Query

POINT = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"  # a registry folder name; never a path
TEXT = r"^[^\x00]+$"  # PostgreSQL text cannot hold NUL

StudentId = Annotated[str, Path(min_length=1, max_length=128, pattern=TEXT)]
CohortName = Annotated[str, Path(min_length=1, max_length=64, pattern=TEXT)]
CohortQuery = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=TEXT, description="Default: the latest.")
]
PointQuery = Annotated[
    str | None, Query(pattern=POINT, description="Prediction point, e.g. day30; default: the latest one.")
]
