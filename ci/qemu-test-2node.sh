#!/usr/bin/env bash
# make qemu-test-2node: the RDMA channel between two guests, each with its
# own kernel and Soft-RoCE device, joined by QEMU -netdev stream over a unix
# socket (a real two-kernel link; no host network). Node 0 receives, node 1
# sends (qemu/guest/node-test.sh). Results: target/qemu-test-2node/
# (junit.xml, node logs), a last line "N passed, N failed".
#
# Exit code: 0 all passed, 1 a case failed, 69 infrastructure failure.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
cd "$ZCOPY_ROOT" || exit "$ZCOPY_EXIT_INFRA"

out=target/qemu-test-2node
share=$out/share
rm -rf "$out"
mkdir -p "$share"
"$here/bootstrap.sh" || exit "$ZCOPY_EXIT_INFRA"
zc_log "building the test binaries"
cargo build -p zcopy-vm-tests --bins --color never >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log"; zc_infra "building rdma-node failed"; }

zc_log "booting two guests joined by a link (logs in $out/)"
link=$ZCOPY_ROOT/$out/link.sock
pids=()
for n in 0 1; do
	ZCOPY_NODE=$n ZCOPY_LINK=$link ZCOPY_RUN_DIR=$ZCOPY_ROOT/$out/node$n ZCOPY_CARD_BIN=/nonexistent \
		"$ZCOPY_ROOT/qemu/run.sh" --timeout "${ZCOPY_GUEST_TIMEOUT:-900}" -- \
		env ZCOPY_SHARE="$ZCOPY_ROOT/$share" qemu/guest/node-test.sh "$n" >"$out/node$n.log" 2>&1 &
	pids+=($!)
	# Node 0 listens on the link socket; node 1 reconnects until it is there.
	[ "$n" = 0 ] && sleep 2
done
rc=0
for i in 0 1; do
	wait "${pids[$i]}"
	r=$?
	[ "$r" = "$ZCOPY_EXIT_INFRA" ] && { tail -n 30 "$out/node$i.log"; zc_infra "node $i could not run"; }
	[ "$r" != 0 ] && rc=1
done

results=$out/results.tsv
for n in 0 1; do
	sed -n 's/^PASS \(.*\)/\1/p' "$out/node$n.log" | while read -r name; do
		printf 'node%s\t%s\tpass\t0\t%s\n' "$n" "$name" "$out/node$n.log"
	done
	sed -n 's/^FAIL \(.*\)/\1/p' "$out/node$n.log" | while read -r name; do
		printf 'node%s\t%s\tfail\t0\t%s\n' "$n" "$name" "$out/node$n.log"
	done
done >"$results"
grep -h '^FAIL' "$out"/node*.log
python3 "$here/report.py" junit "$results" "$out/junit.xml"
if ! grep -q $'\tpass\t' "$results" || grep -q $'\tfail\t' "$results"; then rc=1; fi
exit "$rc"
