"""The signature a receiver checks: HMAC-SHA256 of the exact body bytes with the subscriber's secret.

Headers sent with every delivery:
- `X-Student-Risk-Signature: sha256=<hex>`: hex HMAC-SHA256(secret, body);
- `X-Student-Risk-Delivery: <uuid>`: the same on every retry of a batch, so a receiver can drop repeats;
- `X-Student-Risk-Timestamp`: when this attempt was sent (informational; not signed).
A receiver computes the HMAC over the raw body it received (before parsing JSON) and compares it
in constant time (`verify`).
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Student-Risk-Signature"
DELIVERY_HEADER = "X-Student-Risk-Delivery"
TIMESTAMP_HEADER = "X-Student-Risk-Timestamp"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: 'sha256=<hex>'."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """True when `header` is the signature of exactly `body` under `secret` (constant-time compare)."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)
