"""Firefox and WebKit (Safari's engine) for tests, without playwright's own builds (they cannot be downloaded here).

- Firefox: Debian's firefox-esr, driven over WebDriver BiDi, the protocol Firefox itself serves
  (`--remote-debugging-port`); no geckodriver. Playwright's BiDi mode asks for commands that ESR lacks.
- WebKit: Debian's WebKitGTK MiniBrowser (the engine of Safari, not Safari itself), driven over classic WebDriver by
  WebKitWebDriver (package webkit2gtk-driver). It needs a display: run under `xvfb-run -a`.

Both give one small interface, `BrowserPage`: goto, run (the body of an async JavaScript function, its result back
as JSON), resize and screenshot. Clicks and typing go through the page's own events (el.click(), an input event),
which is what Gradio listens to.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FIREFOX = "firefox-esr"
WEBKIT_DRIVER = "WebKitWebDriver"
MINIBROWSER = Path("/usr/lib/x86_64-linux-gnu/webkit2gtk-4.1/MiniBrowser")
INSTALL = "apt-get install -y firefox-esr webkit2gtk-driver xvfb"  # i18n: not shown
# Firefox's first run quiet: no default-browser question, no telemetry, no updates, no pages of its own
FIREFOX_PREFS = {
    "browser.shell.checkDefaultBrowser": False, "browser.startup.homepage_override.mstone": "ignore",
    "datareporting.policy.dataSubmissionEnabled": False, "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True, "browser.download.useDownloadDir": True,
    "network.connectivity-service.enabled": False, "browser.aboutwelcome.enabled": False,
}


class BrowserError(RuntimeError):
    """The browser reported an error, or a script in the page threw."""


def unavailable(name: str) -> str | None:
    """Why browser `name` cannot run here, or None when it can."""
    if name == "firefox":
        return None if shutil.which(FIREFOX) else f"Debian's firefox-esr is not installed ({INSTALL})"
    if not (shutil.which(WEBKIT_DRIVER) and MINIBROWSER.exists()):
        return f"WebKitGTK's WebKitWebDriver and MiniBrowser are not installed ({INSTALL})"
    if not os.environ.get("DISPLAY"):
        return "WebKitGTK's MiniBrowser needs a display: run pytest under `xvfb-run -a`"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_async_function(body: str) -> str:
    """`body` as an async function's, its result as JSON (undefined as null)."""
    return f"(async () => {{ {body} }})().then((v) => JSON.stringify(v === undefined ? null : v))"


class BrowserPage:
    name: str

    def goto(self, url: str) -> None: ...
    def run(self, body: str) -> Any: ...
    def resize(self, width: int, height: int) -> None: ...

    def viewport(self) -> tuple[int, int]:
        return tuple(self.run("return [window.innerWidth, window.innerHeight]"))  # type: ignore[return-value]

    def screenshot(self) -> bytes: ...

    def wait(self, body: str, timeout: float = 30.0, message: str = "") -> Any:
        """Run `body` until it returns something truthy (and return that); fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not (value := self.run(body)):
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name}: timed out after {timeout} s waiting for {message or body}")
            time.sleep(0.2)
        return value


class FirefoxPage(BrowserPage):
    """One tab of a headless firefox-esr over WebDriver BiDi."""

    name = "firefox"

    def __init__(self, profile: Path):
        from websockets.sync.client import connect

        profile.mkdir(parents=True, exist_ok=True)
        (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                                 for k, v in FIREFOX_PREFS.items()))
        port = free_port()
        log = profile / "firefox.log"  # its output, to a file: a pipe nobody reads would fill and block it
        with log.open("w") as out:
            self.process = subprocess.Popen([FIREFOX, "--headless", f"--remote-debugging-port={port}", "--profile",
                                             str(profile), "--no-remote"], stdout=out, stderr=subprocess.STDOUT)
        self.socket = None
        try:
            deadline = time.monotonic() + 60
            while "WebDriver BiDi listening" not in log.read_text(errors="replace"):  # said once it listens
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise BrowserError(f"firefox-esr did not serve WebDriver BiDi: {log.read_text()[-500:]}")
                time.sleep(0.1)
            self.socket = connect(f"ws://127.0.0.1:{port}/session", max_size=None, open_timeout=30)
            self.ids = itertools.count(1)
            self.send("session.new", capabilities={})
            self.context = self.send("browsingContext.getTree")["contexts"][0]["context"]
        except BaseException:
            self.close()
            raise

    def send(self, method: str, timeout: float = 120.0, **params) -> dict:
        """A BiDi command and its result (the events that arrive meanwhile are not asked for)."""
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == number:
                if message.get("type") == "error":
                    raise BrowserError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def goto(self, url: str) -> None:
        self.send("browsingContext.navigate", context=self.context, url=url, wait="complete")

    def run(self, body: str) -> Any:
        result = self.send("script.evaluate", expression=in_async_function(body), target={"context": self.context},
                           awaitPromise=True)
        if result["type"] == "exception":
            raise BrowserError(result["exceptionDetails"]["text"])
        return json.loads(result["result"]["value"])

    def resize(self, width: int, height: int) -> None:
        self.send("browsingContext.setViewport", context=self.context, viewport={"width": width, "height": height})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("browsingContext.captureScreenshot", context=self.context)["data"])

    def close(self) -> None:
        try:
            if self.socket is not None:
                self.socket.close()
        finally:
            stop(self.process)


class WebKitPage(BrowserPage):
    """WebKitGTK's MiniBrowser over classic WebDriver (WebKitWebDriver), on the display of $DISPLAY."""

    name = "webkit"

    def __init__(self):
        port = free_port()
        self.driver = subprocess.Popen([WEBKIT_DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        self.session = None
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=1):
                        break
                except OSError:
                    if self.driver.poll() is not None or time.monotonic() > deadline:
                        raise BrowserError("WebKitWebDriver did not start") from None
                    time.sleep(0.1)
            options = {"binary": str(MINIBROWSER), "args": ["--automation"]}
            session = self.call("POST", "/session", {"capabilities": {"alwaysMatch": {
                "webkitgtk:browserOptions": options}}})
            self.session = f"/session/{session['sessionId']}"
            self.call("POST", f"{self.session}/timeouts", {"script": 120_000})
        except BaseException:
            self.close()  # the driver ends the browser it started with it
            raise

    def call(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=180) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as error:
            value = json.loads(error.read() or b"{}").get("value", {})
            raise BrowserError(f"{method} {path}: {value.get('error')}: {value.get('message')}") from None

    def goto(self, url: str) -> None:
        self.call("POST", f"{self.session}/url", {"url": url})

    def run(self, body: str) -> Any:
        script = (f"const done = arguments[arguments.length - 1]; {in_async_function(body)}"
                  ".then(done, (e) => done(JSON.stringify({__error: String(e && e.stack || e)})));")
        value = json.loads(self.call("POST", f"{self.session}/execute/async", {"script": script, "args": []}))
        if isinstance(value, dict) and "__error" in value:
            raise BrowserError(value["__error"])
        return value

    def resize(self, width: int, height: int) -> None:
        """The page's viewport made `width` x `height` (the window is larger by its frame, measured first); no
        narrower than MiniBrowser's window allows (447 px in 2.50: its toolbar's width)."""
        outer = self.run("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
        self.call("POST", f"{self.session}/window/rect", {"width": width + outer[0], "height": height + outer[1]})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("GET", f"{self.session}/screenshot"))

    def close(self) -> None:
        try:
            if self.session is not None:
                self.call("DELETE", self.session)
        finally:
            stop(self.driver)


def stop(process: subprocess.Popen) -> None:
    """End a browser or driver process: asked first, killed if it has not gone within 30 s."""
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(30)


@contextmanager
def opened(name: str, workdir: Path) -> Iterator[BrowserPage]:
    """A page of browser `name` ("firefox", "webkit"), closed when the block ends."""
    page = FirefoxPage(workdir / "firefox-profile") if name == "firefox" else WebKitPage()
    try:
        yield page
    finally:
        page.close()
