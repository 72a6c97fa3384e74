"""Opaque keyset cursors: a cohort page's (probability, student id), an alerts page's (time, rise, student id)."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime

from fastapi.exceptions import RequestValidationError


def bad_input(loc: tuple, msg: str, kind: str = "value_error") -> RequestValidationError:
    """A 422 naming where the request is wrong (never echoing the value)."""
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def encode_cursor(probability: float, student_id: str) -> str:
    """The cursor of the page after the row (probability, student_id)."""
    raw = json.dumps([probability, student_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(probability, student_id) of a cursor from `encode_cursor`; 422 for anything else."""
    try:
        p, sid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if (
            isinstance(p, bool)
            or not isinstance(p, int | float)
            or not math.isfinite(p)
            or not isinstance(sid, str)
            or "\x00" in sid
        ):
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise bad_input(
            ("query", "cursor"), "Not a cursor from this API: pass next_cursor of the previous page."
        ) from None
    return float(p), sid


def encode_alert_cursor(created_at: datetime, rise: float, student_id: str) -> str:
    """The cursor of the alerts page after the row (created_at, rise, student_id)."""
    raw = json.dumps([created_at.isoformat(), rise, student_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_alert_cursor(cursor: str) -> tuple[datetime, float, str]:
    """(created_at, rise, student_id) of a cursor from `encode_alert_cursor`; 422 for anything else."""
    try:
        at, rise, sid = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        when = datetime.fromisoformat(at)
        if (
            isinstance(rise, bool)
            or not isinstance(rise, int | float)
            or not math.isfinite(rise)
            or not isinstance(sid, str)
            or "\x00" in sid
        ):
            raise ValueError
    except (ValueError, TypeError, OverflowError):
        raise bad_input(
            ("query", "cursor"), "Not an alerts cursor from this API: pass next_cursor of the previous page."
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)), float(rise), sid
