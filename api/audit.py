"""Audit rows that never make a lookup wait: written at once when the store is free, else queued.

On SQLite one writer at a time holds the database: during a long write (a 300k-row re-score)
an audit INSERT in the request would wait for it (5 s, then fail the lookup). So the API's
SQLite lookups only read; their audit rows go through `AuditWriter.record`, which tries one
INSERT that gives up at once if the database is locked (busy timeout 0), and otherwise queues
the rows for a background thread that writes them in batches as soon as the lock is free.
Rows keep their order: while anything is queued, new rows queue behind it.

`close()` (the app's shutdown) writes whatever is queued, so a clean shutdown loses no row.
A crash (SIGKILL, power loss) loses the rows still queued: on an idle store none, during a
long write transaction those of the lookups made since it began. On PostgreSQL a lookup
writes its audit row in the same statement (`api.lookups`); only refused keys
(`auth_failures`) come through here, queued, never in the request.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import StaticPool

from risk_model import store

log = logging.getLogger(__name__)

MAX_AUTH_FAILURES_QUEUED = 10_000  # refused keys are counted, not queued, past this (a flood)


class AuditWriter:
    """Writes `audit_log` and `auth_failures` rows without blocking the request that made them."""

    def __init__(self, engine: Engine, *, retry_seconds: float = 0.2) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.retry_seconds = retry_seconds
        on_disk = self.sqlite and engine.url.database not in (None, "", ":memory:")
        self._writer = _nowait_engine(engine) if on_disk else engine  # (an in-memory store is one connection)
        self._queue: deque[tuple[Table, list[dict]]] = deque()
        self._write_lock = threading.Lock()  # one writer connection at a time
        self._wake = threading.Condition()
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Batches waiting to be written."""
        return len(self._queue)

    def record(self, table: Table, rows: list[dict]) -> None:
        """Write `rows` now if the store is free and nothing is queued, else queue them."""
        if not rows:
            return
        if self.sqlite and not self._queue and self._write_lock.acquire(blocking=False):
            try:
                if not self._queue:
                    store.write_audit(self._writer, table, rows)
                    return
            except OperationalError:  # locked by another writer: do not wait for it
                pass
            finally:
                self._write_lock.release()
        self.enqueue(table, rows)

    def write_if_free(self, write: Callable[[Connection], object]) -> bool:
        """Run `write(conn)` and commit now if the store is free, else skip it (False): for writes that may be
        lost, such as factors kept after a lookup computed them (the next lookup computes them again)."""
        if not self._write_lock.acquire(blocking=False):
            return False
        try:
            with self._writer.connect() as conn:
                write(conn)
                conn.commit()
            return True
        except OperationalError:  # locked by another writer: do not wait for it
            return False
        finally:
            self._write_lock.release()

    def enqueue(self, table: Table, rows: list[dict]) -> None:
        """Queue rows for the background writer."""
        with self._wake:
            if table is store.auth_failures and len(self._queue) >= MAX_AUTH_FAILURES_QUEUED:
                self.dropped += len(rows)
                return
            self._queue.append((table, rows))
            self._wake.notify()

    def flush(self, *, wait_seconds: float | None = None) -> None:
        """Write everything queued; with `wait_seconds`, wait at most that long for a locked store."""
        with self._write_lock:
            while self._queue:
                table, rows = self._queue[0]
                batch = [rows]
                for t, more in list(self._queue)[1:]:  # the next batches of the same table, in order
                    if t is not table:
                        break
                    batch.append(more)
                flat = [r for part in batch for r in part]
                if wait_seconds is None:
                    store.write_audit(self._writer, table, flat)
                else:
                    with self._writer.connect() as conn:  # wait for the lock, not forever
                        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(wait_seconds * 1000)}")
                        try:
                            conn.execute(table.insert(), flat)
                            conn.commit()
                        finally:
                            conn.rollback()
                            conn.exec_driver_sql("PRAGMA busy_timeout = 0")
                for _ in batch:
                    self._queue.popleft()

    def close(self) -> None:
        """Stop the background writer and write what is left (waiting for a locked store)."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join(timeout=30)
        try:
            self.flush(wait_seconds=60.0 if self.sqlite else None)
        except Exception as exc:  # the store is gone: say how much is lost, do not fail the shutdown
            lost = sum(len(rows) for _, rows in self._queue)
            log.error("Audit: %d queued row(s) could not be written at shutdown (%s)", lost, type(exc).__name__)
        if self.dropped:
            log.warning("Audit: %d refused-key rows were not recorded (queue full)", self.dropped)
        if self._writer is not self.engine:
            self._writer.dispose()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
            try:
                self.flush(wait_seconds=self.retry_seconds if self.sqlite else None)
            except OperationalError:  # still locked (a long write): try again shortly
                with self._wake:
                    self._wake.wait(self.retry_seconds)
            except Exception as exc:  # never let the writer die; the rows stay queued
                log.error("Audit: could not write queued rows (%s); retrying", type(exc).__name__)
                with self._wake:
                    self._wake.wait(1.0)


def _nowait_engine(engine: Engine) -> Engine:
    """A one-connection engine to the same SQLite file whose writes fail at once when it is locked."""
    writer = create_engine(
        engine.url,
        connect_args={"timeout": 0, "check_same_thread": False},
        poolclass=StaticPool,
    )
    event.listen(writer, "connect", store._sqlite_pragmas)
    return writer
