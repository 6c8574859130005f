#!/usr/bin/env bash
# make demo, reduced (ZCOPY_DEMO_QUICK=1: 4 MiB, one run per way, the benches'
# --quick settings), on the debug binaries make qemu-test builds. The report
# must have every section, all eleven pipeline ways with their data checked,
# the reference claim, both pipeline goals with their figures, the goals with
# their figures and no verdict from a quick run, and the plots must be there.
set -euo pipefail
# shellcheck source=tests/sh/lib.sh
. "$(dirname "$0")/lib.sh"

bin=${ZCOPY_BIN_DIR:-$ZCOPY_ROOT/target/debug}
[ -x "$bin/zcopy" ] || fail "no $bin/zcopy: build it (cargo build -p zcopy-cli -p zcopy-bench)"
out=$ZCOPY_ROOT/target/qemu-test/demo
rm -rf "$out"
rc=0
ZCOPY_DEMO_QUICK=1 ZCOPY_BIN_DIR=$bin ZCOPY_DEMO_OUT=$out "$ZCOPY_ROOT/qemu/guest/demo.sh" || rc=$?
r=$out/report.txt
[ -s "$r" ] || fail "no report"
[ "$rc" = 0 ] || fail "the demo exited $rc"

has() { grep -qF -- "$1" "$r" || fail "the report lacks: $1"; }
has "== zcopy info: the card, the RDMA devices"
has "zcard0"
has "zrxe0"
has "== zcopy pipeline: serve 4M from storage to a local and a network peer, eleven ways"
for way in "read+write (unix)" "sendfile (unix)" "splice (unix)" "shm channel" "card channel" \
	"read+write" "mmap+write" "sendfile" "splice" "card -> RDMA" "card -> TCP zerocopy"; do
	grep -qE "^(  )?$(printf '%s' "$way" | sed 's/[+()]/[&]/g') +[0-9]" "$r" || fail "no pipeline row for $way"
done
has "Every run's data checked at the far end: 4194304 bytes"
has "== zcopy bench shm"
has "== zcopy bench rdma"
has "== report: every goal measured, beside the reference claim"
has "The reference claim (a common account of Linux zero-copy: mmap, sendfile, splice, DMA):"
has "Measured natively on the host's own cores"
has "Counted in the guest, not timed"
has "Timed in the guest under TCG, as ratios within one run:"
for reach in local network; do
	grep -qE "^Goal \($reach\): the best zero-copy way, .*, takes [0-9]+ % of read\+write's transfer time and [0-9]+ % of its serving CPU; goal <= 35 % of both: no verdict: 1 run per way" "$r" ||
		fail "no $reach goal with its measured ratios"
	grep -qE "^  pipeline  +the best $reach zero-copy way" "$r" || fail "no $reach pipeline goal in the report"
done
grep -qE "^ +.*: transfer [0-9]+ %, serving CPU [0-9]+ % of read\+write's: no verdict: 1 run per way" "$r" ||
	fail "no measured pipeline ratio in the report"
grep -qE "^  IPC  +64 B one-way p50" "$r" || fail "no IPC goals"
grep -qE "^  RDMA  +bandwidth" "$r" || fail "no RDMA goals"
# The quick runs show their figures and judge nothing.
grep -qE "^ +.*: not judged \(a quick run\)$" "$r" || fail "no quick-run figures"
grep -qE ": (met|NOT met)$" "$r" && fail "a quick run gave a verdict: $(grep -E ': (met|NOT met)$' "$r")"
grep -q "^!!" "$r" && fail "a section failed: $(grep '^!!' "$r")"
for f in pipeline.json pipeline-local.svg pipeline-network.svg ipc.json rdma.json rdma-bandwidth.svg; do
	[ -s "$out/$f" ] || fail "no $f"
done
ls "$out"/ipc-*.svg >/dev/null || fail "no IPC plots"
echo "demo report complete: $r"
