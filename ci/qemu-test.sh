#!/usr/bin/env bash
# make qemu-test: the whole suite. Host tests (cargo test --workspace), then
# the guest suite in a fresh boot (qemu/guest/test-entry.sh), then one report:
# target/qemu-test/junit.xml, logs under target/qemu-test/logs/, and a last
# line "N passed, N failed, N skipped".
#
# Exit code: 0 all passed, 1 a test failed, 69 infrastructure failure.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"

out=target/qemu-test
rm -rf "$out"
mkdir -p "$out/logs"
results=$out/results.tsv
: >"$results"
start=$(date +%s)

"$here/bootstrap.sh" || exit "$ZCOPY_EXIT_INFRA"

zc_log "host tests: cargo test --workspace"
cargo test --workspace --color never >"$out/logs/host-cargo.log" 2>&1
host_rc=$?
python3 "$here/report.py" libtest host "$out/logs/host-cargo.log" >>"$results"
if [ "$host_rc" != 0 ] && ! grep -q $'\tfail\t' "$results"; then
	tail -n 40 "$out/logs/host-cargo.log"
	printf 'host\tcargo test (exit %s)\tfail\t0\t%s\n' "$host_rc" "$out/logs/host-cargo.log" >>"$results"
fi

zc_log "ring: loom model check"
lstart=$(date +%s)
if RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test -p zcopy --lib --release --color never loom \
	>"$out/logs/loom.log" 2>&1 && grep -q "test result: ok. [1-9]" "$out/logs/loom.log"; then st=pass; else
	st=fail
	tail -n 40 "$out/logs/loom.log"
fi
printf 'host\tring: loom model check (zcopy::ring)\t%s\t%s\t%s\n' "$st" \
	"$(($(date +%s) - lstart))" "$out/logs/loom.log" >>"$results"

zc_log "building the driver (zcard.ko: W=1, sparse, checkpatch --strict)"
dstart=$(date +%s)
if "$here/build-driver.sh" check >"$out/logs/build-driver.log" 2>&1; then st=pass; else
	st=fail
	tail -n 40 "$out/logs/build-driver.log"
fi
printf 'host\tdriver: W=1, sparse and checkpatch --strict clean\t%s\t%s\t%s\n' "$st" \
	"$(($(date +%s) - dstart))" "$out/logs/build-driver.log" >>"$results"
[ -f driver/zcard.ko ] || zc_infra "building zcard.ko failed (see $out/logs/build-driver.log)"

zc_log "building the guest test binaries and the card (zcard-vhost)"
cargo build -p zcard-vhost -p zcard-vfio --bins --color never >"$out/logs/build-card.log" 2>&1 ||
	{ tail -n 40 "$out/logs/build-card.log"; zc_infra "building zcard-vhost failed"; }
cargo test --workspace --no-run --message-format=json 2>"$out/logs/build-guest.log" |
	python3 "$here/report.py" guest-bins >"$out/guest-bins.txt" ||
	{ tail -n 40 "$out/logs/build-guest.log"; zc_infra "building the guest test binaries failed"; }

zc_log "guest tests"
"$ZCOPY_ROOT/qemu/run.sh" --timeout "${ZCOPY_GUEST_TIMEOUT:-2400}" -- \
	env ZCOPY_RESULTS="$ZCOPY_ROOT/$results" qemu/guest/test-entry.sh
guest_rc=$?
if [ "$guest_rc" = "$ZCOPY_EXIT_INFRA" ]; then
	zc_infra "the guest suite could not run (see above and target/qemu/)"
fi
if [ "$guest_rc" != 0 ] && ! grep -q $'^guest[^\t]*\t[^\t]*\tfail\t' "$results"; then
	printf 'guest\tguest suite (exit %s)\tfail\t0\t%s\n' "$guest_rc" target/qemu/console.log >>"$results"
fi
if zc_kernel_log_ok target/qemu/kernel.log; then st=pass; else st=fail; fi
cp target/qemu/kernel.log "$out/logs/kernel.log" 2>/dev/null
printf 'guest\tkernel log clean\t%s\t0\t%s\n' "$st" "$out/logs/kernel.log" >>"$results"

# The driver suite again with every DMA bounced through swiotlb: a missing
# dma_sync shows up as wrong data here.
zc_log "guest tests again under swiotlb=force (driver suite)"
ZCOPY_APPEND="swiotlb=65536,force" "$ZCOPY_ROOT/qemu/run.sh" --no-rxe --timeout "${ZCOPY_GUEST_TIMEOUT:-2400}" -- \
	env ZCOPY_RESULTS="$ZCOPY_ROOT/$results" ZCOPY_ONLY=driver ZCOPY_TAG=swiotlb qemu/guest/test-entry.sh
guest_rc=$?
if [ "$guest_rc" = "$ZCOPY_EXIT_INFRA" ]; then
	zc_infra "the swiotlb guest run could not run (see above and target/qemu/)"
fi
if [ "$guest_rc" != 0 ] && ! grep -q $'^guest[^\t]*-swiotlb\t[^\t]*\tfail\t' "$results"; then
	printf 'guest-swiotlb\tguest suite (exit %s)\tfail\t0\t%s\n' "$guest_rc" target/qemu/console.log >>"$results"
fi
if zc_kernel_log_ok target/qemu/kernel.log && grep -q "software IO TLB\|swiotlb" target/qemu/kernel.log; then
	st=pass
else
	st=fail
fi
cp target/qemu/kernel.log "$out/logs/kernel-swiotlb.log" 2>/dev/null
printf 'guest-swiotlb\tkernel log clean, swiotlb forced\t%s\t0\t%s\n' "$st" "$out/logs/kernel-swiotlb.log" >>"$results"

# The user-space driver (userspace/zcard-vfio) in its own boot: an emulated
# IOMMU, the card without ACCESS_PLATFORM and bound to vfio-pci.
zc_log "guest tests in the VFIO boot (vfio suite)"
vstart=$(date +%s)
ZCOPY_RUN_DIR=$ZCOPY_ROOT/target/qemu-vfio "$ZCOPY_ROOT/qemu/run.sh" --vfio --no-rxe --timeout "${ZCOPY_GUEST_TIMEOUT:-2400}" -- \
	env ZCOPY_RESULTS="$ZCOPY_ROOT/$results" ZCOPY_ONLY=vfio qemu/guest/test-entry.sh
guest_rc=$?
if [ "$guest_rc" = "$ZCOPY_EXIT_INFRA" ]; then
	zc_infra "the VFIO guest run could not run (see above and target/qemu-vfio/)"
fi
if [ "$guest_rc" != 0 ] && ! grep -q $'^guest-vfio\t[^\t]*\tfail\t' "$results"; then
	printf 'guest-vfio\tguest suite (exit %s)\tfail\t%s\t%s\n' "$guest_rc" "$(($(date +%s) - vstart))" target/qemu-vfio/console.log >>"$results"
fi
if zc_kernel_log_ok target/qemu-vfio/kernel.log && grep -q "DMAR: IOMMU enabled" target/qemu-vfio/kernel.log; then
	st=pass
else
	st=fail
fi
cp target/qemu-vfio/kernel.log "$out/logs/kernel-vfio.log" 2>/dev/null
printf 'guest-vfio\tkernel log clean, IOMMU on\t%s\t0\t%s\n' "$st" "$out/logs/kernel-vfio.log" >>"$results"

echo "$(($(date +%s) - start))" >"$out/seconds"
python3 "$here/report.py" junit "$results" "$out/junit.xml"
