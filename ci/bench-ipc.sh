#!/usr/bin/env bash
# make bench (IPC part): zcopy channels against a bare shared flag, pipe,
# Unix socket, POSIX mq, a copying shm ring and iceoryx2, two processes
# pinned to different cores and to one core, on the host. Table on stdout;
# JSON and SVG plots in target/bench/ (ipc.json, ipc-latency-*.svg,
# ipc-throughput-*.svg). Arguments go to zcopy-ipc-bench (--help).
#
# iceoryx2 is built only here (feature iceoryx2; its bindgen needs
# libclang): without it the run goes on and says so.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
mkdir -p target/bench
features=(--features iceoryx2)
if ! "$here/bootstrap.sh" "libclang-dev=/usr/lib/llvm-*/lib/libclang*.so*"; then
	zc_log "no libclang: the IPC bench runs without the iceoryx2 baseline"
	features=()
fi
if ! cargo build --release -p zcopy-bench "${features[@]}" >target/bench/build-ipc.log 2>&1; then
	if [ ${#features[@]} -gt 0 ]; then
		tail -n 20 target/bench/build-ipc.log
		zc_log "building with iceoryx2 failed (above): the IPC bench runs without that baseline"
		cargo build --release -p zcopy-bench || zc_infra "building zcopy-ipc-bench failed"
	else
		tail -n 30 target/bench/build-ipc.log
		zc_infra "building zcopy-ipc-bench failed"
	fi
fi
exec target/release/zcopy-ipc-bench --out target/bench "$@"
