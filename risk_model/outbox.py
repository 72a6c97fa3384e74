"""The webhook outbox in the store: subscribers, one row per alert batch per subscriber, the delivery log.

A batch of alerts is written to the outbox in the same transaction as the alerts themselves
(`risk_model.advising.write_alerts`), so a subscriber that is down loses nothing: its rows wait,
and a dispatcher (`webhooks.dispatch`, the HTTP edge) sends them later, oldest first. This module
only reads and writes rows; it never sends anything.

Body bytes are made here once and stored: what is signed and sent on every retry is exactly
what was stored, and the delivery id (`X-Student-Risk-Delivery`) stays the same, so a receiver
that saw a delivery already can drop the repeat.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, and_, delete, insert, select, update

from risk_model.store import webhook_deliveries, webhook_outbox, webhook_subscribers

SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class Subscriber:
    """A subscriber without its secret."""

    id: int
    name: str
    url: str
    created_at: datetime
    removed_at: datetime | None = None


@dataclass(frozen=True)
class Pending:
    """An outbox row claimed for sending: what to send where, signed with `secret`."""

    id: int
    subscriber_id: int
    url: str
    secret: str
    delivery_id: str
    body: bytes
    attempts: int


def _check_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"webhook url {url!r} is not an http(s) URL: give e.g. --url https://advising.example/hooks")
    return url.strip()


def add_subscriber(engine: Engine, *, name: str, url: str) -> tuple[Subscriber, str]:
    """Store a subscriber and its new shared secret; the secret is returned once, to be given to the receiver."""
    if not name.strip():
        raise ValueError("a subscriber needs a name saying which tool it is, e.g. --name case-management")
    url = _check_url(url)
    with engine.connect() as conn:
        taken = conn.execute(
            select(webhook_subscribers.c.id).where(
                webhook_subscribers.c.name == name.strip(), webhook_subscribers.c.removed_at.is_(None)
            )
        ).first()
    if taken:
        raise ValueError(f"a subscriber named {name.strip()!r} exists: remove it first or pick another --name")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    created = datetime.now(UTC)
    row = {"name": name.strip(), "url": url, "secret": secret, "created_at": created}
    with engine.begin() as conn:
        sid = conn.execute(insert(webhook_subscribers).values(row).returning(webhook_subscribers.c.id)).scalar_one()
    return Subscriber(sid, name.strip(), url, created), secret


def list_subscribers(engine: Engine, *, include_removed: bool = False) -> list[Subscriber]:
    """Subscribers, oldest first (never their secrets)."""
    q = select(
        webhook_subscribers.c.id,
        webhook_subscribers.c.name,
        webhook_subscribers.c.url,
        webhook_subscribers.c.created_at,
        webhook_subscribers.c.removed_at,
    ).order_by(webhook_subscribers.c.id)
    if not include_removed:
        q = q.where(webhook_subscribers.c.removed_at.is_(None))
    with engine.connect() as conn:
        return [Subscriber(*r) for r in conn.execute(q)]


def remove_subscriber(engine: Engine, subscriber_id: int) -> Subscriber:
    """Stop sending to a subscriber: marked removed (its delivery log stays), its pending rows dropped."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        done = conn.execute(
            update(webhook_subscribers)
            .where(webhook_subscribers.c.id == subscriber_id, webhook_subscribers.c.removed_at.is_(None))
            .values(removed_at=now)
        ).rowcount
        if not done:
            raise ValueError(f"no active webhook subscriber with id {subscriber_id}: see `student-risk webhooks list`")
        conn.execute(
            delete(webhook_outbox).where(
                webhook_outbox.c.subscriber_id == subscriber_id, webhook_outbox.c.delivered_at.is_(None)
            )
        )
    return next(s for s in list_subscribers(engine, include_removed=True) if s.id == subscriber_id)


def payloads(cohort: str, point: str, alerts: list[dict], *, created_at: datetime, batch_size: int) -> list[bytes]:
    """The bodies of a point's alerts, `batch_size` alerts each (compact UTF-8 JSON, ASCII-escaped)."""
    batch_id = uuid.uuid4().hex
    parts = max(1, -(-len(alerts) // batch_size))
    out = []
    for i in range(parts):
        chunk = alerts[i * batch_size : (i + 1) * batch_size]
        doc = {
            "event": "alerts",
            "batch": batch_id,
            "part": i + 1,
            "parts": parts,
            "cohort": cohort,
            "point": point,
            "created_at": created_at.isoformat(),
            "replaces_earlier_batches_of_this_point": True,
            "alerts": chunk,
        }
        out.append(json.dumps(doc, separators=(",", ":"), default=str).encode())
    return out


def enqueue(conn: Connection, cohort: str, point: str, bodies: list[tuple[int, bytes]], now: datetime) -> int:
    """In the caller's transaction: drop this point's undelivered rows and queue `bodies` for every
    active subscriber. Returns the rows queued."""
    conn.execute(
        delete(webhook_outbox).where(
            webhook_outbox.c.cohort == cohort, webhook_outbox.c.point == point, webhook_outbox.c.delivered_at.is_(None)
        )
    )
    subs = conn.execute(select(webhook_subscribers.c.id).where(webhook_subscribers.c.removed_at.is_(None))).scalars()
    rows = [
        {
            "subscriber_id": sid,
            "delivery_id": str(uuid.uuid4()),
            "cohort": cohort,
            "point": point,
            "n_alerts": n,
            "body": body.decode(),
            "created_at": now,
            "next_attempt_at": now,
            "attempts": 0,
        }
        for sid in subs
        for n, body in bodies
    ]
    if rows:
        conn.execute(insert(webhook_outbox), rows)
    return len(rows)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t  # SQLite keeps no zone


def claim(
    engine: Engine, *, now: datetime | None = None, limit: int = 100, lease_seconds: float = 120
) -> list[Pending]:
    """Due rows of active subscribers, oldest first, each leased for `lease_seconds` (a second dispatcher
    skips them; a dispatcher that dies leaves them due again when the lease ends).

    Per subscriber, rows go in order: a row waiting for its retry holds back that subscriber's later rows."""
    now = now or datetime.now(UTC)
    q = (
        select(webhook_outbox.c.id, webhook_outbox.c.subscriber_id, webhook_outbox.c.next_attempt_at)
        .join(webhook_subscribers, webhook_subscribers.c.id == webhook_outbox.c.subscriber_id)
        .where(webhook_outbox.c.delivered_at.is_(None), webhook_subscribers.c.removed_at.is_(None))
        .order_by(webhook_outbox.c.id)
        .limit(limit * 10)
    )
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(of=webhook_outbox, skip_locked=True)
        held: set[int] = set()
        chosen: list[int] = []
        for r in conn.execute(q):  # bodies are read only for the rows chosen
            if r.subscriber_id in held:
                continue
            if _utc(r.next_attempt_at) > now:
                held.add(r.subscriber_id)
                continue
            chosen.append(r.id)
            if len(chosen) == limit:
                break
        if not chosen:
            return []
        conn.execute(
            update(webhook_outbox)
            .where(webhook_outbox.c.id.in_(chosen))
            .values(next_attempt_at=now + timedelta(seconds=lease_seconds))
        )
        rows = conn.execute(
            select(
                webhook_outbox.c.id,
                webhook_outbox.c.subscriber_id,
                webhook_subscribers.c.url,
                webhook_subscribers.c.secret,
                webhook_outbox.c.delivery_id,
                webhook_outbox.c.body,
                webhook_outbox.c.attempts,
            )
            .join(webhook_subscribers, webhook_subscribers.c.id == webhook_outbox.c.subscriber_id)
            .where(webhook_outbox.c.id.in_(chosen))
            .order_by(webhook_outbox.c.id)
        ).all()
    return [Pending(r.id, r.subscriber_id, r.url, r.secret, r.delivery_id, r.body.encode(), r.attempts) for r in rows]


def backoff(attempts: int, *, base_seconds: float, max_seconds: float) -> float:
    """Seconds before the next try after `attempts` failed ones: base, 2x, 4x ... capped."""
    return min(max_seconds, base_seconds * 2 ** max(attempts - 1, 0))


def record_attempt(
    engine: Engine,
    item: Pending,
    *,
    ok: bool,
    status_code: int | None,
    error: str | None,
    seconds: float,
    base_seconds: float = 30,
    max_seconds: float = 3600,
    now: datetime | None = None,
) -> None:
    """Log one attempt; mark the row delivered, or reschedule it with exponential backoff (never dropped)."""
    now = now or datetime.now(UTC)
    attempts = item.attempts + 1
    values: dict = {"attempts": attempts, "last_error": None if ok else (error or "")[:200]}
    if ok:
        values["delivered_at"] = now
    else:
        values["next_attempt_at"] = now + timedelta(
            seconds=backoff(attempts, base_seconds=base_seconds, max_seconds=max_seconds)
        )
    with engine.begin() as conn:
        conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == item.id).values(values))
        conn.execute(
            insert(webhook_deliveries),
            {
                "outbox_id": item.id,
                "attempt": attempts,
                "at": now,
                "status_code": status_code,
                "error": None if ok else (error or "")[:200],
                "seconds": seconds,
            },
        )


def release(engine: Engine, ids: list[int], *, now: datetime | None = None) -> None:
    """Make leased rows due again at once (a subscriber's earlier row failed: keep its order)."""
    if ids:
        with engine.begin() as conn:
            conn.execute(
                update(webhook_outbox)
                .where(and_(webhook_outbox.c.id.in_(ids), webhook_outbox.c.delivered_at.is_(None)))
                .values(next_attempt_at=now or datetime.now(UTC))
            )


def status(engine: Engine) -> list[dict]:
    """Per active subscriber: rows delivered, pending, failing (attempted but not delivered), next attempt."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                webhook_outbox.c.subscriber_id,
                webhook_outbox.c.delivered_at,
                webhook_outbox.c.attempts,
                webhook_outbox.c.next_attempt_at,
            )
        ).all()
    out: dict[int, dict] = {}
    for sid, delivered, attempts, nxt in rows:
        s = out.setdefault(
            sid, {"subscriber_id": sid, "delivered": 0, "pending": 0, "failing": 0, "next_attempt": None}
        )
        if delivered is not None:
            s["delivered"] += 1
        else:
            s["pending"] += 1
            s["failing"] += attempts > 0
            s["next_attempt"] = min(filter(None, [s["next_attempt"], nxt]), default=None)
    return list(out.values())
