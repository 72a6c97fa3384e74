"""Send due outbox rows to their subscribers: signed, oldest first, every attempt logged.

`deliver(engine)` runs the dispatcher once: it claims due rows (`risk_model.outbox.claim`),
POSTs each body with its signature and delivery id, and marks it delivered on a 2xx answer.
Any other answer, a timeout or a refused connection reschedules the row with exponential
backoff (30 s, 60 s, 120 s ... capped at an hour by default); nothing is ever dropped, so a
subscriber that is down is caught up when it is back. A failure holds back that subscriber's
later rows, so each receives its batches in order. Logs carry counts and status codes only:
never a body, a secret or a student id.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import Engine

from risk_model import outbox
from webhooks.sign import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

log = logging.getLogger(__name__)


def send(client: httpx.Client, item: outbox.Pending) -> tuple[bool, int | None, str | None]:
    """POST one row; (delivered, HTTP status, error in a few words)."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "student-risk-webhooks/1",
        SIGNATURE_HEADER: signature(item.secret, item.body),
        DELIVERY_HEADER: item.delivery_id,
        TIMESTAMP_HEADER: datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        r = client.post(item.url, content=item.body, headers=headers)
    except httpx.HTTPError as exc:
        return False, None, type(exc).__name__
    if 200 <= r.status_code < 300:
        return True, r.status_code, None
    return False, r.status_code, f"HTTP {r.status_code}"


def deliver(
    engine: Engine,
    *,
    client: httpx.Client | None = None,
    limit: int = 100,
    timeout: float = 10.0,
    base_seconds: float = 30.0,
    max_seconds: float = 3600.0,
    max_rounds: int = 1000,
) -> dict:
    """Send every due outbox row once (in rounds of `limit`); returns counts of delivered and failed rows."""
    own = client is None
    client = client or httpx.Client(timeout=timeout, follow_redirects=False)
    delivered = failed = 0
    try:
        for _ in range(max_rounds):
            batch = outbox.claim(engine, limit=limit)
            if not batch:
                break
            blocked: set[int] = set()
            for item in batch:
                if item.subscriber_id in blocked:  # an earlier row of this subscriber failed: keep the order
                    outbox.release(engine, [item.id])
                    continue
                t0 = time.perf_counter()
                ok, code, error = send(client, item)
                outbox.record_attempt(
                    engine,
                    item,
                    ok=ok,
                    status_code=code,
                    error=error,
                    seconds=time.perf_counter() - t0,
                    base_seconds=base_seconds,
                    max_seconds=max_seconds,
                )
                if ok:
                    delivered += 1
                else:
                    failed += 1
                    blocked.add(item.subscriber_id)
            if blocked and len(batch) < limit:
                break
    finally:
        if own:
            client.close()
    if delivered or failed:
        log.info("Webhooks: %d batch(es) delivered, %d failed and rescheduled", delivered, failed)
    return {"delivered": delivered, "failed": failed}


def deliver_url(store_url: str, **options) -> dict:
    """`deliver` on the store at `store_url` (what the score step and `student-risk webhooks deliver` call)."""
    from risk_model import store

    with store.opened(store_url) as engine:
        return deliver(engine, **options)
