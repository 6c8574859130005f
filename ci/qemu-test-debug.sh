#!/usr/bin/env bash
# make qemu-test-debug: the driver under the kernel's checkers. Boots the
# debug kernel (qemu/kernel/debug.config: KASAN, lockdep, atomic-sleep,
# DMA-API debug, kmemleak, UBSAN, fault injection, gcov; built once and
# cached, see qemu/toolbox/toolbox.sh) and runs the driver, card and RDMA
# suites, the allocation-failure sweep (tests/failnth.rs) and the user-ABI
# fuzzer (tests/fuzz.rs) there, then scans for leaks and reports zcard.ko's
# coverage. Under KASAN and TCG the guest runs several times slower than on
# the stock kernel: the fuzzer makes ZCOPY_FUZZ_CALLS calls (20000 unless
# set) and each guest test binary gets ZCOPY_CASE_TIMEOUT s (1800 unless set).
#
# Fails on any test failure, on any KASAN/lockdep/UBSAN/DMA-API report or
# other splat in the kernel log, and on any leak kmemleak reports.
# Output: target/qemu-test-debug/ (junit.xml, logs/, kmemleak.txt,
# coverage/: coverage.txt, the table, and uncovered.txt, the error paths
# the suite never took, and html/).
#
# Exit code: 0 all passed, 1 a test or check failed, 69 infrastructure failure.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
export ZCOPY_KERNEL=debug
export ZCOPY_FUZZ_CALLS=${ZCOPY_FUZZ_CALLS:-20000}
export ZCOPY_CASE_TIMEOUT=${ZCOPY_CASE_TIMEOUT:-1800}
# ZCOPY_ONLY (make qemu-test-debug ONLY=...) runs only those suites: a
# focused run, its coverage that of those suites alone.
suites=${ZCOPY_ONLY:-driver failnth fuzz card channel_card rdma channel_rdma}
# The debug kernel has no memory controller (CONFIG_MEMCG is off in
# qemu/kernel/debug.config): the tests of pool charging run on the stock
# kernel only, and show here as skips with that reason.
export ZCOPY_SKIP="a_pool_whose_page_array_does_not_fit_the_memcg_is_enomem destroyed_but_mapped_pools_stay_counted_and_charged"
export ZCOPY_SKIP_WHY="the debug kernel has no memory controller (CONFIG_MEMCG); make qemu-test runs it"

out=target/qemu-test-debug
rm -rf "$out"
mkdir -p "$out/logs" target/qemu-test
# The guest writes its logs to target/qemu-test/logs/ (qemu/guest/test-entry.sh):
# none of an earlier debug run may pass for this one's.
rm -f target/qemu-test/logs/*-debug.log
results=$out/results.tsv
: >"$results"
start=$(date +%s)

"$here/bootstrap.sh" || exit "$ZCOPY_EXIT_INFRA"

zc_log "the debug kernel (built once per source version and config; the first time takes long)"
kstart=$(date +%s)
qemu/toolbox/toolbox.sh kernel >/dev/null || exit "$ZCOPY_EXIT_INFRA"
echo "$(($(date +%s) - kstart))" >"$out/kernel-seconds"

zc_log "building the driver against the debug kernel (W=1, sparse, checkpatch --strict, gcov)"
dstart=$(date +%s)
# A zcard.ko left from a build for another kernel must not stand in for this one.
rm -f driver/zcard.ko
if "$here/build-driver.sh" check >"$out/logs/build-driver.log" 2>&1; then st=pass; else
	st=fail
	tail -n 40 "$out/logs/build-driver.log"
fi
printf 'host-debug\tdriver: W=1, sparse and checkpatch --strict clean on the debug kernel\t%s\t%s\t%s\n' \
	"$st" "$(($(date +%s) - dstart))" "$out/logs/build-driver.log" >>"$results"
[ -f driver/zcard.ko ] || zc_infra "building zcard.ko failed (see $out/logs/build-driver.log)"

zc_log "building the guest test binaries and the card (zcard-vhost)"
cargo build -p zcard-vhost --bins --color never >"$out/logs/build-card.log" 2>&1 ||
	{ tail -n 40 "$out/logs/build-card.log"; zc_infra "building zcard-vhost failed"; }
cargo test --workspace --no-run --message-format=json 2>"$out/logs/build-guest.log" |
	python3 "$here/report.py" guest-bins >target/qemu-test/guest-bins.txt ||
	{ tail -n 40 "$out/logs/build-guest.log"; zc_infra "building the guest test binaries failed"; }

for s in $suites; do
	cut -f1 target/qemu-test/guest-bins.txt | grep -qxF -- "$s" || zc_infra "no guest suite $s was built"
done

zc_log "guest tests on the debug kernel ($suites)"
gstart=$(date +%s)
"$ZCOPY_ROOT/qemu/run.sh" --timeout "${ZCOPY_GUEST_TIMEOUT:-3600}" -- sh -c '
	env ZCOPY_RESULTS="$1" ZCOPY_ONLY="$3" ZCOPY_TAG=debug qemu/guest/test-entry.sh
	rc=$?
	qemu/guest/debug-checks.sh "$2" || rc=69
	exit $rc' sh "$ZCOPY_ROOT/$results" "$ZCOPY_ROOT/$out" "$suites"
guest_rc=$?
echo "$(($(date +%s) - gstart))" >"$out/guest-seconds"
if [ "$guest_rc" = "$ZCOPY_EXIT_INFRA" ]; then
	zc_infra "the debug guest could not run (see above and target/qemu/)"
fi
if [ "$guest_rc" != 0 ] && ! grep -q $'^guest[^\t]*\t[^\t]*\tfail\t' "$results"; then
	printf 'guest-debug\tguest suite (exit %s)\tfail\t0\t%s\n' "$guest_rc" target/qemu/console.log >>"$results"
fi
cp target/qemu/kernel.log "$out/logs/kernel.log" 2>/dev/null
if zc_kernel_log_ok "$out/logs/kernel.log" &&
	grep -q "KernelAddressSanitizer initialized" "$out/logs/kernel.log"; then st=pass; else st=fail; fi
printf 'guest-debug\tkernel log clean (KASAN, lockdep, UBSAN, DMA-API active)\t%s\t0\t%s\n' \
	"$st" "$out/logs/kernel.log" >>"$results"
if [ -s "$out/kmemleak.txt" ]; then
	st=fail
	zc_warn "kmemleak reports leaks ($out/kmemleak.txt):"
	head -n 40 "$out/kmemleak.txt" >&2
else
	st=pass
fi
printf 'guest-debug\tkmemleak: no leak\t%s\t0\t%s\n' "$st" "$out/kmemleak.txt" >>"$results"

zc_log "zcard.ko coverage"
cp "$out"/gcov/*.gcda driver/ 2>/dev/null
if qemu/toolbox/toolbox.sh enter "$here/coverage.sh" "$out/coverage" >"$out/logs/coverage.log" 2>&1; then
	cat "$out/coverage/coverage.txt"
else
	tail -n 20 "$out/logs/coverage.log"
	zc_warn "no coverage report (see $out/logs/coverage.log)"
fi

echo "$(($(date +%s) - start))" >"$out/seconds"
python3 "$here/report.py" junit "$results" "$out/junit.xml"
