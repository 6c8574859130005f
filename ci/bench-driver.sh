#!/usr/bin/env bash
# make bench (driver part): 4 KiB COPY through zcard.ko's rings in the guest,
# queue depth 1 vs 32, ops/s and ioctls per op. Release builds of the card
# and the bench; table on stdout, JSON and a bar chart in target/bench/
# (zcard-driver.json, zcard-driver.svg).
# Under TCG the absolute figures are indicative; compare within one run.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
mkdir -p target/bench
"$here/build-driver.sh" all >target/bench/build-driver.log 2>&1 ||
	{ tail -n 30 target/bench/build-driver.log; zc_infra "building zcard.ko failed"; }
cargo build --release -p zcard-vhost --bin zcard-vhost -p zcopy-bench --bin zcard-bench ||
	zc_infra "building the bench failed"
ZCOPY_CARD_BIN=$ZCOPY_ROOT/target/release/zcard-vhost "$ZCOPY_ROOT/qemu/run.sh" --no-rxe -- \
	target/release/zcard-bench target/bench/zcard-driver.json
