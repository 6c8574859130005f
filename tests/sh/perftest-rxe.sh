#!/usr/bin/env bash
# perftest between the guest's two Soft-RoCE devices (zrxe0 on zcv0,
# 169.254.77.1; zrxe1 on zcv1, 169.254.77.2): RDMA WRITE bandwidth and SEND
# latency with GID exchange over TCP, WRITE bandwidth again with rdma_cm (-R),
# and ibv_rc_pingpong with receive-buffer validation (-c). Each run must
# complete, report a figure, and really cross the veth (the two ends show
# different GIDs).
#
# perftest calibrates its cycle counter against the clock when it starts;
# under TCG the samples can be too noisy for it ("Correlation coefficient
# r^2: R < 0.9"), and it then reports 0.00. That outcome, and only that one,
# is run again, at most PERFTEST_TRIES times, each retry said in the log.
# The latency run reports cycles (-C), which need no calibration: perftest
# may still say its calibration failed, and that voids nothing there.
set -euo pipefail
# shellcheck source=tests/sh/lib.sh
. "$(dirname "$0")/lib.sh"

A=169.254.77.1 B=169.254.77.2

# wait_server PID: until the perftest server listens on its port (a TCP
# listener, or an rdma_cm listener) — under TCG it can take seconds — or
# exits, for at most 30 s.
wait_server() {
	for _ in $(seq 300); do
		ss -ltnH 'sport = :18515' | grep -q . && return 0
		rdma resource show cm_id 2>/dev/null | grep -q 'state LISTEN' && return 0
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
}

PERFTEST_TRIES=3

# pair NAME SERVER-ARGS -- CLIENT-ARGS: run a server on zrxe0 and a client on
# zrxe1, both bounded in time; the output of both is kept and printed.
# Returns the first nonzero exit status of the two.
pair() {
	local name=$1 srv=() cli=()
	shift
	while [ "$1" != -- ]; do srv+=("$1"); shift; done
	shift
	cli=("$@")
	timeout 120 "${srv[@]}" >"$T/$name.server" 2>&1 &
	local spid=$!
	wait_server "$spid"
	local rc=0
	timeout 120 "${cli[@]}" >"$T/$name.client" 2>&1 || rc=$?
	wait "$spid" || rc=$((rc ? rc : $?))
	echo "== $name server"; cat "$T/$name.server"
	echo "== $name client"; cat "$T/$name.client"
	return "$rc"
}

# sent DEV: packets DEV has put on the wire so far.
sent() { cat "/sys/class/infiniband/$1/ports/1/hw_counters/sent_pkts"; }

# crosses NAME BEFORE0 BEFORE1: both devices sent packets during NAME (the
# traffic went from one device to the other over the veth; it did not loop
# back inside one device).
crosses() {
	[ "$(sent zrxe0)" -gt "$2" ] || fail "$1: zrxe0 sent nothing"
	[ "$(sent zrxe1)" -gt "$3" ] || fail "$1: zrxe1 sent nothing (the client did not use it)"
}

# figure NAME COLUMN: prints the number under perftest's result header;
# false unless it is > 0.
figure() {
	local v
	v=$(awk -v c="$2" '/^ *#bytes/ {getline; print $c; exit}' "$T/$1.client")
	echo "$1: column $2: '$v'"
	awk -v v="$v" 'BEGIN { exit !(v + 0 > 0) }'
}

# uncalibrated NAME: perftest said its clock calibration failed, on either end.
uncalibrated() { grep -qs 'Correlation coefficient r^2' "$T/$1.server" "$T/$1.client"; }

# measure NAME COLUMN SERVER-ARGS -- CLIENT-ARGS: one perftest pair that must
# complete, cross the veth and report a figure in COLUMN; run again (up to
# PERFTEST_TRIES in all) only when its clock calibration failed and its
# figures use it (not with -C: cycles).
measure() {
	local name=$1 col=$2 try s0 s1 rc cycles=0
	shift 2
	case " $* " in *" -C "*) cycles=1 ;; esac
	for try in $(seq "$PERFTEST_TRIES"); do
		s0=$(sent zrxe0) s1=$(sent zrxe1)
		rc=0
		pair "$name" "$@" || rc=$?
		if [ "$cycles" = 0 ] && uncalibrated "$name"; then
			echo "RETRY: $name: perftest's clock calibration failed under emulation noise (r^2 < 0.9; exit $rc), figures void; run $try of $PERFTEST_TRIES"
			continue
		fi
		[ "$rc" = 0 ] || fail "$name exited with $rc"
		crosses "$name" "$s0" "$s1"
		figure "$name" "$col" || fail "$name reported no figure"
		return 0
	done
	fail "$name: perftest's clock calibration failed $PERFTEST_TRIES times in a row"
}

measure write_bw 4 ib_write_bw -d zrxe0 -x 1 -s 65536 -n 500 -F -- \
	ib_write_bw -d zrxe1 -x 1 -s 65536 -n 500 -F "$A"

measure send_lat 5 ib_send_lat -d zrxe0 -x 1 -s 64 -n 500 -F -C -- \
	ib_send_lat -d zrxe1 -x 1 -s 64 -n 500 -F -C "$A"

measure write_bw_cm 4 ib_write_bw -d zrxe0 -R -s 65536 -n 500 -F -- \
	ib_write_bw -d zrxe1 -R --bind_source_ip "$B" -s 65536 -n 500 -F "$A"

# -c: the receiver checks every buffer's contents.
s0=$(sent zrxe0) s1=$(sent zrxe1)
pair pingpong ibv_rc_pingpong -d zrxe0 -g 1 -c -n 200 -s 4096 -- \
	ibv_rc_pingpong -d zrxe1 -g 1 -c -n 200 -s 4096 "$A" || fail "pingpong exited with $?"
crosses pingpong "$s0" "$s1"
grep -q "::ffff:$B" "$T/pingpong.client" || fail "pingpong client did not use zrxe1's IPv4 GID"
grep -q '200 iters' "$T/pingpong.client" || fail "pingpong did not complete 200 validated iterations"
echo ok
