"""Open every report in headless Chromium with the network off, as a staff member would.

Chromium runs with a dead proxy and a resolver that finds no host, and every request a page
makes is logged through the DevTools protocol (over `--remote-debugging-port`, with the
`websockets` package). A page fails when it requests anything but itself (file:, data:,
blob:, about:, or a loopback address), logs a console error or throws, or has no verdict.
Negative tests prove the harness catches a remote request and a console error.

Run as a script to screenshot pages: `python tests/test_browser.py OUT_DIR PAGE.html...`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = "/usr/bin/chromium"
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome", "devtools"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class PageResult:
    url: str
    verdict: str | None = None
    title: str | None = None
    pwned: str | None = None  # window.__pwned, which the hostile values in the safety tests would set
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def remote_requests(self) -> list[str]:
        out = []
        for u in self.requests:
            p = urlparse(u)
            if p.scheme in LOCAL_SCHEMES:
                continue
            if p.hostname in LOCAL_HOSTS:
                continue
            out.append(u)
        return out

    def problems(self) -> list[str]:
        return [f"remote request: {u}" for u in self.remote_requests] + [
            f"console/page error: {e}" for e in self.errors
        ]


def chromium_or_fail() -> str:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium. Run `apt-get install -y chromium`."
        )
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


class Browser:
    """Headless Chromium, network off, driven over the DevTools protocol."""

    def __init__(self, binary: str = CHROMIUM) -> None:
        self.profile = Path(tempfile.mkdtemp(prefix="sr-chromium-"))
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                "--disable-extensions",
                "--mute-audio",
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                "--proxy-server=127.0.0.1:9",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--window-size=1280,1800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint within 30 s")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws_url = f"ws://127.0.0.1:{port}{path}"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self, page: Path, screenshot: Path | None = None, settle: float = 2.0) -> PageResult:
        return asyncio.run(self._open(page.resolve().as_uri(), screenshot, settle))

    async def _open(self, url: str, screenshot: Path | None, settle: float) -> PageResult:
        from websockets.asyncio.client import connect

        result = PageResult(url)
        async with connect(self.ws_url, max_size=None) as ws:
            ids = iter(range(1, 1_000_000))
            pending: dict[int, asyncio.Future] = {}
            events: list[dict] = []
            loaded = asyncio.Event()
            children: list[str] = []  # sessions of out-of-process frames (a sandboxed iframe runs in one)
            child_tasks: list[asyncio.Task] = []

            async def reader() -> None:
                async for raw in ws:
                    msg = json.loads(raw)
                    if "id" in msg and msg["id"] in pending:
                        pending.pop(msg["id"]).set_result(msg)
                    elif "method" in msg:
                        events.append(msg)
                        if msg["method"] == "Page.loadEventFired":
                            loaded.set()
                        elif msg["method"] == "Target.attachedToTarget":
                            child = msg["params"]["sessionId"]
                            children.append(child)
                            child_tasks.append(asyncio.create_task(watch(child)))

            async def watch(child: str) -> None:
                """Log a frame's requests, console and errors like the page's own, then let it run."""
                for domain in ("Network", "Runtime", "Log"):
                    await call(f"{domain}.enable", child)
                await call("Target.setAutoAttach", child, autoAttach=True, waitForDebuggerOnStart=True, flatten=True)
                await call("Runtime.runIfWaitingForDebugger", child)

            async def call(method: str, session: str | None = None, **params) -> dict:
                i = next(ids)
                fut = asyncio.get_running_loop().create_future()
                pending[i] = fut
                msg = {"id": i, "method": method, "params": params}
                if session:
                    msg["sessionId"] = session
                await ws.send(json.dumps(msg))
                reply = await asyncio.wait_for(fut, 60)
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

            task = asyncio.create_task(reader())
            try:
                target = (await call("Target.createTarget", url="about:blank"))["targetId"]
                session = (await call("Target.attachToTarget", targetId=target, flatten=True))["sessionId"]
                for domain in ("Network", "Runtime", "Log", "Page"):
                    await call(f"{domain}.enable", session)
                await call("Target.setAutoAttach", session, autoAttach=True, waitForDebuggerOnStart=True, flatten=True)
                await call(
                    "Emulation.setDeviceMetricsOverride",
                    session,
                    width=1280,
                    height=1800,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                await call("Page.navigate", session, url=url)
                await asyncio.wait_for(loaded.wait(), 60)
                await asyncio.sleep(settle)  # let scripts render charts and fire late requests
                got = await call(
                    "Runtime.evaluate",
                    session,
                    returnByValue=True,
                    expression="(() => { const e = document.querySelector('[data-testid=verdict]');"
                    " return e ? e.innerText : null; })()",
                )
                result.verdict = got.get("result", {}).get("value")
                got = await call(
                    "Runtime.evaluate",
                    session,
                    returnByValue=True,
                    expression="JSON.stringify([document.title, window.__pwned === undefined ? null : String(window.__pwned)])",
                )
                result.title, result.pwned = json.loads(got.get("result", {}).get("value") or "[null, null]")
                await asyncio.gather(*child_tasks)
                for child in children:  # a payload run inside a frame would set that frame's window.__pwned
                    got = await call(
                        "Runtime.evaluate",
                        child,
                        returnByValue=True,
                        expression="window.__pwned === undefined ? null : String(window.__pwned)",
                    )
                    result.pwned = result.pwned or got.get("result", {}).get("value")
                if screenshot is not None:
                    shot = await call("Page.captureScreenshot", session, format="png")
                    screenshot.parent.mkdir(parents=True, exist_ok=True)
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                await call("Target.closeTarget", targetId=target)
            finally:
                task.cancel()
        for ev in events:
            m, p = ev["method"], ev.get("params", {})
            if m == "Network.requestWillBeSent":
                result.requests.append(p["request"]["url"])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                result.errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                result.errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                result.errors.append(
                    f"{p['entry'].get('source')}: {p['entry'].get('text')} {p['entry'].get('url', '')}"
                )
        return result


# ---------------------------------------------------------------------------------------------- tests

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser():
    binary = chromium_or_fail()
    with Browser(binary) as b:
        yield b


def test_harness_catches_remote_requests(tmp_path, browser):
    page = tmp_path / "remote.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p data-testid='verdict'>fine</p>"
        "<img src='https://example.org/pixel.png'><script src='http://cdn.example.com/lib.js'></script>"
        "</body></html>"
    )
    r = browser.open(page, settle=1.0)
    assert r.verdict == "fine"
    remote = r.remote_requests
    assert any("example.org/pixel.png" in u for u in remote), r.requests
    assert any("cdn.example.com/lib.js" in u for u in remote), r.requests
    assert r.problems()


def test_harness_catches_console_errors(tmp_path, browser):
    page = tmp_path / "errors.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p data-testid='verdict'>fine</p>"
        "<script>console.error('boom from the page');</script>"
        "<script>undefinedFunction();</script></body></html>"
    )
    r = browser.open(page, settle=0.5)
    assert any("boom from the page" in e for e in r.errors), r.errors
    assert any("undefinedFunction" in e for e in r.errors), r.errors
    assert not r.remote_requests


def test_harness_passes_a_clean_page(tmp_path, browser):
    page = tmp_path / "clean.html"
    page.write_text("<!DOCTYPE html><html><body><p data-testid='verdict'>all good</p></body></html>")
    r = browser.open(page, settle=0.2)
    assert r.verdict == "all good"
    assert r.problems() == []


def test_every_report_renders_offline(built_reports, browser):
    """Each report and the index: verdict shown, no console error, no request leaves the machine."""
    reports_dir: Path = built_reports["planted"]["settings"].reports_dir
    pages = sorted(reports_dir.glob("*/*/*/*.html")) + [reports_dir / "index.html"]
    names = {p.stem for p in pages}
    assert {"intake_drift", "outcomes", "generalization", "fairness", "index"} <= names, names
    shots = Path(__file__).resolve().parents[1] / "runtime" / "screenshots"
    failures = []
    for page in pages:
        r = browser.open(page, screenshot=shots / f"{page.stem}.png")
        data = json.loads(page.with_suffix(".json").read_text())
        if not r.verdict or r.verdict.strip() != data["verdict"].strip():
            failures.append(f"{page.name}: verdict on the page {r.verdict!r} differs from the JSON {data['verdict']!r}")
        failures += [f"{page.name}: {p}" for p in r.problems()]
    assert not failures, "\n".join(failures)
    assert (shots / "index.png").stat().st_size > 10_000


if __name__ == "__main__":
    out_dir = Path(sys.argv[1])
    with Browser() as b:
        for arg in sys.argv[2:]:
            res = b.open(Path(arg), screenshot=out_dir / f"{Path(arg).parent.name}-{Path(arg).stem}.png")
            print(Path(arg).name, "|", res.verdict, "|", res.problems() or "ok")
