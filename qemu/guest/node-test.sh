#!/usr/bin/env bash
# Guest side of make qemu-test-2node: one of two guests on a real link,
# running its half of each case. The halves meet through files in the
# shared directory $ZCOPY_SHARE (both guests see the project tree); each case
# prints "PASS name" or "FAIL name: why". Exit 0 when every case passed.
#
#   node-test.sh 0|1    node 0 receives (169.254.78.1), node 1 sends (.2)
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
node=${1:?node 0 or 1}
share=${ZCOPY_SHARE:?ZCOPY_SHARE names the shared directory}
bin=$root/target/debug/rdma-node
A=169.254.78.1 B=169.254.78.2
failed=0

mark() { touch "$share/$1"; }
await() { # await FILE: wait (bounded) for the other node to reach a step
	for _ in $(seq 600); do [ -e "$share/$1" ] && return 0; sleep 0.1; done
	echo "timed out waiting for $1" >&2
	return 1
}
case_() { # case_ NAME CMD...: one half of a case
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then
		echo "PASS $name ($out)"
	else
		echo "FAIL $name: $out"
		failed=$((failed + 1))
	fi
}

if [ "$node" = 0 ]; then
	echo "node 0: $(rdma link show | tr -s ' ')"
	# 1. Many messages, random lengths, across the link.
	case_ "stream of 20000 messages (receiver)" "$bin" recv "$A:7480" 20000
	# 2. kill -9 of the receiver mid-stream: the sender errors in bound.
	"$bin" recv-forever "$A:7481" >"$share/forever.out" 2>&1 &
	pid=$!
	for _ in $(seq 600); do grep -q attached "$share/forever.out" && break; sleep 0.1; done
	sleep 1
	kill -9 "$pid"
	wait "$pid" 2>/dev/null
	mark killed
	echo "PASS receiver killed mid-stream (receiver side)"
	# 3. A new connection follows.
	case_ "a new connection after the kill (receiver)" "$bin" recv "$A:7482" 500
	await sender-done || failed=$((failed + 1))
else
	echo "node 1: $(rdma link show | tr -s ' ')"
	case_ "stream of 20000 messages (sender)" "$bin" send "$B" "$A:7480" 20000
	case_ "receiver killed mid-stream: the sender errors within 3 s" \
		"$bin" send-until-error "$B" "$A:7481"
	await killed || failed=$((failed + 1))
	case_ "a new connection after the kill (sender)" "$bin" send "$B" "$A:7482" 500
	mark sender-done
fi
# What the kernel keeps of RDMA objects once the processes are gone.
left=$(rdma resource show qp 2>/dev/null | grep -c 'pid' || true)
if [ "$left" = 0 ]; then echo "PASS no QPs left (node $node)"; else
	echo "FAIL QPs left on node $node: $left"; failed=$((failed + 1)); fi
[ "$failed" = 0 ]
