#!/usr/bin/env python3
"""Checks the goreleaser config against what the release needs.

    scripts/release-check.py [CONFIG]      (default: .goreleaser.yml)

The Terraform Registry's rules for a provider release, and what goreleaser's
rust builder needs to find the binaries cargo builds. Exits 0 when every rule
holds; otherwise prints every violation, each tagged with the key it is about,
and exits 1 (2 when the config cannot be read at all).

Paths in the config (extra_files globs) are resolved against the repository
root, where goreleaser runs, whatever directory CONFIG is in. Needs PyYAML: if
`import yaml` fails, the script installs it once with
`python3 -m pip install --user pyyaml` and says so on stderr.
"""

import glob
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROVIDER = "terraform-provider-mesh"
PROVIDER_PACKAGE = "terraform-provider-mesh"
MESH_PACKAGE = "mesh"
PROVIDER_PLATFORMS = {(o, a) for o in ("linux", "darwin", "windows") for a in ("amd64", "arm64")}
MESH_PLATFORMS = {("linux", "amd64"), ("linux", "arm64")}
PROVIDER_ARCHIVE = PROVIDER + "_{{ .Version }}_{{ .Os }}_{{ .Arch }}"
MESH_ARCHIVE = "mesh_{{ .Version }}_{{ .Os }}_{{ .Arch }}"
CHECKSUM_NAME = PROVIDER + "_{{ .Version }}_SHA256SUMS"
MANIFEST_NAME = PROVIDER + "_{{ .Version }}_manifest.json"
MANIFEST_SOURCE = "provider/terraform-registry-manifest.json"
TFPLUG_HANDSHAKE = "provider/tfplug/src/serve.rs"
# goreleaser's rust builder copies <dir>/target/<triple>/release/<binary>.
GORELEASER_TARGET_DIR = "target"
NO_DEBUG = {"false", "0", "none"}
STRIPPED = {"debuginfo", "symbols", "true"}


def load_yaml():
    try:
        import yaml  # noqa: F401
    except ImportError:
        # In a virtualenv pip installs into it; elsewhere into the user's site.
        in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet"] + ([] if in_venv else ["--user"]) + ["pyyaml"]
        print(f"release-check: PyYAML is missing; installing it: {' '.join(cmd[2:])}", file=sys.stderr)
        if subprocess.run(cmd).returncode != 0:
            print(
                "release-check: could not install PyYAML; install it (apt-get install python3-yaml, or pip install pyyaml) and run again",
                file=sys.stderr,
            )
            sys.exit(2)
        import importlib
        import site

        importlib.invalidate_caches()
        user_site = site.getusersitepackages()
        if not in_venv and user_site not in sys.path:
            sys.path.append(user_site)
    import yaml

    return yaml


def load_toml(path):
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        return None
    with open(path, "rb") as f:
        return tomllib.load(f)


def norm(template):
    """A template with the spaces inside {{ }} made uniform."""
    return re.sub(r"\{\{\s*(.*?)\s*\}\}", r"{{ \1 }}", str(template or "")).strip()


def as_list(v):
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def env_map(build):
    out = {}
    for e in as_list(build.get("env")):
        k, _, v = str(e).partition("=")
        out[k] = v
    return out


def package_of(build):
    flags = [str(f) for f in as_list(build.get("flags"))]
    for i, f in enumerate(flags):
        for p in ("--package=", "-p="):
            if f.startswith(p):
                return f[len(p):]
        if f in ("--package", "-p") and i + 1 < len(flags):
            return flags[i + 1]
    return None


def goreleaser_platform(triple):
    """(os, arch) as goreleaser's rust builder names them for `triple`."""
    parts = triple.split("-")
    if len(parts) < 3:
        return None
    arch = {"x86_64": "amd64", "aarch64": "arm64", "i686": "386"}.get(parts[0], parts[0])
    return parts[2], arch


def cargo_bins():
    """package name -> the executable names cargo builds for it."""
    bins = {}
    ws = load_toml(os.path.join(ROOT, "Cargo.toml"))
    if ws is None:
        return None
    for member in ws.get("workspace", {}).get("members", []):
        path = os.path.join(ROOT, member, "Cargo.toml")
        if not os.path.exists(path):
            continue
        manifest = load_toml(path)
        pkg = manifest.get("package", {}).get("name")
        if not pkg:
            continue
        names = {b.get("name") for b in manifest.get("bin", []) if b.get("name")}
        if os.path.exists(os.path.join(ROOT, member, "src/main.rs")) and not manifest.get("bin"):
            names.add(pkg)
        bins[pkg] = names
    return bins


def release_profile():
    ws = load_toml(os.path.join(ROOT, "Cargo.toml"))
    if ws is None:
        return None
    return ws.get("profile", {}).get("release", {})


def strings_in(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from strings_in(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from strings_in(v, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def tfplug_protocol():
    """The plugin protocol major version tfplug's handshake line announces."""
    try:
        src = open(os.path.join(ROOT, TFPLUG_HANDSHAKE), encoding="utf-8").read()
    except OSError:
        return None
    # go-plugin's handshake: CORE-PROTOCOL-VERSION|APP-PROTOCOL-VERSION|...
    m = re.search(r'"1\|(\d+)\|tcp\|', src)
    return m.group(1) if m else None


def extra_file_ok(entries, where, errors, rule):
    """An extra_files entry that ships the registry manifest under its registry name."""
    found = False
    for e in as_list(entries):
        if not isinstance(e, dict):
            continue
        matches = sorted(glob.glob(os.path.join(ROOT, str(e.get("glob", "")))))
        rels = [os.path.relpath(m, ROOT) for m in matches]
        if MANIFEST_SOURCE in rels:
            found = True
            if len(rels) != 1:
                errors.append((rule, f"{where}: glob {e.get('glob')!r} matches {rels}, not only {MANIFEST_SOURCE}"))
            if norm(e.get("name_template")) != MANIFEST_NAME:
                errors.append((rule, f"{where}: the manifest must be named {MANIFEST_NAME!r} (the registry looks for it), got {e.get('name_template')!r}"))
    if not found:
        errors.append((rule, f"{where} must ship {MANIFEST_SOURCE} as {MANIFEST_NAME!r}"))


def check(cfg):
    errors = []  # (rule, message)

    if cfg.get("version") != 2:
        errors.append(("version", f"version must be 2 (goreleaser v2 schema), got {cfg.get('version')!r}"))

    # -- builds -------------------------------------------------------------
    builds = as_list(cfg.get("builds"))
    bins = cargo_bins()
    profile = release_profile()
    provider_builds = [b for b in builds if package_of(b) == PROVIDER_PACKAGE]
    mesh_builds = [b for b in builds if package_of(b) == MESH_PACKAGE]
    if not provider_builds:
        errors.append(("builds", f"no build with --package={PROVIDER_PACKAGE} in its flags"))
    if not mesh_builds:
        errors.append(("builds", f"no build with --package={MESH_PACKAGE} in its flags"))

    for b in builds:
        bid = b.get("id", "?")
        where = f"builds[{bid}]"
        if b.get("builder") != "rust":
            errors.append(("builds.builder", f"{where}: builder must be rust, got {b.get('builder')!r}"))
            continue
        pkg = package_of(b)
        binary = str(b.get("binary", ""))
        if pkg is None:
            errors.append(("builds.flags", f"{where}: flags must name the package (--package=NAME): the workspace has many"))
        elif bins is not None and pkg in bins and binary not in bins[pkg]:
            errors.append(("builds.binary", f"{where}: binary {binary!r} is not a name cargo produces for package {pkg} (its binaries: {sorted(bins[pkg])}); goreleaser copies target/<triple>/release/<binary>"))
        if "--release" not in [str(f) for f in as_list(b.get("flags"))]:
            errors.append(("builds.flags", f"{where}: flags must include --release (goreleaser reads the release directory)"))
        if str(b.get("command", "zigbuild")) != "zigbuild":
            errors.append(("builds.command", f"{where}: command must be zigbuild (cross builds use cargo-zigbuild), got {b.get('command')!r}"))
        env = env_map(b)
        if env.get("CARGO_TARGET_DIR") not in (GORELEASER_TARGET_DIR, "./" + GORELEASER_TARGET_DIR):
            errors.append(("builds.env", f"{where}: env must set CARGO_TARGET_DIR={GORELEASER_TARGET_DIR} (goreleaser reads <dir>/target/<triple>/release/; scripts/env.sh points cargo elsewhere), got {env.get('CARGO_TARGET_DIR')!r}"))
        # No debug info in released binaries: pinned in the build's env, or
        # in the workspace's release profile.
        debug = env.get("CARGO_PROFILE_RELEASE_DEBUG")
        if debug is None and profile is not None and "debug" in profile:
            debug = str(profile["debug"]).lower()
        if debug not in NO_DEBUG:
            errors.append(("builds.env", f"{where}: release binaries must carry no debug info: set CARGO_PROFILE_RELEASE_DEBUG=false in env or debug = false in [profile.release] (now {debug!r})"))
        strip = env.get("CARGO_PROFILE_RELEASE_STRIP")
        if strip is None and profile is not None and "strip" in profile:
            strip = str(profile["strip"]).lower()
        if strip not in STRIPPED:
            errors.append(("builds.env", f"{where}: release binaries must be stripped of debug info: set CARGO_PROFILE_RELEASE_STRIP=debuginfo in env or strip = \"debuginfo\" in [profile.release] (now {strip!r})"))

    for b in provider_builds:
        binary = str(b.get("binary", ""))
        if not binary.startswith(PROVIDER):
            errors.append(("builds.binary", f"builds[{b.get('id')}]: the provider's binary must start with {PROVIDER!r} (Terraform looks for that prefix), got {binary!r}"))

    def platforms(bs):
        out = set()
        for b in bs:
            for t in as_list(b.get("targets")):
                p = goreleaser_platform(str(t))
                if p:
                    out.add(p)
        return out

    missing = PROVIDER_PLATFORMS - platforms(provider_builds)
    if provider_builds and missing:
        errors.append(("builds.targets", f"the provider must build for linux, darwin and windows on amd64 and arm64; missing {sorted('_'.join(p) for p in missing)}"))
    missing = MESH_PLATFORMS - platforms(mesh_builds)
    if mesh_builds and missing:
        errors.append(("builds.targets", f"mesh must build for linux amd64 and arm64; missing {sorted('_'.join(p) for p in missing)}"))

    # -- archives -----------------------------------------------------------
    archives = as_list(cfg.get("archives"))

    def archives_of(bs):
        ids = {b.get("id") for b in bs}
        return [a for a in archives if ids & set(as_list(a.get("ids") or a.get("builds")))]

    def formats(a):
        return [str(f) for f in as_list(a.get("formats") or a.get("format"))]

    provider_archives = archives_of(provider_builds)
    if provider_builds and not provider_archives:
        errors.append(("archives", "no archive takes the provider's build (archives[].ids)"))
    for a in provider_archives:
        where = f"archives[{a.get('id')}]"
        if norm(a.get("name_template")) != PROVIDER_ARCHIVE:
            errors.append(("archives.name_template", f"{where}: the provider's archive must be named {PROVIDER_ARCHIVE!r} (the registry's <name>_<version>_<os>_<arch>.zip), got {a.get('name_template')!r}"))
        if formats(a) != ["zip"]:
            errors.append(("archives.formats", f"{where}: the provider's archives must be zip only, got {formats(a)}"))
        if a.get("format_overrides"):
            errors.append(("archives.formats", f"{where}: format_overrides would make some provider archives not zip"))
        if {b.get("id") for b in mesh_builds} & set(as_list(a.get("ids"))):
            errors.append(("archives.ids", f"{where}: the provider's zips must hold only the provider, not mesh"))
    for a in archives_of(mesh_builds):
        where = f"archives[{a.get('id')}]"
        if norm(a.get("name_template")) != MESH_ARCHIVE:
            errors.append(("archives.name_template", f"{where}: mesh's archive must be named {MESH_ARCHIVE!r}, got {a.get('name_template')!r}"))
        if formats(a) != ["tar.gz"]:
            errors.append(("archives.formats", f"{where}: mesh's archives must be tar.gz, got {formats(a)}"))

    # -- checksum -----------------------------------------------------------
    checksum = cfg.get("checksum") or {}
    if norm(checksum.get("name_template")) != CHECKSUM_NAME:
        errors.append(("checksum.name_template", f"checksum.name_template must be {CHECKSUM_NAME!r} (the registry reads that file), got {checksum.get('name_template')!r}"))
    if str(checksum.get("algorithm", "sha256")) != "sha256":
        errors.append(("checksum.algorithm", f"checksum.algorithm must be sha256, got {checksum.get('algorithm')!r}"))
    if checksum.get("disable") or checksum.get("split"):
        errors.append(("checksum", "checksum must be one file: neither disable nor split"))
    ids = as_list(checksum.get("ids"))
    if ids and not {a.get("id") for a in provider_archives} & set(ids):
        errors.append(("checksum.ids", f"checksum.ids {ids} leaves out the provider's zips"))
    extra_file_ok(checksum.get("extra_files"), "checksum.extra_files", errors, "checksum.extra_files")

    # -- release ------------------------------------------------------------
    release = cfg.get("release") or {}
    extra_file_ok(release.get("extra_files"), "release.extra_files", errors, "release.extra_files")

    # -- signs --------------------------------------------------------------
    signs = [s for s in as_list(cfg.get("signs")) if isinstance(s, dict)]
    on_checksum = [s for s in signs if s.get("artifacts") == "checksum"]
    if not on_checksum:
        errors.append(("signs", "signs must have an entry with artifacts: checksum (the registry needs <SHA256SUMS>.sig)"))
    for s in on_checksum:
        args = [norm(a) for a in as_list(s.get("args"))]
        problems = []
        if str(s.get("cmd", "gpg")) != "gpg":
            problems.append(f"cmd must be gpg, got {s.get('cmd')!r}")
        if "--detach-sign" not in args:
            problems.append("args must include --detach-sign")
        if "--armor" in args or "-a" in args:
            problems.append("the signature must be binary (no --armor)")
        if "--batch" not in args:
            problems.append("args must include --batch (no terminal in a release run)")
        lu = args.index("--local-user") if "--local-user" in args else -1
        if lu < 0 or lu + 1 >= len(args) or args[lu + 1] != "{{ .Env.GPG_FINGERPRINT }}":
            problems.append("args must have --local-user {{ .Env.GPG_FINGERPRINT }} (the key from the environment)")
        if "${artifact}" not in args or "${signature}" not in args:
            problems.append("args must sign ${artifact} into ${signature}")
        if s.get("signature") not in (None, "${artifact}.sig"):
            problems.append(f"signature must be ${{artifact}}.sig (the registry's name), got {s.get('signature')!r}")
        for p in problems:
            errors.append(("signs", f"signs[artifacts: checksum]: {p}"))

    # -- paths --------------------------------------------------------------
    for where, value in strings_in(cfg):
        if re.search(r"(^|[^\w.-])target/", value) or "--target-dir" in value:
            errors.append(("paths", f"{where}: {value!r} hard-codes cargo's target directory; goreleaser derives it (CARGO_TARGET_DIR=target in the build's env)"))

    # -- manifest -----------------------------------------------------------
    manifest_path = os.path.join(ROOT, MANIFEST_SOURCE)
    try:
        manifest = json.load(open(manifest_path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        errors.append(("manifest", f"{MANIFEST_SOURCE}: {e}"))
    else:
        proto = tfplug_protocol()
        want = [f"{proto}.0"] if proto else None
        if proto is None:
            errors.append(("manifest", f"cannot find the protocol version tfplug announces in {TFPLUG_HANDSHAKE}"))
        got = (manifest.get("metadata") or {}).get("protocol_versions")
        if manifest.get("version") != 1:
            errors.append(("manifest", f"{MANIFEST_SOURCE}: \"version\" must be 1, got {manifest.get('version')!r}"))
        if want and got != want:
            errors.append(("manifest", f"{MANIFEST_SOURCE}: metadata.protocol_versions must be {want} (tfplug speaks protocol {proto}), got {got!r}"))

    return errors


def main(argv):
    path = argv[1] if len(argv) > 1 else os.path.join(ROOT, ".goreleaser.yml")
    if len(argv) > 2 or path in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if path in ("-h", "--help") else 2
    yaml = load_yaml()
    try:
        with open(path, encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        print(f"release-check: cannot read {path}: {e}", file=sys.stderr)
        return 2
    if not isinstance(cfg, dict):
        print(f"release-check: {path} is not a YAML mapping", file=sys.stderr)
        return 2
    errors = check(cfg)
    if errors:
        n = len(errors)
        print(f"release-check: {path}: {n} violation{'s' if n != 1 else ''}:")
        for rule, msg in errors:
            print(f"  [{rule}] {msg}")
        return 1
    print(f"release-check: {path} meets the registry's rules and builds what cargo produces")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
