#!/usr/bin/env bash
# make bench (pipeline part): zcopy pipeline's full run in the guest (card
# attached, zcard.ko loaded, Soft-RoCE up): 64 MiB (the card's whole
# storage), 5 runs per way, all eleven ways, to a local and a network peer.
# The tables on stdout; target/bench/pipeline.json, pipeline-local.svg and
# pipeline-network.svg. make demo runs the same method shorter (64 MiB,
# 3 runs). Arguments go to zcopy pipeline (--help).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
mkdir -p target/bench
"$here/build-driver.sh" all >target/bench/build-pipeline.log 2>&1 ||
	{ tail -n 30 target/bench/build-pipeline.log; zc_infra "building zcard.ko failed"; }
{ cargo build --release -p zcard-vhost && zc_build_tools; } >>target/bench/build-pipeline.log 2>&1 ||
	{ tail -n 30 target/bench/build-pipeline.log; zc_infra "building the card and zcopy failed"; }
args=
[ $# -gt 0 ] && args=$(printf '%q ' "$@")
ZCOPY_CARD_BIN=$ZCOPY_ROOT/target/release/zcard-vhost ZCOPY_RUN_DIR=$ZCOPY_ROOT/target/qemu-bench \
	"$ZCOPY_ROOT/qemu/run.sh" --timeout 1800 -- \
	bash -c "target/release/zcopy pipeline --size 64M --runs 5 --out target/bench $args"
