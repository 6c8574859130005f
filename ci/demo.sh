#!/usr/bin/env bash
# make demo: build what the demo needs (zcard.ko, the card's device model,
# the zcopy tools and the card's engine bench, release), run the host-native
# benches on the host (the card's engine against memcpy, the short IPC
# bench), boot the platform (card attached, driver loaded, Soft-RoCE up)
# and run qemu/guest/demo.sh in it. The report and the plots land in
# target/demo/.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"
out=target/demo
rm -rf "$out"
mkdir -p "$out"
zc_log "building zcard.ko, the card and the zcopy tools (release; logs in $out/build.log)"
"$here/build-driver.sh" all >"$out/build.log" 2>&1 ||
	{ tail -n 30 "$out/build.log"; zc_infra "building zcard.ko failed"; }
{
	cargo build --release -p zcard-vhost &&
		zc_build_tools &&
		cargo bench -p zcopy-bench --bench copy_engine --no-run
} >>"$out/build.log" 2>&1 ||
	{ tail -n 30 "$out/build.log"; zc_infra "building the tools failed"; }
# The card's engine and IPC run here, on the host's own cores (in a TCG
# guest their times are the emulator's); the guest's report takes them in.
# cargo runs a bench in its package's directory: the engine gets an
# absolute --out.
zc_log "the card's engine against memcpy, on the host"
cargo bench -q -p zcopy-bench --bench copy_engine -- --out "$PWD/$out" >"$out/engine.txt" 2>&1 ||
	echo "!! the engine bench: exit $?" >>"$out/engine.txt"
zc_log "short IPC bench on the host"
target/release/zcopy bench shm --short --out "$out" >"$out/bench-shm.txt" 2>&1 ||
	echo "!! zcopy bench shm: exit $?" >>"$out/bench-shm.txt"
ZCOPY_CARD_BIN=$ZCOPY_ROOT/target/release/zcard-vhost "$ZCOPY_ROOT/qemu/run.sh" --timeout 900 -- \
	env ZCOPY_DEMO_HOST="$ZCOPY_ROOT/$out" qemu/guest/demo.sh
rc=$?
echo
echo "report: $PWD/$out/report.txt"
for f in "$out"/*.svg; do [ -f "$f" ] && echo "plot:   $PWD/$f"; done
exit "$rc"
