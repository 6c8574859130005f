#!/usr/bin/env bash
# make demo, guest side (card attached, zcard.ko loaded, Soft-RoCE up): what
# the platform has (zcopy info), the seed experiment (zcopy pipeline), a short
# IPC and RDMA bench, and a report of the seed's claim beside our measured
# ratios. Everything lands in $ZCOPY_DEMO_OUT (default target/demo): report.txt,
# pipeline.json, pipeline-local.svg, pipeline-network.svg, the benches' JSON
# and SVG plots.
#
# Environment: ZCOPY_DEMO_SHM (the output of a shm bench already run on the
# host, shown instead of running it here), ZCOPY_BIN_DIR (the zcopy binaries; default target/release),
# ZCOPY_DEMO_SIZE (bytes the pipeline serves; default 32M), ZCOPY_DEMO_RUNS (runs
# per way; default 3), ZCOPY_DEMO_QUICK=1 (the reduced demo make qemu-test runs:
# 4M, one run, benches at their smallest).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
bin=${ZCOPY_BIN_DIR:-$root/target/release}
out=${ZCOPY_DEMO_OUT:-$root/target/demo}
size=${ZCOPY_DEMO_SIZE:-32M} runs=${ZCOPY_DEMO_RUNS:-3}
if [ "${ZCOPY_DEMO_QUICK:-0}" = 1 ]; then
	size=4M runs=1
fi
mkdir -p "$out"
exec > >(tee "$out/report.txt") 2>&1
failed=0
step() { # step TITLE CMD...: a section of the report; a failure is reported, the rest still runs
	local title=$1
	shift
	echo
	echo "== $title"
	"$@"
	local rc=$?
	if [ "$rc" != 0 ]; then
		echo "!! $title: exit $rc"
		failed=$((failed + 1))
	fi
}

echo "== zcopy demo: kernel $(uname -r), $(nproc) vCPUs, $(date -u +%FT%TZ)"
step "zcopy info: the card, the RDMA devices" "$bin/zcopy" info
step "zcopy pipeline: serve $size from storage to a local and a network peer, eleven ways" \
	"$bin/zcopy" pipeline --size "$size" --runs "$runs" --out "$out"
# shellcheck disable=SC2329 # invoked through step
shown() { cat "$1" && ! grep -q '^!!' "$1"; } # a bench run on the host: its output, its verdict
if [ -n "${ZCOPY_DEMO_SHM:-}" ]; then
	step "zcopy bench shm: zcopy channels against pipe, socket, mq, a copying ring (short, on the host)" \
		shown "$ZCOPY_DEMO_SHM"
else
	step "zcopy bench shm: zcopy channels against pipe, socket, mq, a copying ring (short)" \
		env ZCOPY_BENCH_DIR="$bin" "$bin/zcopy" bench shm --quick --out "$out"
fi
step "zcopy bench rdma: the RDMA channel against perftest on Soft-RoCE (short)" \
	env ZCOPY_BENCH_DIR="$bin" "$bin/zcopy" bench rdma --quick --out "$out"

# shellcheck disable=SC2329 # invoked through step
summary() {
	python3 - "$out" <<'EOF'
import json, os, sys
out = sys.argv[1]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
p = load("pipeline.json")
if p:
    print(f"The reference claim ({p['reference_source']}): {p['reference_claim']}.")
    pct = lambda v: "-" if v is None else f"{v * 100:.0f} %"
    for reach in ("local", "network"):
        rows = [w for w in p["ways"] if w["reach"] == reach]
        if rows:
            print(f"  to a {reach} peer: transfer time (whole time with the far end's check), serving CPU, CPU copies serving / far end (app+kernel)")
        for w in rows:
            print(f"  {w['name']:<22} {w['transfer_seconds']:7.3f} s ({w['seconds']:.3f} s)  CPU {w['cpu_seconds']:.3f} s  "
                  f"{w['application_copies']}+{w['kernel_copies']} / {w['far_application_copies']}+{w['far_kernel_copies']}  "
                  f"transfer {pct(w['vs_read_write'])}, CPU {pct(w['cpu_vs_read_write'])} of read+write's")
    for g in p["goals"]:
        print(g["summary"])
    for s in p["skipped"]:
        print(f"  skipped {s['way']}: {s['reason']}")
else:
    print("pipeline: no result (see above)")
for name, label in (("ipc.json", "IPC"), ("rdma.json", "RDMA")):
    d = load(name)
    if not d:
        print(f"{label} bench: no result (see above)")
        continue
    for g in d.get("goals", []):
        extra = ""
        if g.get("ours") is not None and g.get("reference") is not None:
            extra = f" (ours {g['ours']:.4g}, reference {g['reference']:.4g})"
        elif g.get("worst_ratio") is not None:
            extra = f" (worst ratio {g['worst_ratio']:.2f})"
        verdict = {True: "met", False: "not met"}.get(g.get("met"), "not measured")
        print(f"{label}: {g['goal']}: {verdict}{extra}")
print("Short runs under TCG emulation: the ratios are the figures, not the absolute numbers.")
EOF
}
step "report: the seed's claim beside our measurements" summary
echo
echo "== files"
ls "$out"
[ "$failed" = 0 ] || echo "!! $failed section(s) failed"
exit $((failed > 0))
