#!/usr/bin/env bash
# make bench (RDMA part): the zcopy RDMA channel against perftest
# (ib_write_bw; ib_send_lat and ib_write_lat) on the guest's Soft-RoCE pair,
# same boot, same devices, MTU 9000 (IB MTU 4096). Table in perftest's
# columns on stdout; then zcopy send / zcopy recv of a 64 MiB file against
# ib_write_bw at the same slot size; target/bench/rdma.json and
# rdma-bandwidth.svg.
# Arguments go to zcopy-rdma-bench (--help). Under TCG the absolute figures
# are indicative: the ratio to perftest is the figure.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
mkdir -p target/bench
# The tools as the demo and the other benches build them (the file runs use
# the CLI, zcopy, beside the bench).
zc_build_tools >target/bench/build-rdma.log 2>&1 ||
	{ tail -n 30 target/bench/build-rdma.log; zc_infra "building zcopy-rdma-bench failed"; }
args=
[ $# -gt 0 ] && args=$(printf '%q ' "$@")
ZCOPY_CARD_BIN=/nonexistent ZCOPY_RUN_DIR=$ZCOPY_ROOT/target/qemu-bench "$ZCOPY_ROOT/qemu/run.sh" --timeout 1800 -- \
	bash -c "target/release/zcopy-rdma-bench --out target/bench $args"
