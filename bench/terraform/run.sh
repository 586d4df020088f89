#!/usr/bin/env bash
# terraform plan/apply of 500 mesh_service + 500 mesh_intention against a
# -dev agent, side by side with 1000 terraform_data resources (Terraform's
# built-in provider: no plugin, no network) in the same run; and provider
# start-up (plugin spawned -> schema served) from Terraform's own trace log.
#
#   ./bench/terraform/run.sh            # builds the bench-build agent and provider
#   RUNS=5 N=500 ./bench/terraform/run.sh
set -euo pipefail
. "$(dirname "$0")/../cluster/common.sh"

RUNS="${RUNS:-3}"
N="${N:-500}"
TERRAFORM="${TERRAFORM:-/usr/local/bin/terraform}"
[ -x "$TERRAFORM" ] || { echo "bench: $TERRAFORM not found" >&2; exit 1; }

bench_need hyperfine python3
bench_mesh_bin
if [ -z "${PROVIDER_BIN:-}" ]; then
  . "$REPO_DIR/scripts/env.sh"
  (cd "$REPO_DIR" && cargo build -q --profile bench-build -p terraform-provider-mesh)
  PROVIDER_BIN="$CARGO_TARGET_DIR/bench-build/terraform-provider-mesh"
fi
bench_start

# --- the agent ------------------------------------------------------------
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$MESH_BIN" agent -dev -node=bench -data-dir="$BENCH_WORK/agent" -bind=127.0.0.1 -client=127.0.0.1 \
  -http-port="$PORT" -serf-lan-port=0 -server-port=0 -dns-port=-1 -grpc-port=-1 \
  >"$BENCH_WORK/agent.log" 2>&1 &
echo $! >>"$BENCH_WORK/pids"
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/v1/status/leader" | grep -q ':' && break
  sleep 0.1
done

# --- terraform set-up (offline: dev_overrides) ----------------------------
mkdir -p "$BENCH_WORK/plugins" "$BENCH_WORK/mesh" "$BENCH_WORK/data"
ln -s "$PROVIDER_BIN" "$BENCH_WORK/plugins/terraform-provider-mesh"
cat >"$BENCH_WORK/cli.tfrc" <<CFG
provider_installation {
  dev_overrides { "mesh/mesh" = "$BENCH_WORK/plugins" }
  direct {}
}
CFG
export TF_CLI_CONFIG_FILE="$BENCH_WORK/cli.tfrc" CHECKPOINT_DISABLE=1 TF_IN_AUTOMATION=1
python3 - "$BENCH_WORK" "$N" "$PORT" <<'PY'
import sys
work, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
mesh = [
    'terraform {\n  required_providers {\n    mesh = { source = "mesh/mesh" }\n  }\n}\n',
    f'provider "mesh" {{\n  address = "127.0.0.1:{port}"\n}}\n',
]
for i in range(n):
    mesh.append(f'resource "mesh_service" "s{i}" {{\n  node    = "bench-{i % 10}"\n  address = "10.1.0.{i % 10}"\n'
                f'  name    = "svc-{i}"\n  port    = {8000 + i}\n  tags    = ["bench"]\n}}\n')
    mesh.append(f'resource "mesh_intention" "i{i}" {{\n  source      = "svc-{i}"\n'
                f'  destination = "svc-{(i + 1) % n}"\n  action      = "allow"\n}}\n')
open(f"{work}/mesh/main.tf", "w").write("".join(mesh))
data = [f'resource "terraform_data" "d{i}" {{\n  input = "value-{i}"\n}}\n' for i in range(2 * n)]
open(f"{work}/data/main.tf", "w").write("".join(data))
PY

tf() { (cd "$BENCH_WORK/$1" && shift && "$TERRAFORM" "$@" -no-color -input=false >/dev/null 2>&1); }

# --- apply from empty state, interleaved ----------------------------------
declare -A APPLY
for _ in $(seq "$RUNS"); do
  for w in mesh data; do
    tf "$w" destroy -auto-approve
    start=$(date +%s%N)
    tf "$w" apply -auto-approve
    APPLY[$w]+="$(( ($(date +%s%N) - start) / 1000000 )) "
  done
done

# --- plan with nothing to change (refreshes every resource) ---------------
hyperfine --warmup 1 --runs "$RUNS" --export-json "$BENCH_WORK/plan.json" \
  -n mesh "cd $BENCH_WORK/mesh && $TERRAFORM plan -detailed-exitcode -no-color -input=false" \
  -n terraform_data "cd $BENCH_WORK/data && $TERRAFORM plan -detailed-exitcode -no-color -input=false" >&2

# --- provider start-up: plugin started -> schema received, from the trace --
for i in $(seq 10); do
  (cd "$BENCH_WORK/mesh" && TF_LOG=trace TF_LOG_PATH="$BENCH_WORK/trace-$i.log" "$TERRAFORM" validate -no-color >/dev/null 2>&1)
done

python3 - "$BENCH_WORK" "${APPLY[mesh]}" "${APPLY[data]}" "$N" <<'PY'
import datetime, glob, json, statistics, sys
work, mesh, data, n = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), int(sys.argv[4])
med = lambda xs: statistics.median(float(x) / 1000 for x in xs)
plan = {r["command"]: r for r in json.load(open(f"{work}/plan.json"))["results"]}
pm, pd = plan["mesh"]["median"], plan["terraform_data"]["median"]
am, ad = med(mesh), med(data)
print(f"| step | {n} mesh_service + {n} mesh_intention | {2*n} terraform_data | ratio |")
print("| --- | --- | --- | --- |")
print(f"| apply (create, median of {len(mesh)}) | {am:.2f} s | {ad:.2f} s | {am/ad:.2f}x |")
print(f"| plan, no changes (median) | {pm:.2f} s | {pd:.2f} s | {pm/pd:.2f}x |")
ts = lambda line: datetime.datetime.fromisoformat(line[:23])
spans, hand = [], []
for f in glob.glob(f"{work}/trace-*.log"):
    lines = open(f).read().splitlines()
    started = next(l for l in lines if "provider: plugin started" in l)
    using = next(l for l in lines if "provider: using plugin: version=6" in l)
    served = next(l for l in lines if "No provider meta schema returned" in l)
    hand.append((ts(using) - ts(started)).total_seconds() * 1000)
    spans.append((ts(served) - ts(started)).total_seconds() * 1000)
print(f"\nprovider start-up over {len(spans)} runs: spawn -> handshake line read median "
      f"{statistics.median(hand):.1f} ms; spawn -> schema received median {statistics.median(spans):.1f} ms "
      f"(max {max(spans):.1f} ms)")
PY
