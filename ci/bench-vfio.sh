#!/usr/bin/env bash
# make bench (VFIO part): 4 KiB COPY through the user-space driver
# (zcard-vfio bench, in the VFIO boot) at queue depth 1 and 32, polled and
# with interrupts, right after zcard.ko's ENTER path at the same depths
# (ci/bench-driver.sh, in the normal boot), so the two are measured minutes
# apart on the same machine. Tables on stdout; JSON in
# target/bench/zcard-driver.json and target/bench/zcard-vfio.json.
# Under TCG the absolute figures are indicative; compare within one run.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
mkdir -p target/bench
"$here/bench-driver.sh" || exit $?
cargo build --release -p zcard-vhost --bin zcard-vhost -p zcard-vfio --bin zcard-vfio ||
	zc_infra "building the VFIO bench failed"
ZCOPY_RUN_DIR=$ZCOPY_ROOT/target/qemu-vfio ZCOPY_CARD_BIN=$ZCOPY_ROOT/target/release/zcard-vhost \
	"$ZCOPY_ROOT/qemu/run.sh" --vfio --no-rxe -- \
	sh -c 'target/release/zcard-vfio bind && target/release/zcard-vfio bench --seconds 5 --json target/bench/zcard-vfio.json'
