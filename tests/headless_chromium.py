"""Headless Chromium driven through the DevTools protocol over a pipe (no extra packages).

``--remote-debugging-pipe`` makes Chromium read protocol commands from file descriptor
3 and write replies and events to descriptor 4, one JSON message per NUL-terminated
chunk: the protocol without a websocket, so the standard library is enough.

>>> with Chromium.start() as browser:                       # doctest: +SKIP
...     page = browser.open("file:///tmp/report.html")
...     page.evaluate("document.title")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# The flags the issue names, plus a fixed window so screenshots are reproducible.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--hide-scrollbars",
)
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """The Chromium executable on PATH ($SCALELAB_CHROMIUM wins), or None."""
    override = os.environ.get("SCALELAB_CHROMIUM")
    if override:
        return shutil.which(override) or (override if Path(override).is_file() else None)
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class ProtocolError(RuntimeError):
    pass


class Chromium:
    """One headless Chromium process with a DevTools connection over pipes."""

    def __init__(self, proc: subprocess.Popen, commands, replies, profile: str, stderr_path: Path):
        self.proc = proc
        self._out = commands
        self._in = replies
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        self._profile = profile
        self.stderr_path = stderr_path

    @classmethod
    def start(cls, executable: str | None = None) -> Chromium:
        executable = executable or find_chromium()
        if executable is None:
            raise FileNotFoundError("no chromium executable on PATH")
        profile = tempfile.mkdtemp(prefix="scalelab-chromium-")  # an empty --user-data-dir
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Chromium expects the pipes as its fds 3 and 4. The child's ends are moved above
        # 10 (clear of 3 and 4) and kept open with pass_fds; bash, which unlike dash can
        # name fds above 9, puts them in place before it becomes chromium.
        child_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
        child_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
        for fd in (to_browser_r, from_browser_w):
            os.close(fd)
        command = [executable, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"]
        wiring = f'exec "$@" 3<&{child_r} 4>&{child_w} {child_r}<&- {child_w}>&-'
        stderr_path = Path(profile) / "stderr.log"
        with open(stderr_path, "wb") as stderr:
            proc = subprocess.Popen(
                [shutil.which("bash") or "/bin/bash", "-c", wiring, "chromium", *command],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
                pass_fds=(child_r, child_w), start_new_session=True,
            )  # fmt: skip
        os.close(child_r)
        os.close(child_w)
        return cls(proc, os.fdopen(to_browser_w, "wb", buffering=0), os.fdopen(from_browser_r, "rb", buffering=0), profile, stderr_path)

    # -- the protocol ----------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, *, session: str | None = None, timeout: float = 30.0) -> dict:
        """Send one command and wait for its reply; events seen meanwhile go to ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, what=method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise ProtocolError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, *, session: str | None = None, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for event in self.events:
            if event.get("method") == method and (session is None or event.get("sessionId") == session):
                return event
        while True:
            event = self._receive(deadline, what=method)
            self.events.append(event)
            if event.get("method") == method and (session is None or event.get("sessionId") == session):
                return event

    def _receive(self, deadline: float, *, what: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from chromium to {what}")
            ready, _, _ = select.select([self._in], [], [], left)
            if ready:
                chunk = self._in.read(1 << 16)
                if not chunk:
                    raise ProtocolError(f"chromium closed the pipe (exit {self.proc.poll()}); see {self.stderr_path}")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # -- pages -----------------------------------------------------------------------------
    def open(self, url: str, *, timeout: float = 30.0) -> Page:
        """A new tab showing ``url``, loaded, with console and log capture on from the start."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired", session=session, timeout=timeout)
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (ProtocolError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        for stream in (self._in, self._out):
            try:
                stream.close()
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    def __init__(self, browser: Chromium, session: str):
        self.browser = browser
        self.session = session

    def evaluate(self, expression: str):
        """The value of a JavaScript expression (awaited when it is a promise)."""
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in result:
            raise ProtocolError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations, failed loads)."""
        errors = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(params.get("exceptionDetails", {}))[:500])
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
        return errors

    def screenshot(self, path: Path, *, full_page: bool = True) -> Path:
        """A PNG of the page (the whole length when ``full_page``)."""
        params = {"format": "png"}
        if full_page:
            metrics = self.browser.send("Page.getLayoutMetrics", session=self.session)
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.browser.send("Page.captureScreenshot", params, session=self.session, timeout=60)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def print_pdf(self) -> bytes:
        data = self.browser.send("Page.printToPDF", {"printBackground": True}, session=self.session, timeout=60)["data"]
        return base64.b64decode(data)
