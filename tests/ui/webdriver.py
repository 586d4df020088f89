"""A small W3C WebDriver client (stdlib only) that drives headless Chromium
through chromedriver, shared by tests/ui/ui_test.py and bench/ui/ui_bench.py.

Every wait is bounded and polls a condition; `Browser.close()` ends
chromedriver and the browser it started even after a failure.
"""

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# The W3C key for an element reference in JSON.
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"

CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
]


class WebDriverError(Exception):
    """An error answer from chromedriver (its `error` and `message`)."""


class Timeout(Exception):
    """A bounded wait that ended before its condition held."""


def die_with_parent():
    """In the child before exec: get SIGKILL if the script that started us dies (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# Chromium is started by chromedriver, and a death signal is not inherited across
# fork: this wrapper sets it for the browser, then becomes the browser (exec).
WRAPPER = """#!{python}
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass
os.execv({real!r}, [{real!r}] + sys.argv[1:])
"""


def browser_wrapper(real, directory):
    """An executable that runs `real` so that it dies with chromedriver."""
    path = os.path.join(directory, "chromium")
    with open(path, "w") as f:
        f.write(WRAPPER.format(python=sys.executable, real=real))
    os.chmod(path, 0o755)
    return path


def free_port():
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, cond, timeout=10.0, interval=0.05):
    """Poll cond() until it returns something truthy (returned); Timeout after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_err = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except (WebDriverError, OSError) as e:  # a stale element, a page mid-render
            last_err = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_err})" if last_err else ""
            raise Timeout(f"timed out after {timeout:.0f}s waiting for {what}{extra}")
        time.sleep(interval)


def http_json(method, url, body=None, headers=None, timeout=30):
    """One JSON HTTP call; returns (status, parsed body or text)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


class Element:
    """A reference to an element in the current page."""

    def __init__(self, browser, ref):
        self.b = browser
        self.ref = ref

    def _url(self, tail=""):
        return f"/element/{self.ref}{tail}"

    def click(self):
        self.b.cmd("POST", self._url("/click"), {})

    def clear(self):
        self.b.cmd("POST", self._url("/clear"), {})

    def type(self, text):
        self.b.cmd("POST", self._url("/value"), {"text": text})

    def text(self):
        return self.b.cmd("GET", self._url("/text"))

    def attr(self, name):
        return self.b.cmd("GET", self._url(f"/attribute/{name}"))

    def prop(self, name):
        return self.b.cmd("GET", self._url(f"/property/{name}"))

    def css(self, name):
        return self.b.cmd("GET", self._url(f"/css/{name}"))

    def enabled(self):
        return self.b.cmd("GET", self._url("/enabled"))

    def displayed(self):
        return self.b.cmd("GET", self._url("/displayed"))

    def find(self, selector):
        return Element(self.b, self.b.cmd("POST", self._url("/element"), {"using": "css selector", "value": selector})[ELEMENT])

    def find_all(self, selector):
        refs = self.b.cmd("POST", self._url("/elements"), {"using": "css selector", "value": selector})
        return [Element(self.b, r[ELEMENT]) for r in refs]


class Browser:
    """chromedriver plus one headless Chromium session."""

    def __init__(self, chromium="/usr/bin/chromium", chromedriver="/usr/bin/chromedriver", start_timeout=30.0):
        self.profile = tempfile.mkdtemp(prefix="mesh-ui-chrome-")
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        log = open(os.path.join(self.profile, "chromedriver.log"), "wb")
        # Its own process group, so close() can end chromedriver and the browser it spawned.
        self.proc = subprocess.Popen(
            [chromedriver, f"--port={self.port}", "--allowed-ips=127.0.0.1"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        try:
            wait_until("chromedriver to answer /status", self._ready, timeout=start_timeout, interval=0.1)
            caps = {
                "capabilities": {
                    "alwaysMatch": {
                        "browserName": "chrome",
                        "pageLoadStrategy": "normal",
                        "timeouts": {"script": 30000, "pageLoad": 30000, "implicit": 0},
                        "goog:chromeOptions": {
                            "binary": browser_wrapper(chromium, self.profile),
                            "args": CHROME_ARGS + [f"--user-data-dir={os.path.join(self.profile, 'profile')}"],
                        },
                    }
                }
            }
            status, body = http_json("POST", f"{self.base}/session", caps, timeout=start_timeout)
            if status != 200:
                raise WebDriverError(f"new session: {status} {body}")
            self.session = body["value"]["sessionId"]
        except BaseException:
            self.close()
            raise

    def _ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError(f"chromedriver exited with {self.proc.returncode}")
        try:
            status, body = http_json("GET", f"{self.base}/status", timeout=2)
        except OSError:
            return False
        return status == 200 and body["value"].get("ready")

    def cmd(self, method, path, body=None, timeout=60):
        """One WebDriver command on the session; returns its `value`."""
        status, answer = http_json(method, f"{self.base}/session/{self.session}{path}", body, timeout=timeout)
        value = answer.get("value") if isinstance(answer, dict) else answer
        if status != 200:
            if isinstance(value, dict):
                raise WebDriverError(f"{path}: {value.get('error')}: {value.get('message', '').splitlines()[0] if value.get('message') else ''}")
            raise WebDriverError(f"{path}: HTTP {status}: {answer}")
        return value

    # === navigation and script ===

    def get(self, url):
        self.cmd("POST", "/url", {"url": url})

    def url(self):
        return self.cmd("GET", "/url")

    def run(self, script, *args):
        """Run a function body in the page (arguments as `arguments[i]`); returns its value."""
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def run_async(self, script, *args):
        """Like run, but the script calls `arguments[arguments.length - 1](value)` when done."""
        return self.cmd("POST", "/execute/async", {"script": script, "args": list(args)})

    def set_hash(self, h):
        """Change the route without a page load (what a click on a link does)."""
        self.run("location.hash = arguments[0];", h)

    # === elements ===

    def find(self, selector):
        return Element(self, self.cmd("POST", "/element", {"using": "css selector", "value": selector})[ELEMENT])

    def find_all(self, selector):
        refs = self.cmd("POST", "/elements", {"using": "css selector", "value": selector})
        return [Element(self, r[ELEMENT]) for r in refs]

    def wait_for(self, selector, what=None, timeout=10.0):
        """The first element matching selector, waiting for it to appear."""
        return wait_until(what or f"element {selector}", lambda: (self.find_all(selector) or [None])[0], timeout=timeout)

    def fill(self, selector, text):
        el = self.wait_for(selector)
        el.clear()
        if text:
            el.type(text)
        return el

    def choose(self, selector, value):
        """Set a <select> by value and tell the page, as a user's choice would."""
        el = self.wait_for(selector)
        self.run(
            "const s = arguments[0]; s.value = arguments[1]; s.dispatchEvent(new Event('change', {bubbles: true}));",
            {ELEMENT: el.ref},
            value,
        )
        return el

    def screenshot(self, path):
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    # === teardown ===

    def close(self):
        """End the session, chromedriver and any browser left behind; remove the profile."""
        if self.session:
            try:
                http_json("DELETE", f"{self.base}/session/{self.session}", timeout=10)
            except OSError:
                pass
            self.session = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        # Chromium may outlive chromedriver in its own group: find it by our profile dir.
        _kill_by_profile(self.profile)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _kill_by_profile(profile):
    """Kill processes whose command line names this (unique, temporary) profile dir."""
    needle = profile.encode()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if needle in f.read():
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
