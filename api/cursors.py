"""Opaque keyset cursors of a cohort page: (probability, student id) of the page's last row."""

from __future__ import annotations

import base64
import json
import math

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
