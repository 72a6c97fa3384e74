"""Webhooks to a real local receiver (http.server in a thread): signed over the exact body, retried with
backoff while the receiver is down, caught up once it is back, with no duplicate and no loss."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from cli.main import app as cli_app
from risk_model import advising, outbox, store
from risk_model.alerts import ALERT_COLUMNS
from webhooks import dispatch
from webhooks.sign import DELIVERY_HEADER, SIGNATURE_HEADER, signature, verify


class Receiver:
    """A local webhook receiver: records every request; answers `status` (or is stopped: connection refused)."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        # a short poll: `shutdown` waits for the loop to notice (0.5 s by default, at every stop)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'scores.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store.upgrade(url)  # the deploy step (`student-risk db upgrade`): connect only checks
    engine = store.connect(url)
    yield engine
    engine.dispose()


def planted_alerts(n: int, cohort: str = "2025", point: str = "day60") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cohort": cohort,
            "point": point,
            "student_id": [f"S{i:03d}" for i in range(n)],
            "previous_point": "day30",
            "previous_probability": 0.3,
            "probability": 0.6,
            "previous_tier": "medium",
            "tier": "high",
            "rise": 0.3,
            "kinds": "high,rise",
            "reason": "risk rose from 0.30 to 0.60 since day 30",
        }
    )[ALERT_COLUMNS]


def delivered_alerts(received: list[tuple[dict, bytes]]) -> list[str]:
    return [a["student_id"] for _, body in received for a in json.loads(body)["alerts"]]


def test_signature_is_hmac_sha256_of_the_exact_body():
    body = b'{"alerts":[]}'
    sig = signature("whsec_x", body)
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert verify("whsec_x", body, sig)
    assert (
        not verify("whsec_x", body + b" ", sig)
        and not verify("whsec_y", body, sig)
        and not verify("whsec_x", body, None)
    )


def test_batches_are_signed_and_delivered_in_order(engine):
    rx = Receiver()
    try:
        sub, secret = outbox.add_subscriber(engine, name="case-management", url=rx.url)
        advising.write_alerts(engine, "2025", "day60", planted_alerts(7), batch_size=3)
        assert dispatch.deliver(engine) == {"delivered": 3, "failed": 0}
        assert dispatch.deliver(engine) == {"delivered": 0, "failed": 0}  # nothing left: no repeat
    finally:
        rx.stop()
    assert delivered_alerts(rx.received) == [f"S{i:03d}" for i in range(7)]
    for headers, body in rx.received:
        assert verify(secret, body, headers[SIGNATURE_HEADER])
    with engine.connect() as conn:
        ids = conn.execute(select(store.webhook_outbox.c.delivery_id).order_by(store.webhook_outbox.c.id)).scalars()
        assert [h[DELIVERY_HEADER] for h, _ in rx.received] == list(ids)
    assert [json.loads(b)["part"] for _, b in rx.received] == [1, 2, 3]


def test_a_receiver_that_is_down_loses_nothing_and_is_caught_up(engine, caplog):
    rx = Receiver()
    port = rx.port
    rx.stop()  # down: connection refused
    _, secret = outbox.add_subscriber(engine, name="case-management", url=f"http://127.0.0.1:{port}/hooks")
    advising.write_alerts(engine, "2025", "day60", planted_alerts(5), batch_size=2)
    fast = {"base_seconds": 0.5, "max_seconds": 1.0, "timeout": 2.0}  # backoff 0.5 s, 1 s, 1 s
    with caplog.at_level(logging.DEBUG):
        assert dispatch.deliver(engine, **fast) == {"delivered": 0, "failed": 1}  # the first fails; the rest wait
        assert dispatch.deliver(engine, **fast) == {"delivered": 0, "failed": 0}  # backing off: not due yet
        time.sleep(0.6)
        assert dispatch.deliver(engine, **fast) == {"delivered": 0, "failed": 1}  # still down: tried again
        rx = Receiver(port)  # back
        rx.status = 503  # ...but answering "busy" first
        time.sleep(1.1)
        assert dispatch.deliver(engine, **fast) == {"delivered": 0, "failed": 1}
        rx.status = 200
        time.sleep(1.1)
        try:
            assert dispatch.deliver(engine, **fast) == {"delivered": 3, "failed": 0}
        finally:
            rx.stop()
    bodies = [b for _, b in rx.received]
    assert delivered_alerts(rx.received[1:]) == [f"S{i:03d}" for i in range(5)]  # in order, none lost or repeated
    assert rx.received[0][1] == rx.received[1][1]  # the 503'd attempt was the same bytes, same delivery id
    assert rx.received[0][0][DELIVERY_HEADER] == rx.received[1][0][DELIVERY_HEADER]
    assert all(verify(secret, b, h[SIGNATURE_HEADER]) for h, b in rx.received)
    with engine.connect() as conn:
        log = conn.execute(select(store.webhook_deliveries).order_by(store.webhook_deliveries.c.id)).mappings().all()
    first = [r for r in log if r["outbox_id"] == log[0]["outbox_id"]]
    assert [r["attempt"] for r in first] == [1, 2, 3, 4]
    assert [r["status_code"] for r in first] == [None, None, 503, 200]
    assert first[0]["error"] == "ConnectError"
    text = caplog.text
    assert secret not in text and "S000" not in text and bodies[0].decode() not in text


def test_rescoring_replaces_undelivered_batches_and_removed_subscribers_get_nothing(engine):
    rx = Receiver()
    try:
        outbox.add_subscriber(engine, name="a", url=rx.url)
        gone, _ = outbox.add_subscriber(engine, name="b", url=rx.url)
        advising.write_alerts(engine, "2025", "day60", planted_alerts(4), batch_size=10)
        advising.write_alerts(engine, "2025", "day60", planted_alerts(2), batch_size=10)  # re-scored
        outbox.remove_subscriber(engine, gone.id)
        assert dispatch.deliver(engine) == {"delivered": 1, "failed": 0}
    finally:
        rx.stop()
    assert delivered_alerts(rx.received) == ["S000", "S001"]
    with pytest.raises(ValueError, match="webhooks list"):
        outbox.remove_subscriber(engine, gone.id)


def test_cli_adds_lists_delivers_and_removes(tmp_path):
    runner = CliRunner()
    home = str(tmp_path / "runtime")
    rx = Receiver()
    try:
        added = runner.invoke(
            cli_app, ["webhooks", "add", "--url", rx.url, "--name", "case-management", "--home", home]
        )
        assert added.exit_code == 0, added.output
        secret = added.output.strip().splitlines()[-1]
        assert secret.startswith("whsec_")
        listed = runner.invoke(cli_app, ["webhooks", "list", "--home", home])
        assert "case-management" in listed.output and secret not in listed.output
        bad = runner.invoke(cli_app, ["webhooks", "add", "--url", "ftp://x", "--name", "y", "--home", home])
        assert bad.exit_code == 2 and "--url https://" in bad.output
        engine = store.connect(f"sqlite:///{tmp_path / 'runtime' / 'scores.db'}")
        advising.write_alerts(engine, "2025", "day60", planted_alerts(3))
        engine.dispose()
        sent = runner.invoke(cli_app, ["webhooks", "deliver", "--home", home])
        assert "Delivered 1 batch(es); 0 failed" in sent.output
        assert verify(secret, rx.received[0][1], rx.received[0][0][SIGNATURE_HEADER])
        removed = runner.invoke(cli_app, ["webhooks", "remove", "1", "--home", home])
        assert "removed" in removed.output
    finally:
        rx.stop()
