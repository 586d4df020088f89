#!/usr/bin/env python3
"""Run the shell blocks of the newcomer docs, in order, as a reader would.

    MESH_BIN=/var/tmp/mesh-target/debug/mesh \
    MESH_PROVIDER_BIN=/var/tmp/mesh-target/debug/terraform-provider-mesh \
    python3 tests/docs/run_docs.py [docs/getting-started.md ...]

Without arguments it runs DEFAULT_DOCS. install.md always runs first when a
later doc is asked for, because the others use the Terraform provider the
way install.md installs it.

What runs: every fenced block whose info string is sh, bash or shell. The
blocks of one doc share a shell session, as if typed into one terminal:
variables, exported variables, functions and the working directory carry
from one block to the next (each block still runs in a fresh
`bash -euo pipefail`, so a failing command fails its block). A doc starts in
an empty directory of its own; HOME is a fresh directory shared by all docs
(so ~/.terraformrc and ~/.terraform.d land there), TMPDIR too, and the
environment is minimal: no TF_*, MESH_* or CONSUL_* from the caller, and
CHECKPOINT_DISABLE=1 so terraform never calls home.

`mesh` (MESH_BIN), `terraform-provider-mesh` (MESH_PROVIDER_BIN) and the
python3 running this script are first on PATH.

Annotations: an HTML comment on the line right before a block's opening
fence, invisible when the markdown is rendered:

    <!-- docs-test: skip -->                  not run (e.g. needs sudo or the network)
    <!-- docs-test: background ready="CMD" --> a long-running command (a reader's
                                              second terminal): started in its own
                                              process group, then CMD is retried
                                              until it succeeds (bounded); $DOCS_TEST_LOG
                                              names the file its output goes to
    <!-- docs-test: expect-fail -->           the block must fail (status=N: with that exit code)
    <!-- docs-test: eventually -->            retried until it passes (the state it
                                              checks converges asynchronously); every
                                              try starts from the session state the
                                              block started from
    <!-- docs-test: instead=release-files --> not run; instead the runner puts
                                              release-shaped files (names from
                                              .goreleaser.yml) in the working directory

Attributes combine: `eventually expect-fail`, `timeout=90` (seconds; the
whole retry budget for eventually/ready), `contains="text"` (the output must
contain the text). A doc-level line `<!-- docs-test: ports="9090 9191" -->`
adds TCP ports on 127.0.0.1 that must be free before the run, besides mesh's
default ports on 127.0.0.1-3 (the walkthroughs use the defaults).

Every process group started is killed (TERM, then KILL) when its doc ends,
and on failure or a signal; the temp dir is removed (--keep keeps it).
No bare sleeps: waits are bounded retries of a condition.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DOCS = [
    "docs/install.md",
    "docs/getting-started.md",
    "docs/cluster.md",
    "docs/operations.md",
    "docs/hardening.md",
]
SHELL_LANGS = {"sh", "bash", "shell"}
# mesh's default ports (docs/ports.md); the walkthroughs use them on
# 127.0.0.1 (dev agent) and 127.0.0.1-3 (the cluster).
DEFAULT_TCP = [8300, 8301, 8500, 8501, 8502, 8600]
DEFAULT_UDP = [8301, 8600]
LOOPBACKS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

BLOCK_TIMEOUT = 60.0  # a normal block
RETRY_BUDGET = 30.0  # eventually / ready
RETRY_INTERVAL = 0.25
STOP_GRACE = 5.0

ANNOTATION = re.compile(r"^\s*<!--\s*docs-test:(.*?)-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
ATTR = re.compile(r"""([a-z-]+)(?:=(?:"([^"]*)"|'([^']*)'|(\S+)))?""")
KNOWN = {"skip", "background", "expect-fail", "eventually", "instead",
         "timeout", "ready", "contains", "status", "ports"}


class DocError(Exception):
    """A malformed doc or annotation."""


class BlockFailed(Exception):
    pass


@dataclass
class Block:
    doc: Path
    line: int  # line of the first command (1-based)
    code: str
    attrs: dict = field(default_factory=dict)


def parse_attrs(text: str, where: str) -> dict:
    attrs = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        m = ATTR.match(text, pos)
        if not m or m.end() == pos:
            raise DocError(f"{where}: cannot read annotation at {text[pos:]!r}")
        name = m.group(1)
        if name not in KNOWN:
            raise DocError(f"{where}: unknown annotation {name!r} (known: {', '.join(sorted(KNOWN))})")
        value = next((g for g in m.group(2, 3, 4) if g is not None), True)
        attrs[name] = value
        pos = m.end()
    return attrs


def parse_doc(path: Path) -> tuple[list[Block], list[int]]:
    """The doc's shell blocks and its extra ports."""
    lines = path.read_text().splitlines()
    blocks, ports = [], []
    pending = None  # (attrs, line) of an annotation waiting for its block
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{path.relative_to(REPO)}:{i + 1}"
        ann = ANNOTATION.match(line)
        if ann:
            attrs = parse_attrs(ann.group(1), where)
            if "ports" in attrs:
                if len(attrs) != 1:
                    raise DocError(f"{where}: `ports` stands alone")
                ports += [int(p) for p in str(attrs["ports"]).split()]
            else:
                if pending:
                    raise DocError(f"{where}: two annotations in a row")
                pending = (attrs, where)
            i += 1
            continue
        fence = FENCE.match(line)
        if fence:
            indent, marker, lang = fence.groups()
            body = []
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith(marker):
                body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
                j += 1
            if j == len(lines):
                raise DocError(f"{where}: unclosed code fence")
            if lang in SHELL_LANGS:
                attrs = pending[0] if pending else {}
                blocks.append(Block(path, i + 2, "\n".join(body) + "\n", attrs))
            elif pending:
                raise DocError(f"{pending[1]}: annotation before a non-shell block ({lang or 'no language'})")
            pending = None
            i = j + 1
            continue
        if pending and line.strip():
            raise DocError(f"{pending[1]}: annotation not directly followed by a code block")
        i += 1
    if pending:
        raise DocError(f"{pending[1]}: annotation at the end of the doc")
    return blocks, ports


# --- processes ---------------------------------------------------------------

def become_subreaper():
    """Be the parent of orphans from our blocks (a block's `cmd &` outlives
    its shell), so they are reaped at once: a doc's `kill -0 PID` loop then
    ends when the process does, not when init gets round to reaping it."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


class Processes:
    """Every process group this run started."""

    def __init__(self):
        self.groups: list[tuple[subprocess.Popen, str]] = []

    def reap_orphans(self):
        """Reap exited children that are not our Popen objects' own."""
        ours = {p.pid for p, _ in self.groups}
        me = os.getpid()
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) in ours:
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] == "Z" and int(fields[1]) == me:
                try:
                    os.waitpid(int(entry), os.WNOHANG)
                except ChildProcessError:
                    pass

    def wait(self, p: subprocess.Popen, timeout: float):
        """Popen.wait, reaping orphans meanwhile; None on timeout."""
        deadline = time.monotonic() + timeout
        while p.poll() is None:
            self.reap_orphans()
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        return p.returncode

    def start(self, argv, *, env, cwd, log: Path, what: str) -> subprocess.Popen:
        out = open(log, "ab")
        try:
            p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        finally:
            out.close()
        self.groups.append((p, what))
        return p

    def _group_alive(self, p: subprocess.Popen) -> bool:
        p.poll()  # reap the leader, and orphans, so a dead group really is gone
        self.reap_orphans()
        try:
            os.killpg(p.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def forget_if_gone(self, p: subprocess.Popen):
        """Drop a finished group that left nothing running (so its ID, free
        for reuse, is never signalled later)."""
        if not self._group_alive(p):
            self.groups = [(q, w) for q, w in self.groups if q is not p]

    def stop_all(self):
        """TERM every group, wait (bounded), then KILL what is left."""
        for p, _ in self.groups:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(self._group_alive(p) for p, _ in self.groups):
            time.sleep(0.05)
        for p, what in self.groups:
            if self._group_alive(p):
                print(f"  (killing {what}: still running {STOP_GRACE:.0f}s after SIGTERM)", flush=True)
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(self._group_alive(p) for p, _ in self.groups):
            time.sleep(0.05)
        self.groups.clear()


# --- ports -------------------------------------------------------------------

def busy_ports(extra_tcp: list[int]) -> list[str]:
    busy = []
    checks = [(ip, port, socket.SOCK_STREAM) for ip in LOOPBACKS for port in DEFAULT_TCP]
    checks += [(ip, port, socket.SOCK_DGRAM) for ip in LOOPBACKS for port in DEFAULT_UDP]
    checks += [("127.0.0.1", port, socket.SOCK_STREAM) for port in extra_tcp]
    for ip, port, kind in checks:
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((ip, port))
        except OSError as e:
            proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
            if e.errno == errno.EADDRNOTAVAIL:
                busy.append(f"{ip} is not a local address here (the cluster walkthrough needs 127.0.0.2 and 127.0.0.3)")
            else:
                busy.append(f"{ip}:{port}/{proto}")
        finally:
            s.close()
    return sorted(set(busy))


def wait_ports_free(extra: list[int], budget: float) -> list[str]:
    deadline = time.monotonic() + budget
    while True:
        busy = busy_ports(extra)
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(RETRY_INTERVAL)


# --- release-shaped files ----------------------------------------------------

def goreleaser_names() -> dict:
    """Archive, checksum and provider binary names from .goreleaser.yml."""
    text = (REPO / ".goreleaser.yml").read_text()

    def section(name):
        m = re.search(rf"^{name}:\n((?:[ \t]+.*\n|\s*\n)*)", text, re.M)
        if not m:
            raise DocError(f".goreleaser.yml: no `{name}:` section")
        return m.group(1)

    def items(body):
        return re.split(r"^\s*-\s+(?=id:)", body, flags=re.M)[1:]

    def field_of(item, key):
        m = re.search(rf"^\s*{key}:\s*\"?([^\"\n]+?)\"?\s*$", item, re.M)
        return m.group(1) if m else None

    names = {}
    for item in items(section("archives")):
        names["archive:" + field_of(item, "id")] = field_of(item, "name_template")
    for item in items(section("builds")):
        names["binary:" + field_of(item, "id")] = field_of(item, "binary")
    names["checksum"] = field_of(section("checksum"), "name_template")
    for key in ("archive:mesh", "archive:terraform-provider-mesh", "checksum",
                "binary:terraform-provider-mesh"):
        if not names.get(key):
            raise DocError(f".goreleaser.yml: cannot find {key}")
    return names


def render(template: str, version: str, arch: str) -> str:
    out = template
    for key, value in (("Version", version), ("Os", "linux"), ("Arch", arch)):
        out = re.sub(r"\{\{\s*\." + key + r"\s*\}\}", value, out)
    if "{{" in out:
        raise DocError(f".goreleaser.yml: cannot render {template!r}")
    return out


def stage_release(dest: Path, mesh_bin: Path, provider_bin: Path):
    """Files as a release page offers them, built from the given binaries.

    The mesh archive holds a small `mesh` that execs MESH_BIN (a debug
    build is half a gigabyte: compressing it would take most of the time
    budget); the provider zip holds the real provider, stored.
    """
    version = mesh_version(mesh_bin)
    arch = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[os.uname().machine]
    names = goreleaser_names()
    stand_in = dest / ".mesh-stand-in"
    stand_in.write_text(f"#!/bin/sh\nexec {shlex.quote(str(mesh_bin))} \"$@\"\n")
    stand_in.chmod(0o755)
    tarball = dest / (render(names["archive:mesh"], version, arch) + ".tar.gz")
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tar:
        tar.add(stand_in, arcname="mesh")
        for extra in ("README.md", "LICENSE"):
            if (REPO / extra).exists():
                tar.add(REPO / extra, arcname=extra)
    stand_in.unlink()
    provider_zip = dest / (render(names["archive:terraform-provider-mesh"], version, arch) + ".zip")
    with zipfile.ZipFile(provider_zip, "w", zipfile.ZIP_STORED) as z:
        info = zipfile.ZipInfo(render(names["binary:terraform-provider-mesh"], version, arch))
        info.external_attr = 0o755 << 16
        with open(provider_bin, "rb") as src, z.open(info, "w", force_zip64=True) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if (REPO / "LICENSE").exists():
            z.write(REPO / "LICENSE", "LICENSE")
    sums = dest / render(names["checksum"], version, arch)
    lines = []
    for f in (tarball, provider_zip):
        h = hashlib.sha256()
        with open(f, "rb") as src:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{h.hexdigest()}  {f.name}\n")
    sums.write_text("".join(lines))
    return [tarball.name, provider_zip.name, sums.name]


def mesh_version(mesh_bin: Path) -> str:
    out = subprocess.run([str(mesh_bin), "version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"v?(\d+\.\d+\.\d+\S*)", out)
    if not m:
        raise DocError(f"cannot read a version from `mesh version`: {out!r}")
    return m.group(1)


# --- the session -------------------------------------------------------------

# Variables bash owns (or this runner does), never carried between blocks
# (a POSIX extended regular expression: bash matches it).
W = "[A-Za-z0-9_]"
BASH_OWN = (
    rf"^(BASH{W}*|EUID|PPID|SHELLOPTS|UID|SHLVL|FUNCNAME|GROUPS|PIPESTATUS|LINENO|"
    rf"RANDOM|SRANDOM|SECONDS|EPOCHREALTIME|EPOCHSECONDS|HISTCMD|OPT{W}+|COMP_{W}+|"
    rf"DIRSTACK|_|PWD|OLDPWD|IFS|PS[0-9]|HOSTNAME|HOSTTYPE|MACHTYPE|OSTYPE|COLUMNS|"
    rf"LINES|DOCS_TEST_{W}+|__docs_{W}+)$")

# Appended to each block: on exit, write what the next block starts from.
SAVE_STATE = r"""
__docs_save() {
  local __docs_rc=$? __docs_v
  {
    for __docs_v in $(compgen -v); do
      [[ $__docs_v =~ $__docs_own ]] && continue
      [[ "$(declare -p "$__docs_v" 2>/dev/null)" =~ ^declare\ -[a-zA-Z-]*r ]] && continue
      declare -p "$__docs_v" 2>/dev/null
    done
    declare -f | sed '/^__docs_save ()/,/^}/d'
    printf 'cd %q\n' "$PWD"
  } > "$DOCS_TEST_STATE.next" && mv "$DOCS_TEST_STATE.next" "$DOCS_TEST_STATE"
  return $__docs_rc
}
trap __docs_save EXIT
"""


class Session:
    def __init__(self, root: Path, env: dict, procs: Processes):
        self.root = root
        self.env = env
        self.procs = procs
        self.logs: list[tuple[str, Path]] = []
        self.count = 0

    def start_doc(self, name: str) -> Path:
        cwd = self.root / "work" / name
        cwd.mkdir(parents=True)
        self.state = self.root / f"state-{name}.sh"
        self.state.write_text(f"cd {shlex.quote(str(cwd))}\n")
        self.cwd = cwd
        return cwd

    def script(self, code: str, save: bool) -> str:
        """The block's code after the session's state (and, for blocks
        that change it, the hook that saves it again)."""
        prelude = 'source "$DOCS_TEST_STATE"\n'
        if save:
            prelude = f"__docs_own={shlex.quote(BASH_OWN)}\n" + prelude + SAVE_STATE
        return prelude + code

    def run(self, code: str, timeout: float, save: bool = True, extra_env=None) -> tuple[int, str]:
        self.count += 1
        log = self.root / "logs" / f"block-{self.count}.log"
        env = dict(self.env, DOCS_TEST_STATE=str(self.state), **(extra_env or {}))
        p = self.procs.start(["bash", "-euo", "pipefail", "-c", self.script(code, save)],
                             env=env, cwd=self.cwd, log=log, what="a block")
        rc = self.procs.wait(p, timeout)
        if rc is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        self.procs.forget_if_gone(p)
        out = log.read_text(errors="replace")
        return rc, out

    def background(self, code: str, what: str) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        log = self.root / "logs" / f"background-{self.count}.log"
        env = dict(self.env, DOCS_TEST_STATE=str(self.state))
        p = self.procs.start(["bash", "-euo", "pipefail", "-c", self.script(code, save=False)],
                             env=env, cwd=self.cwd, log=log, what=what)
        self.logs.append((what, log))
        return p, log


def passed(rc, out, attrs) -> tuple[bool, str]:
    if rc is None:
        return False, "timed out"
    if "expect-fail" in attrs:
        want = attrs.get("status")
        if rc == 0:
            return False, "succeeded, but the doc says it fails"
        if want not in (None, True) and rc != int(want):
            return False, f"exit status {rc}, the doc says {want}"
    elif rc != 0:
        return False, f"exit status {rc}"
    if "contains" in attrs and str(attrs["contains"]) not in out:
        return False, f"output does not contain {attrs['contains']!r}"
    return True, ""


def run_block(session: Session, b: Block, mesh_bin: Path, provider_bin: Path):
    a = b.attrs
    where = f"{b.doc.relative_to(REPO)}:{b.line}"
    start = time.monotonic()
    if "skip" in a:
        print(f"  {where} skipped", flush=True)
        return
    if "instead" in a:
        if a["instead"] != "release-files":
            raise DocError(f"{where}: unknown instead={a['instead']}")
        files = stage_release(session.cwd, mesh_bin, provider_bin)
        print(f"  {where} instead: staged {', '.join(files)}", flush=True)
        return
    timeout = float(a.get("timeout", RETRY_BUDGET if ("eventually" in a or "background" in a) else BLOCK_TIMEOUT))
    if "background" in a:
        first = b.code.strip().splitlines()[0]
        p, log = session.background(b.code, f"`{first}` ({where})")
        ready = a.get("ready")
        if not ready or ready is True:
            raise DocError(f"{where}: background needs ready=\"command\"")
        deadline = time.monotonic() + timeout
        while True:
            if p.poll() is not None:
                fail(session, b, f"exited with status {p.returncode} before it was ready",
                     log.read_text(errors="replace"))
            rc, out = session.run(ready, timeout=max(1.0, deadline - time.monotonic()),
                                  save=False, extra_env={"DOCS_TEST_LOG": str(log)})
            if rc == 0:
                break
            if time.monotonic() > deadline:
                fail(session, b, f"not ready within {timeout:.0f}s (ready check: {ready})",
                     log.read_text(errors="replace") + "\n--- last ready check ---\n" + out)
            time.sleep(RETRY_INTERVAL)
        print(f"  {where} started in the background, ready after {time.monotonic() - start:.1f}s", flush=True)
        return
    if "eventually" in a:
        deadline = time.monotonic() + timeout
        tries = 0
        before = session.state.read_text()
        while True:
            tries += 1
            # Every try starts from the state the block started from.
            session.state.write_text(before)
            rc, out = session.run(b.code, timeout=max(1.0, min(20.0, deadline - time.monotonic())))
            ok, why = passed(rc, out, a)
            if ok:
                break
            if time.monotonic() > deadline:
                fail(session, b, f"{why}, still after {tries} tries in {timeout:.0f}s", out)
            time.sleep(RETRY_INTERVAL)
        print(f"  {where} ok after {tries} tries ({time.monotonic() - start:.1f}s)", flush=True)
        return
    rc, out = session.run(b.code, timeout=timeout)
    ok, why = passed(rc, out, a)
    if not ok:
        fail(session, b, why if rc is not None else f"timed out after {timeout:.0f}s", out)
    print(f"  {where} ok ({time.monotonic() - start:.1f}s)", flush=True)


def fail(session: Session, b: Block, why: str, out: str):
    msg = [f"\nFAILED: {b.doc.relative_to(REPO)}, block at line {b.line}: {why}",
           "--- command ---", b.code.rstrip(), "--- output ---", out.rstrip() or "(none)"]
    for what, log in session.logs:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        msg += [f"--- last lines of {what} ---", *tail]
    raise BlockFailed("\n".join(msg))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("docs", nargs="*", help=f"docs to run (default: {' '.join(DEFAULT_DOCS)})")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, working dirs)")
    args = ap.parse_args()

    bins = {}
    for var in ("MESH_BIN", "MESH_PROVIDER_BIN"):
        value = os.environ.get(var)
        if not value or not os.access(value, os.X_OK):
            print(f"run_docs: set {var} to an executable (now {value!r})", file=sys.stderr)
            return 2
        bins[var] = Path(value).resolve()
    for tool in ("terraform", "dig", "curl"):
        if not shutil.which(tool):
            print(f"run_docs: `{tool}` is not on PATH; the docs use it", file=sys.stderr)
            return 2

    docs = [REPO / d for d in (args.docs or DEFAULT_DOCS)]
    install = REPO / "docs/install.md"
    if install not in docs:
        docs.insert(0, install)
    try:
        parsed = [(d, *parse_doc(d)) for d in docs]
    except (DocError, OSError) as e:
        print(f"run_docs: {e}", file=sys.stderr)
        return 2

    extra_ports = sorted({p for _, _, ports in parsed for p in ports})
    busy = busy_ports(extra_ports)
    if busy:
        print("run_docs: the walkthroughs use mesh's default ports, and these are not free:\n  "
              + "\n  ".join(busy)
              + "\nStop what listens there (`ss -ltnup` names it) and run again.", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="mesh-docs-"))
    become_subreaper()
    procs = Processes()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    started = time.monotonic()
    status = 0
    try:
        bindir = root / "bin"
        for d in (bindir, root / "home", root / "tmp", root / "logs"):
            d.mkdir()
        (bindir / "mesh").symlink_to(bins["MESH_BIN"])
        (bindir / "terraform-provider-mesh").symlink_to(bins["MESH_PROVIDER_BIN"])
        (bindir / "python3").symlink_to(sys.executable)
        env = {
            "PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "USER": os.environ.get("USER", "docs"),
            "LOGNAME": os.environ.get("LOGNAME", "docs"),
            "SHELL": "/bin/bash",
            "LANG": "C.UTF-8",
            "TERM": "dumb",
            "CHECKPOINT_DISABLE": "1",
        }
        for tool in ("terraform", "dig", "curl"):
            where = Path(shutil.which(tool)).parent
            if str(where) not in env["PATH"].split(":"):
                env["PATH"] += f":{where}"
        session = Session(root, env, procs)
        for doc, blocks, _ in parsed:
            name = doc.stem
            print(f"{doc.relative_to(REPO)}: {len(blocks)} shell blocks", flush=True)
            session.start_doc(name)
            t0 = time.monotonic()
            try:
                for b in blocks:
                    run_block(session, b, bins["MESH_BIN"], bins["MESH_PROVIDER_BIN"])
            finally:
                procs.stop_all()
                session.logs.clear()
            busy = wait_ports_free(extra_ports, 15.0)
            if busy:
                raise BlockFailed(f"after {doc.name} its processes were stopped, "
                                  f"but these ports are still taken: {', '.join(busy)}")
            print(f"  {doc.name} passed in {time.monotonic() - t0:.1f}s", flush=True)
        print(f"all docs passed in {time.monotonic() - started:.1f}s")
    except BlockFailed as e:
        print(e, file=sys.stderr)
        status = 1
    except KeyboardInterrupt as e:
        print(f"\nrun_docs: interrupted ({e}); cleaning up", file=sys.stderr)
        status = 130
    except DocError as e:
        print(f"run_docs: {e}", file=sys.stderr)
        status = 2
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        procs.stop_all()
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
