#!/usr/bin/env bash
# make demo, guest side (card attached, zcard.ko loaded, Soft-RoCE up): what
# the platform has (zcopy info), the serving experiment (zcopy pipeline), the
# short IPC and RDMA benches, and a report of every goal they measured beside
# the reference claim (qemu/guest/demo-report.py). Everything lands in
# $ZCOPY_DEMO_OUT (default target/demo): report.txt, pipeline.json,
# pipeline-local.svg, pipeline-network.svg, the benches' JSON and SVG plots.
#
# Environment: ZCOPY_DEMO_HOST (the directory where ci/demo.sh ran the
# host-native benches, the card's engine and IPC: their output is shown and
# their JSON read instead of running IPC here), ZCOPY_BIN_DIR (the zcopy
# binaries; default target/release), ZCOPY_DEMO_SIZE (bytes the pipeline
# serves; default 64M, the card's whole storage, as the full bench),
# ZCOPY_DEMO_RUNS (runs per way; default 3),
# ZCOPY_DEMO_QUICK=1 (the reduced demo make qemu-test runs: 4M, one run,
# benches --quick, which judge no goal).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
bin=${ZCOPY_BIN_DIR:-$root/target/release}
out=${ZCOPY_DEMO_OUT:-$root/target/demo}
size=${ZCOPY_DEMO_SIZE:-64M} runs=${ZCOPY_DEMO_RUNS:-3}
bench=--short
if [ "${ZCOPY_DEMO_QUICK:-0}" = 1 ]; then
	size=4M runs=1 bench=--quick
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
if [ -n "${ZCOPY_DEMO_HOST:-}" ]; then
	step "the card's engine against memcpy (host-native, the full bench)" \
		shown "$ZCOPY_DEMO_HOST/engine.txt"
	step "zcopy bench shm: zcopy channels against a bare shared flag, pipe, socket, mq, a copying ring ($bench, host-native)" \
		shown "$ZCOPY_DEMO_HOST/bench-shm.txt"
else
	step "zcopy bench shm: zcopy channels against a bare shared flag, pipe, socket, mq, a copying ring ($bench, in the guest)" \
		env ZCOPY_BENCH_DIR="$bin" "$bin/zcopy" bench shm "$bench" --out "$out"
fi
step "zcopy bench rdma: the RDMA channel against perftest on Soft-RoCE ($bench)" \
	env ZCOPY_BENCH_DIR="$bin" "$bin/zcopy" bench rdma "$bench" --out "$out"

step "report: every goal measured, beside the reference claim" \
	python3 "$root/qemu/guest/demo-report.py" "$out"
echo
echo "== files"
ls "$out"
[ "$failed" = 0 ] || echo "!! $failed section(s) failed"
exit $((failed > 0))
