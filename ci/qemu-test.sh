#!/usr/bin/env bash
# make qemu-test: the whole suite. Host tests (cargo test --workspace), then
# the guest suite in a fresh boot (qemu/guest/test-entry.sh), then one report:
# target/qemu-test/junit.xml, logs under target/qemu-test/logs/, and a last
# line "N passed, N failed, N skipped" and the time the run took.
#
# A focused run (make qemu-test ONLY=... and/or FILTER=...: ZCOPY_ONLY, the
# guest suites to run, ZCOPY_FILTER, a test name filter) builds what the guest
# needs, boots once and runs only those tests: no host tests, no loom, no
# second boot under swiotlb.
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
focused=
[ -n "${ZCOPY_ONLY:-}${ZCOPY_FILTER:-}" ] && focused=1

"$here/bootstrap.sh" || exit "$ZCOPY_EXIT_INFRA"
[ -n "$focused" ] || "$here/rootless-test.sh" start "$ZCOPY_ROOT/$results" "$ZCOPY_ROOT/$out/logs"

# took WHAT SINCE: the line that says how long WHAT took.
took() { zc_log "$1 took $(($(date +%s) - $2)) s"; }

if [ -z "$focused" ]; then
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

	zc_log "zcopy shared-memory only (--no-default-features: no card, no RDMA, no rdma-sys)"
	sstart=$(date +%s)
	if cargo test -p zcopy --no-default-features --color never >"$out/logs/shm-only.log" 2>&1 &&
		cargo tree -p zcopy --no-default-features -e normal --prefix none >>"$out/logs/shm-only.log" 2>&1 &&
		! grep -q '^rdma-sys ' "$out/logs/shm-only.log"; then st=pass; else
		st=fail
		tail -n 40 "$out/logs/shm-only.log"
	fi
	printf 'host\tzcopy: builds and passes its tests with shared memory only (no rdma-sys)\t%s\t%s\t%s\n' "$st" \
		"$(($(date +%s) - sstart))" "$out/logs/shm-only.log" >>"$results"
else
	zc_log "focused run: ZCOPY_ONLY='${ZCOPY_ONLY:-}' ZCOPY_FILTER='${ZCOPY_FILTER:-}' (no host tests, no loom, no swiotlb run)"
fi

zc_log "building the driver (zcard.ko: W=1, sparse, checkpatch --strict)"
dstart=$(date +%s)
# A zcard.ko left from a build for another kernel must not stand in for this one.
rm -f driver/zcard.ko
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
# Suite names are checked here, before a boot is spent on a typo (exit 2).
for s in ${ZCOPY_ONLY:-}; do
	[ "$s" = sh ] || cut -f1 "$out/guest-bins.txt" | grep -qxF -- "$s" || {
		printf '\033[1;31m[zcopy]\033[0m ONLY (ZCOPY_ONLY): no guest suite %s; the suites: sh %s\n' \
			"'$s'" "$(cut -f1 "$out/guest-bins.txt" | sort -u | tr '\n' ' ')" >&2
		exit 2
	}
done
took "building" "$start"

zc_log "guest tests"
gstart=$(date +%s)
"$ZCOPY_ROOT/qemu/run.sh" --timeout "${ZCOPY_GUEST_TIMEOUT:-2400}" -- \
	env ZCOPY_RESULTS="$ZCOPY_ROOT/$results" qemu/guest/test-entry.sh
guest_rc=$?
took "the guest run (boot included)" "$gstart"
if [ "$guest_rc" = "$ZCOPY_EXIT_INFRA" ]; then
	zc_infra "the guest suite could not run (see above and target/qemu/)"
fi
if [ "$guest_rc" != 0 ] && ! grep -q $'^guest[^\t]*\t[^\t]*\tfail\t' "$results"; then
	printf 'guest\tguest suite (exit %s)\tfail\t0\t%s\n' "$guest_rc" target/qemu/console.log >>"$results"
fi
if zc_kernel_log_ok target/qemu/kernel.log; then st=pass; else st=fail; fi
cp target/qemu/kernel.log "$out/logs/kernel.log" 2>/dev/null
printf 'guest\tkernel log clean\t%s\t0\t%s\n' "$st" "$out/logs/kernel.log" >>"$results"

# tagged_boot TAG WHAT [--log-shows PATTERN] [HOST_VAR=VALUE...] -- [GUEST_VAR=VALUE...]:
# one more boot (no Soft-RoCE) with HOST_VAR=VALUE for the runner and the card,
# running the guest suite with GUEST_VAR=VALUE (ZCOPY_ONLY, ZCOPY_FILTER select
# what). Its cases are tagged TAG (guest-SUITE-TAG/...), and its kernel log
# must be clean (and show PATTERN, if given).
tagged_boot() {
	local tag=$1 what=$2 shows='' rc st host=() tab=$'\t'
	shift 2
	if [ "$1" = --log-shows ]; then shows=$2; shift 2; fi
	while [ "$1" != -- ]; do host+=("$1"); shift; done
	shift
	zc_log "guest tests: $what"
	env "${host[@]}" "$ZCOPY_ROOT/qemu/run.sh" --no-rxe --timeout "${ZCOPY_GUEST_TIMEOUT:-2400}" -- \
		env ZCOPY_RESULTS="$ZCOPY_ROOT/$results" ZCOPY_TAG="$tag" "$@" qemu/guest/test-entry.sh
	rc=$?
	[ "$rc" = "$ZCOPY_EXIT_INFRA" ] && zc_infra "the $tag boot could not run (see above and target/qemu/)"
	if [ "$rc" != 0 ] && ! grep -q "^guest[^${tab}]*-${tag}${tab}[^${tab}]*${tab}fail${tab}" "$results"; then
		printf 'guest-%s\t%s boot (exit %s)\tfail\t0\t%s\n' "$tag" "$tag" "$rc" target/qemu/console.log >>"$results"
	fi
	if zc_kernel_log_ok target/qemu/kernel.log && { [ -z "$shows" ] || grep -q "$shows" target/qemu/kernel.log; }; then
		st=pass
	else
		st=fail
	fi
	cp target/qemu/kernel.log "$out/logs/kernel-$tag.log" 2>/dev/null
	printf 'guest-%s\tkernel log clean\t%s\t0\t%s\n' "$tag" "$st" "$out/logs/kernel-$tag.log" >>"$results"
}

if [ -z "$focused" ]; then
	# The driver suite again with every DMA bounced through swiotlb: a missing
	# dma_sync shows up as wrong data here.
	tagged_boot swiotlb "the driver suite under swiotlb=force" --log-shows "software IO TLB\|swiotlb" \
		ZCOPY_APPEND="swiotlb=65536,force" -- ZCOPY_ONLY=driver

	# Platform faults (tests/sh/fault-*.sh): the card's process killed and
	# restarted under the bound driver, the card unplugged from the host and
	# plugged back. A boot of their own with the platform port, so that the
	# main boot keeps one card for its whole life.
	tagged_boot faults "platform faults (the card's process killed, the card unplugged)" \
		ZCOPY_PLATFORM_PORT=1 -- ZCOPY_ONLY=sh ZCOPY_FILTER=fault-

	# The probe on cards that withhold a feature bit or report a limit the
	# driver cannot use (tests/probe.rs): it decides from what the card offers
	# whether zcard.ko must drive it or refuse it with a reason; an oops at
	# probe fails the boot's setup.
	tagged_boot no-access-platform "the probe on a card with --no-access-platform" \
		ZCOPY_CARD_ARGS=--no-access-platform -- ZCOPY_ONLY=probe
	tagged_boot no-indirect-desc "the probe on a card with --no-indirect-desc" \
		ZCOPY_CARD_ARGS=--no-indirect-desc -- ZCOPY_ONLY=probe
	tagged_boot no-event-idx "the probe on a card with --no-event-idx" \
		ZCOPY_CARD_ARGS=--no-event-idx -- ZCOPY_ONLY=probe
	tagged_boot one-segment "the probe on a card with --max-segments 1" \
		ZCOPY_CARD_ARGS="--max-segments 1" -- ZCOPY_ONLY=probe

	# The user-space driver (userspace/zcard-vfio, docs/vfio.md) in the VFIO
	# boot (qemu/run.sh --vfio): an emulated IOMMU, the card without
	# ACCESS_PLATFORM, bound to vfio-pci by the tests.
	tagged_boot iommu "the VFIO driver's suite in the VFIO boot" --log-shows "DMAR: IOMMU enabled" \
		ZCOPY_VFIO=1 -- ZCOPY_ONLY=vfio
fi

if [ -z "$focused" ]; then
	"$here/rootless-test.sh" finish "$ZCOPY_ROOT/$out/logs"
fi

# A focused run that ran no test at all is a mistake in ONLY or FILTER.
# (One awk, no pipe: under pipefail, `grep -q` quitting at its first match can
# kill the writer with SIGPIPE and turn a match into a failure.)
if [ -n "$focused" ] &&
	! awk -F'\t' '$1 ~ /^guest/ && $2 != "kernel log clean" { found = 1; exit } END { exit !found }' "$results"; then
	printf 'guest\tno test matched ZCOPY_ONLY=%s ZCOPY_FILTER=%s\tfail\t0\t%s\n' \
		"${ZCOPY_ONLY:-}" "${ZCOPY_FILTER:-}" "$out/logs" >>"$results"
fi
echo "$(($(date +%s) - start))" >"$out/seconds"
python3 "$here/report.py" junit "$results" "$out/junit.xml"
rc=$?
took "make qemu-test${focused:+ (focused)}" "$start"
exit "$rc"
