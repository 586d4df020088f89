#!/usr/bin/env python3
"""End-to-end test of mesh's web UI in headless Chromium, against a real agent.

    python3 tests/ui/ui_test.py --http 127.0.0.1:PORT --token MGMT \
        --limited-token TOKEN --owned-service NAME --owned-file PATH \
        --screenshots DIR

The agent must run with -ui and ACLs on; MGMT is a management token, TOKEN
one that may not read ACLs or KV, and NAME a service declared in the mesh.d
file PATH. Exits 0 when every step passes, 1 with the failing step's reason.
Stdlib only: WebDriver is spoken over HTTP to chromedriver (webdriver.py).
"""

import argparse
import os
import signal
import sys
import threading
import time
import urllib.parse
import uuid

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from webdriver import Browser, Timeout, WebDriverError, http_json, wait_until  # noqa: E402

CRITICAL_RGB = (198, 40, 40)  # --critical in style.css
PASSING_RGB = (26, 127, 55)  # --passing in style.css


def rgb(css):
    """(r, g, b) of a computed colour, rgb() or rgba()."""
    inner = css[css.index("(") + 1:css.rindex(")")]
    return tuple(int(float(x)) for x in inner.split(",")[:3])


class Failure(Exception):
    """A step's check did not hold."""


class Api:
    """The agent's HTTP API with one token."""

    def __init__(self, addr, tok):
        self.base = f"http://{addr}"
        self.tok = tok

    def call(self, method, path, body=None, ok=(200,)):
        status, data = http_json(method, self.base + path, body, headers={"X-Consul-Token": self.tok})
        if status not in ok:
            raise Failure(f"{method} {path}: HTTP {status}: {data}")
        return data

    def raw(self, path):
        return http_json("GET", self.base + path, headers={"X-Consul-Token": self.tok})


class UiTest:
    def __init__(self, args, browser):
        self.a = args
        self.b = browser
        self.api = Api(args.http, args.token)
        self.ui = f"http://{args.http}/ui/"
        run = uuid.uuid4().hex[:6]
        self.svc = f"uitest-{run}"
        self.check_id = f"uitest-ttl-{run}"
        self.kv_key = f"uitest-{run}/greeting"
        self.ixn_src = f"uitest-web-{run}"
        self.l7_src = f"uitest-l7-{run}"
        self.step_name = "start"
        os.makedirs(args.screenshots, exist_ok=True)

    # === helpers ===

    def step(self, name):
        self.step_name = name
        print(f"--- {name}", flush=True)

    def ok(self, what):
        print(f"ok   {what}", flush=True)

    def shot(self, name):
        path = os.path.join(self.a.screenshots, f"{name}.png")
        self.b.screenshot(path)
        return path

    def wait(self, what, cond, timeout=None):
        return wait_until(what, cond, timeout=timeout or self.a.timeout)

    def no_page_errors(self):
        """The app shows script and CSP errors in #banner; there must be none."""
        text = self.b.run("const b = document.getElementById('banner'); return b && !b.hidden ? b.textContent : '';")
        if text:
            raise Failure(f"the page reported an error: {text}")

    def same_page(self):
        """The marker set after the first load is still there: nothing reloaded the page."""
        if self.b.run("return window.__uiTestMarker || null;") != self.marker:
            raise Failure("the page was reloaded (the marker set at load is gone)")

    def login(self, tok, expect_who=None):
        self.b.set_hash("#/login")
        self.b.fill('[data-test="login-token"]', tok)
        self.b.wait_for('[data-test="login-submit"]').click()
        who = self.b.wait_for('[data-test="whoami"]', "the logged-in token's name in the header")
        stored = self.b.run("return localStorage.getItem('mesh.token');")
        if stored != tok:
            raise Failure("the token is not kept in localStorage after login")
        if expect_who and expect_who not in who.text():
            raise Failure(f"header shows {who.text()!r}, expected {expect_who!r}")

    def attr_of(self, selector, name):
        els = self.b.find_all(selector)
        return els[0].attr(name) if els else None

    def click(self, selector):
        self.b.wait_for(selector).click()

    # === the steps ===

    def run(self):
        self.step("1. log in with the management token")
        self.b.get(self.ui)
        self.b.wait_for("#main h1", "the UI to render")
        self.marker = uuid.uuid4().hex
        self.b.run("window.__uiTestMarker = arguments[0];", self.marker)
        self.login(self.a.token)
        self.no_page_errors()
        self.ok("logged in; token kept in localStorage")

        self.step("2. a service registered after the page loaded appears without reload")
        self.b.set_hash("#/services")
        owned_row = f'[data-test="service-row"][data-service="{self.a.owned_service}"]'
        self.b.wait_for(owned_row, "the owned service's row")
        owner = self.attr_of(f'{owned_row} [data-test="owner"]', "data-owner") or ""
        if not owner.startswith("file:") or not owner.endswith(self.a.owned_file):
            raise Failure(f"the owned service's row shows owner {owner!r}, expected its mesh.d file {self.a.owned_file}")
        # file:<node>:<path>: the node whose agent owns (and reloads) the file.
        self.owning_node = owner[len("file:"):-len(self.a.owned_file)].rstrip(":")
        if not self.owning_node:
            raise Failure(f"the owner {owner!r} names no node")
        self.api.call("PUT", "/v1/agent/service/register", {
            "Name": self.svc, "ID": f"{self.svc}-1", "Port": 9999, "Tags": ["uitest", "v1"], "Meta": {"team": "ui"},
            "Check": {"CheckID": self.check_id, "Name": "ui test ttl", "TTL": "10m", "Status": "passing"},
        })
        row = f'[data-test="service-row"][data-service="{self.svc}"]'
        self.b.wait_for(row, f"row of {self.svc} registered after load")
        self.wait("the new row to be passing", lambda: self.attr_of(row, "data-status") == "passing")
        count = self.b.find(f'{row} [data-test="instance-count"]').text()
        if count != "1":
            raise Failure(f"the new row shows {count!r} instances, expected 1")
        self.same_page()
        self.ok(f"{self.svc} appeared live")
        self.shot("services")

        self.step("3. a check turned critical changes colour live")
        self.b.find(f'{row} [data-test="service-link"]').click()
        status = f'[data-test="check-status"][data-check="{self.check_id}"]'
        self.wait("the check to show passing", lambda: self.attr_of(status, "data-status") == "passing")
        before = self.b.find(status).css("background-color")
        self.api.call("PUT", f"/v1/agent/check/fail/{self.check_id}?note=failed+by+the+ui+test")
        self.wait("the check to turn critical on screen", lambda: self.attr_of(status, "data-status") == "critical")
        el = self.b.find(status)
        after = el.css("background-color")
        if "status-critical" not in (el.attr("class") or ""):
            raise Failure(f"critical check lacks the status-critical class: {el.attr('class')!r}")
        if after == before or rgb(after) != CRITICAL_RGB:
            raise Failure(f"check colour went {before} -> {after}, expected {CRITICAL_RGB}")
        inst = f'[data-test="instance"][data-instance="{self.svc}-1"]'
        self.wait("the instance to turn critical", lambda: self.attr_of(inst, "data-status") == "critical")
        self.same_page()
        self.ok(f"check colour {before} -> {after} without reload")
        self.shot("service-critical")
        self.b.set_hash("#/services")
        self.wait("the services row to turn critical", lambda: self.attr_of(row, "data-status") == "critical")
        self.ok("services list row turned critical")

        self.step("4a. create a KV entry in the UI, read it back; CAS conflict shown")
        self.b.set_hash("#/kv/")
        self.b.fill('[data-test="kv-new-key"]', self.kv_key)
        self.b.fill('[data-test="kv-new-value"]', "hello from the UI")
        self.click('[data-test="kv-create"]')
        value = self.b.wait_for('[data-test="kv-value"]', "the key editor")
        self.wait("the editor to show the value", lambda: value.prop("value") == "hello from the UI")
        status, raw = self.api.raw(f"/v1/kv/{self.kv_key}?raw")
        if status != 200 or raw != "hello from the UI":
            raise Failure(f"KV read back: HTTP {status} {raw!r}")
        self.ok("created through the UI and read back through the API")
        # Edit in the UI while someone else writes the key: saving must be refused, not overwrite.
        value.clear()
        value.type("edited in the UI")
        self.api.call("PUT", f"/v1/kv/{self.kv_key}", b"changed behind the UI's back")
        self.b.wait_for('[data-test="kv-stale"]:not([hidden])', "the 'changed on the server' warning")
        self.click('[data-test="kv-save"]')
        msg = '[data-test="kv-msg"]'
        self.wait("the CAS conflict message", lambda: "conflict" in (self.attr_of(msg, "class") or ""))
        if "Conflict" not in self.b.find(msg).text():
            raise Failure(f"conflict message: {self.b.find(msg).text()!r}")
        status, raw = self.api.raw(f"/v1/kv/{self.kv_key}?raw")
        if raw != "changed behind the UI's back":
            raise Failure(f"a CAS save overwrote a concurrent change: {raw!r}")
        self.shot("kv-conflict")
        self.click('[data-test="kv-reload"]')
        self.wait("the editor to load the server's value", lambda: value.prop("value") == "changed behind the UI's back")
        value.clear()
        value.type("second edit")
        self.click('[data-test="kv-save"]')
        self.wait("the save to succeed", lambda: "ok" in (self.attr_of(msg, "class") or "").split())
        status, raw = self.api.raw(f"/v1/kv/{self.kv_key}?raw")
        if raw != "second edit":
            raise Failure(f"KV after a clean save: {raw!r}")
        self.ok("CAS conflict shown and nothing overwritten; a fresh save went through")
        self.b.set_hash(f"#/kv/{self.kv_key.split('/')[0]}/")
        self.b.wait_for(f'[data-test="kv-row"][data-key="{self.kv_key}"]', "the key in its folder")
        self.shot("kv")

        self.step("4b. create intentions (L4 and L7) in the UI, read them back")
        self.b.set_hash("#/intentions/new")
        self.b.fill('[data-test="ixn-source"]', self.ixn_src)
        self.b.fill('[data-test="ixn-destination"]', self.svc)
        self.b.choose('[data-test="ixn-mode"]', "l4")
        self.b.choose('[data-test="ixn-action"]', "deny")
        self.b.fill('[data-test="ixn-description"]', "made by the UI test")
        self.click('[data-test="ixn-save"]')
        self.b.wait_for(f'[data-test="intention-row"][data-source="{self.ixn_src}"]', "the new intention in the list")
        got = self.api.call("GET", f"/v1/connect/intentions/exact?source={self.ixn_src}&destination={self.svc}")
        if got.get("Action") != "deny" or got.get("Description") != "made by the UI test" or got.get("Owner") != "api":
            raise Failure(f"intention read back: {got}")
        self.ok("L4 deny intention created and read back")
        self.b.set_hash("#/intentions/new")
        self.b.fill('[data-test="ixn-source"]', self.l7_src)
        self.b.fill('[data-test="ixn-destination"]', self.svc)
        self.b.choose('[data-test="ixn-mode"]', "l7")
        self.click('[data-test="perm-add"]')
        self.b.choose('[data-test="perm-action"]', "allow")
        self.b.choose('[data-test="perm-path-kind"]', "PathPrefix")
        self.b.fill('[data-test="perm-path"]', "/api")
        self.b.fill('[data-test="perm-methods"]', "get post")
        self.click('[data-test="perm-header-add"]')
        self.b.fill('[data-test="perm-header-name"]', "x-team")
        self.b.choose('[data-test="perm-header-kind"]', "Exact")
        self.b.fill('[data-test="perm-header-value"]', "edge")
        self.click('[data-test="ixn-save"]')
        self.b.wait_for(f'[data-test="intention-row"][data-source="{self.l7_src}"]', "the L7 intention in the list")
        got = self.api.call("GET", f"/v1/connect/intentions/exact?source={self.l7_src}&destination={self.svc}")
        want = [{"Action": "allow", "HTTP": {"PathPrefix": "/api", "Methods": ["GET", "POST"], "Header": [{"Name": "x-team", "Exact": "edge"}]}}]
        if got.get("Permissions") != want:
            raise Failure(f"L7 permissions read back: {got.get('Permissions')}, want {want}")
        self.ok("L7 intention with path, methods and header created and read back")
        self.b.fill('[data-test="check-source"]', self.ixn_src)
        self.b.fill('[data-test="check-destination"]', self.svc)
        self.click('[data-test="check-run"]')
        result = '[data-test="check-result"]'
        self.wait("the check tool's verdict", lambda: self.attr_of(result, "data-allowed") == "false")
        if self.ixn_src not in self.b.find(result).text():
            raise Failure(f"the check tool does not name the deciding intention: {self.b.find(result).text()!r}")
        self.ok("'which intention decides' names the deny intention")
        self.shot("intentions")

        self.step("5. the owned service is read-only and its note names the file")
        self.b.set_hash(f"#/services/{urllib.parse.quote(self.a.owned_service, safe='')}")
        note = self.b.wait_for('[data-test="instance"] [data-test="owner-note"]', "the owner note on the owned instance")
        self.wait("the note to name the file", lambda: self.a.owned_file in note.text())
        for card in self.b.find_all('[data-test="instance"]'):
            if not card.find_all('[data-test="owner-note"]'):
                raise Failure(f"instance {card.attr('data-instance')} of the owned service has no owner note")
            if card.find_all('[data-test="service-deregister"]'):
                raise Failure(f"instance {card.attr('data-instance')} of the owned service offers Deregister")
        self.ok(f"owned service shows: {note.text()!r}")
        self.shot("service-owned")

        self.step("7. screenshots of the main views")
        for name, hash_, ready in [
            ("nodes", "#/nodes", '[data-test="node-row"]'),
            ("cluster", "#/cluster", '[data-test="raft-peer"]'),
            ("ca", "#/ca", '[data-test="ca-root"]'),
            ("config", "#/config", '[data-test="config-ok"]'),
            ("acl", "#/acl/tokens", '[data-test="token-row"]'),
        ]:
            self.b.set_hash(hash_)
            self.b.wait_for(ready, f"the {name} view")
            if name == "config":
                self.config_all_agents()
            self.no_page_errors()
            self.ok(f"{name} view rendered: {self.shot(name)}")

        self.step("6. a limited token sees which permission it lacks")
        self.click('[data-test="logout"]')
        self.b.wait_for('[data-test="login-token"]', "the login form after logout")
        if self.b.run("return localStorage.getItem('mesh.token');") is not None:
            raise Failure("logout left the token in localStorage")
        self.login(self.a.limited_token)
        self.b.set_hash("#/acl/tokens")
        denied = self.b.wait_for('[data-test="denied"]', "the denied message on the ACL view")
        if denied.attr("data-permission") != "acl:read" or "acl:read" not in denied.text():
            raise Failure(f"ACL view denial does not name acl:read: {denied.text()!r}")
        self.ok(f"ACL view: {denied.text().splitlines()[0]!r}")
        self.shot("denied-acl")
        self.b.set_hash(f"#/kv/{self.kv_key}")
        denied = self.b.wait_for('[data-test="denied"]', "the denied message on the KV view")
        if "key:read" not in denied.text():
            raise Failure(f"KV denial does not name key:read: {denied.text()!r}")
        self.ok(f"KV view: {denied.text().splitlines()[0]!r}")
        self.shot("denied-kv")
        self.b.set_hash("#/config")
        denied = self.b.wait_for('[data-test="config-agents"] [data-test="denied"]', "the denied message on the All agents table")
        if denied.attr("data-permission") != "node:read" or "node:read" not in denied.text():
            raise Failure(f"All agents denial does not name node:read: {denied.text()!r}")
        self.ok(f"mesh.d All agents: {denied.text().splitlines()[0]!r}")
        self.shot("denied-config-agents")
        self.b.set_hash("#/services")
        self.b.wait_for(f'[data-test="service-row"][data-service="{self.svc}"]', "services with service:read")
        self.no_page_errors()
        self.same_page()
        self.ok("services still readable with the limited token")

    def config_all_agents(self):
        """The mesh.d view's All agents table has the owning node's last reload, applied, in the passing colour."""
        row = f'[data-test="agent-row"][data-node="{self.owning_node}"]'
        self.b.wait_for(row, f"the All agents row of {self.owning_node}, which owns {self.a.owned_file}")
        self.wait(f"{self.owning_node}'s row to show applied", lambda: self.attr_of(row, "data-outcome") == "applied")
        outcome = self.b.find(f'{row} [data-test="agent-outcome"]')
        if outcome.text() != "applied":
            raise Failure(f"{self.owning_node}'s outcome cell shows {outcome.text()!r}, expected 'applied'")
        colour = self.b.find(f'{row} [data-test="agent-outcome"] .badge').css("background-color")
        if rgb(colour) != PASSING_RGB:
            raise Failure(f"the 'applied' badge is {colour}, expected {PASSING_RGB}")
        count = self.b.find(f'{row} [data-test="agent-count"]').text()
        if not count.isdigit() or int(count) < 1:
            raise Failure(f"{self.owning_node}'s reload count is {count!r}")
        if self.b.find_all(f'{row} [data-test="agent-error"]'):
            raise Failure(f"{self.owning_node}'s applied reload shows errors")
        changes = self.b.find(f'{row} [data-test="agent-changes"]').text()
        self.ok(f"All agents: {self.owning_node} applied (reload {count}, {changes} change(s))")

    def cleanup(self):
        """Leave the cluster as found (best effort)."""
        for method, path in [
            ("PUT", f"/v1/agent/service/deregister/{self.svc}-1"),
            ("DELETE", f"/v1/connect/intentions/exact?source={self.ixn_src}&destination={self.svc}"),
            ("DELETE", f"/v1/connect/intentions/exact?source={self.l7_src}&destination={self.svc}"),
            ("DELETE", f"/v1/kv/{self.kv_key.split('/')[0]}?recurse"),
        ]:
            try:
                self.api.call(method, path, ok=(200, 404))
            except (Failure, OSError) as e:
                print(f"cleanup: {e}", file=sys.stderr)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--http", required=True, help="agent HTTP address, host:port")
    p.add_argument("--token", required=True, help="management token")
    p.add_argument("--limited-token", required=True, help="a token without acl:read and key:read")
    p.add_argument("--owned-service", required=True, help="a service declared in a mesh.d file")
    p.add_argument("--owned-file", required=True, help="the path of that file")
    p.add_argument("--screenshots", required=True, help="directory for PNG screenshots")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds any one wait may take")
    p.add_argument("--deadline", type=float, default=300.0, help="seconds the whole run may take")
    args = p.parse_args()

    # A deadline or a SIGTERM still ends in the cleanup below (browser, chromedriver, test objects).
    def stop(signum, _frame):
        raise SystemExit(f"FAIL: stopped by signal {signum} (a --deadline of {args.deadline:.0f}s, or killed)")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    watchdog = threading.Timer(args.deadline, lambda: os.kill(os.getpid(), signal.SIGTERM))
    watchdog.daemon = True
    watchdog.start()

    status, _ = http_json("GET", f"http://{args.http}/v1/agent/self", headers={"X-Consul-Token": args.token})
    if status != 200:
        print(f"FAIL: the agent at {args.http} answered /v1/agent/self with HTTP {status}", file=sys.stderr)
        return 1
    started = time.monotonic()
    browser = None
    test = None
    try:
        browser = Browser(args.chromium, args.chromedriver)
        test = UiTest(args, browser)
        test.run()
    except (Failure, Timeout, WebDriverError, OSError, RuntimeError) as e:
        step = test.step_name if test else "starting the browser"
        print(f"FAIL: {step}: {e}", file=sys.stderr)
        if browser and browser.session:
            try:
                print(f"screenshot of the failure: {test.shot('failure')}", file=sys.stderr)
            except (WebDriverError, OSError):
                pass
        return 1
    finally:
        if test:
            test.cleanup()
        if browser:
            browser.close()
    print(f"PASS: mesh UI ({time.monotonic() - started:.1f}s); screenshots in {args.screenshots}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
