#!/usr/bin/env bash
# A local snapshot of the provider's release, for this machine's platform,
# packaged as .goreleaser.yml packages it and as the Terraform Registry wants:
#
#   scripts/release-snapshot.sh [VERSION]
#
# writes into $DIST (default dist/):
#   terraform-provider-mesh_<VERSION>_<os>_<arch>.zip   (Go's os/arch names)
#   terraform-provider-mesh_<VERSION>_manifest.json
#   terraform-provider-mesh_<VERSION>_SHA256SUMS        (the zips and the manifest)
#   terraform-provider-mesh_<VERSION>_SHA256SUMS.sig    (only if GPG_FINGERPRINT is set)
#
# VERSION: the argument, else $VERSION, else the workspace's version; a
# leading v is dropped. The binary: `cargo build --release -p
# terraform-provider-mesh` without debug info (as the release builds it), or
# PROVIDER_BIN=path to package an already-built binary instead (no build).
# Needs python3 (zip and hashes) and, to sign, gpg with the key
# GPG_FINGERPRINT names.
set -euo pipefail
# DIST and PROVIDER_BIN may be relative to where the script is run from.
abs() { case "$1" in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
dist=$(abs "${DIST:-$(dirname "$0")/../dist}")
[ -z "${PROVIDER_BIN:-}" ] || PROVIDER_BIN=$(abs "$PROVIDER_BIN")
cd "$(dirname "$0")/.."

die() { echo "release-snapshot: $*" >&2; exit 1; }

version=${1:-${VERSION:-}}
if [ -z "$version" ]; then
  version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
fi
version=${version#v}
# Terraform and the registry take semantic versions only.
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "version '$version' is not MAJOR.MINOR.PATCH[-PRERELEASE]"

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  MINGW* | MSYS* | CYGWIN*) os=windows ;;
  *) die "unsupported OS $(uname -s)" ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) die "unsupported architecture $(uname -m)" ;;
esac
exe=""
[ "$os" = windows ] && exe=.exe

name=terraform-provider-mesh
if [ -n "${PROVIDER_BIN:-}" ]; then
  bin=$PROVIDER_BIN
  [ -f "$bin" ] && [ -x "$bin" ] || die "PROVIDER_BIN=$bin is not an executable file"
else
  . scripts/env.sh
  # The release's settings (.goreleaser.yml): no debug info in the binary.
  # cargo says where it put the executable, wherever CARGO_TARGET_DIR points.
  bin=$(CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    cargo build --release --locked -p "$name" --bin "$name" --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])
' "$name" | tail -1)
  [ -n "$bin" ] && [ -f "$bin" ] || die "cargo reported no $name executable"
fi

mkdir -p "$dist"
dist=$(cd "$dist" && pwd)
zip_name=${name}_${version}_${os}_${arch}.zip
manifest=${name}_${version}_manifest.json
sums=${name}_${version}_SHA256SUMS
rm -f "$dist/$zip_name" "$dist/$sums" "$dist/$sums.sig"

# Files get the last commit's time (goreleaser's mod_timestamp), so the same
# binary zips to the same bytes.
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)

# The zip holds what the release's does: the binary (mode 0755) and LICENSE.
python3 - "$dist/$zip_name" "$mtime" "$bin" "$name$exe" LICENSE LICENSE <<'EOF'
import sys, time, zipfile
out, mtime, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
stamp = time.gmtime(max(mtime, 315532800))[:6]  # zip dates start in 1980
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for src, arc in zip(pairs[::2], pairs[1::2]):
        info = zipfile.ZipInfo(arc, stamp)
        info.create_system = 3  # unix, so the mode below is kept
        info.external_attr = (0o100755 if arc.startswith("terraform-provider-") else 0o100644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(src, "rb") as f:
            z.writestr(info, f.read())
EOF

cp provider/terraform-registry-manifest.json "$dist/$manifest"

# Every provider zip of this version in $DIST (others may have been added
# by hand), and the manifest: "<sha256>  <name>" lines, sorted by name.
python3 - "$dist" "$sums" "$version" <<'EOF'
import glob, hashlib, os, sys
dist, sums, version = sys.argv[1:]
prefix = f"terraform-provider-mesh_{version}_"
names = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(dist, prefix + "*.zip"))
) + [prefix + "manifest.json"]
with open(os.path.join(dist, sums), "w") as f:
    for n in sorted(names):
        with open(os.path.join(dist, n), "rb") as g:
            f.write(f"{hashlib.sha256(g.read()).hexdigest()}  {n}\n")
EOF

made=("$zip_name" "$manifest" "$sums")
if [ -n "${GPG_FINGERPRINT:-}" ]; then
  gpg --batch --yes --local-user "$GPG_FINGERPRINT" --output "$dist/$sums.sig" --detach-sign "$dist/$sums"
  made+=("$sums.sig")
else
  echo "release-snapshot: GPG_FINGERPRINT is not set: $sums is not signed" >&2
fi

echo "release-snapshot: $name $version for ${os}_${arch} from $bin:"
for f in "${made[@]}"; do
  printf '  %s/%s (%s bytes)\n' "$dist" "$f" "$(wc -c <"$dist/$f" | tr -d ' ')"
done
if command -v readelf >/dev/null && readelf -S "$bin" 2>/dev/null | grep -q '\.debug_info'; then
  echo "release-snapshot: note: $bin has debug info, which a release build would not" >&2
fi
