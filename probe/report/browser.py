"""Look at a report as a person would: load the HTML in headless Chromium and check what renders.

:func:`check_in_browser` opens the page at a desktop width over the Chrome DevTools Protocol, then
reports console errors and uncaught exceptions, images that did not decode, and elements that stick
out past the viewport's right edge (the page must read at 1280 px without horizontal scrolling), and
saves a screenshot beside the report. It needs a Chromium binary (Debian: ``apt-get install
chromium``) and the ``websocket-client`` package; nothing else is started.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.atomic import write_atomic
from probe.errors import ProbeError

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
_CHECK_JS = """(() => {
  const W = window.innerWidth;
  const broken = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
    .map(i => i.alt || i.src.slice(0, 60));
  const wide = [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > W + 1)
    .map(e => e.tagName.toLowerCase() + (e.className ? '.' + e.className : '')).slice(0, 20);
  return JSON.stringify({broken, wide, scrollWidth: document.documentElement.scrollWidth, width: W,
                         images: document.images.length, alts: [...document.images].map(i => i.alt)});
})()"""


class BrowserError(ProbeError):
    """No usable headless browser, or the page could not be loaded."""


@dataclass(frozen=True)
class BrowserCheck:
    """What a headless browser saw on a page."""

    console_errors: list[str] = field(default_factory=list)  # console.error lines and uncaught exceptions
    broken_images: list[str] = field(default_factory=list)  # alt text (or src start) of images that did not decode
    overflowing: list[str] = field(default_factory=list)  # elements past the right edge of the viewport
    images: int = 0  # images on the page
    image_alts: list[str] = field(default_factory=list)  # alternative text of every image, in page order
    scroll_width: int = 0  # the document's width in CSS pixels
    width: int = 0  # the viewport's width
    screenshot: str = ""  # the PNG written

    @property
    def ok(self) -> bool:
        return not (self.console_errors or self.broken_images or self.overflowing) and self.scroll_width <= self.width


def find_browser() -> str:
    """The path of a Chromium-family binary (``PROBE_BROWSER`` first).

    Raises:
        BrowserError: none found; the message says how to install one.
    """
    for name in (os.environ.get("PROBE_BROWSER", ""), *BROWSERS):
        path = shutil.which(name) if name else None
        if path:
            return path
    raise BrowserError("no headless Chromium found; install it (Debian: apt-get install chromium) or set PROBE_BROWSER")


class _Session:
    """One DevTools websocket: commands by id, events collected while waiting."""

    def __init__(self, url: str, timeout: float) -> None:
        import websocket  # websocket-client

        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise BrowserError(f"the browser refused {method}: {msg['error'].get('message')}")
                return dict(msg.get("result", {}))
            self.events.append(msg)

    def wait_for(self, method: str, deadline: float) -> None:
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise BrowserError(f"the page did not finish loading ({method} never came)")
            self.events.append(json.loads(self.ws.recv()))


def _start(binary: str, profile: str, width: int, height: int, deadline: float) -> tuple[subprocess.Popen[bytes], int]:
    args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank"]  # fmt: skip
    # its own process group, so the renderer and zygote children end with it (they write into the profile)
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    port_file = Path(profile) / "DevToolsActivePort"
    while not port_file.is_file() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise BrowserError(f"{binary} did not start a DevTools endpoint (exit {proc.poll()})")
        time.sleep(0.1)
    return proc, int(port_file.read_text().split()[0])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _console_errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        params = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif e.get("method") == "Runtime.exceptionThrown":
            out.append(str(params.get("exceptionDetails", {}).get("text", "exception")))
        elif e.get("method") == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            out.append(str(params["entry"].get("text", "")))
    return out


def check_in_browser(
    html: str | Path, *, width: int = 1280, height: int = 900, screenshot: str | Path | None = None, timeout: float = 60
) -> BrowserCheck:
    """Load ``html`` in headless Chromium at ``width`` × ``height`` and report what renders badly.

    Args:
        html: the page (a self-contained report.html).
        width: viewport width in CSS pixels (1280: a laptop screen).
        height: viewport height.
        screenshot: where to save a full-page PNG (default: ``screenshot.png`` beside the page).
        timeout: seconds for the browser to start and the page to load.

    Raises:
        BrowserError: no browser, or the page did not load.
    """
    page = Path(html).resolve()
    if not page.is_file():
        raise BrowserError(f"{page} does not exist; write the report first")
    binary = find_browser()
    deadline = time.monotonic() + timeout
    with tempfile.TemporaryDirectory(prefix="probe-browser-", ignore_cleanup_errors=True) as profile:
        proc, port = _start(binary, profile, width, height, deadline)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=timeout) as resp:
                targets = json.load(resp)
            url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
            session = _Session(url, timeout)
            for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
                session.call(domain)
            session.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                         mobile=False)  # fmt: skip
            session.call("Page.navigate", url=page.as_uri())
            session.wait_for("Page.loadEventFired", deadline)
            seen = json.loads(session.call("Runtime.evaluate", expression=_CHECK_JS)["result"]["value"])
            shot = session.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            target = Path(screenshot) if screenshot else page.with_name("screenshot.png")
            write_atomic(target, base64.b64decode(shot["data"]))
            session.ws.close()
        finally:
            _stop(proc)
    return BrowserCheck(
        console_errors=_console_errors(session.events),
        broken_images=list(seen["broken"]),
        overflowing=list(seen["wide"]),
        images=int(seen["images"]),
        image_alts=[str(a) for a in seen["alts"]],
        scroll_width=int(seen["scrollWidth"]),
        width=int(seen["width"]),
        screenshot=str(target),
    )
