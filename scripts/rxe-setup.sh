#!/usr/bin/env bash
# rxe-setup.sh: Soft-RoCE (rdma_rxe) on a developer's own Linux machine, so
# zcopy's RDMA path runs without RDMA hardware.
#
#   sudo scripts/rxe-setup.sh [NETDEV] [--name DEV] [--no-verify]
#   sudo scripts/rxe-setup.sh --status [NETDEV] [--name DEV]
#   sudo scripts/rxe-setup.sh --teardown [NETDEV] [--name DEV]
#
# NETDEV defaults to the interface of the default route; DEV defaults to
# rxe_NETDEV. Setting up loads rdma_rxe and rdma_ucm, creates DEV on NETDEV
# (nothing if it already exists: re-running is safe), then verifies it with
# ibv_devinfo and a loopback ibv_rc_pingpong over the device's IPv4 GID
# (its TCP handshake uses 127.0.0.1 only). Nothing else on the machine is
# changed. Teardown removes the rxe device on NETDEV if this script created
# it (one it found there is left alone), and unloads the modules only if
# this script loaded them and no RDMA device is left.
#
# Exit codes: 0 done (or, for --status, DEV exists and its port is ACTIVE);
# 1 verification failed; 2 bad usage or unknown NETDEV; 3 --status: DEV is
# not set up; 4 a requirement is missing (message says which package);
# 5 not root.
set -uo pipefail

state_dir=/run/zcopy-rxe
action=setup netdev="" name="" verify=1

usage() { sed -n '2,/^set -uo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }
die() { local rc=$1; shift; echo "rxe-setup: $*" >&2; exit "$rc"; }

while [ $# -gt 0 ]; do
	case $1 in
	--status) action=status; shift ;;
	--teardown) action=teardown; shift ;;
	--name) [ $# -ge 2 ] || die 2 "--name needs a device name"; name=$2; shift 2 ;;
	--no-verify) verify=0; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) die 2 "unknown option $1 (see --help)" ;;
	*) [ -z "$netdev" ] || die 2 "only one NETDEV, got '$netdev' and '$1'"; netdev=$1; shift ;;
	esac
done

[ "$(id -u)" = 0 ] || die 5 "must run as root (creating an RDMA device needs CAP_NET_ADMIN): sudo $0 $*"
command -v rdma >/dev/null || die 4 "the 'rdma' tool is missing: install iproute2 (Debian/Ubuntu: apt install iproute2; Fedora: dnf install iproute)"
command -v modprobe >/dev/null || die 4 "modprobe is missing: install kmod"

if [ -z "$netdev" ]; then
	netdev=$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')
	[ -n "$netdev" ] || die 2 "no default route to take a NETDEV from: name one (ip -br link lists them)"
fi
case $netdev in *[!A-Za-z0-9_.@-]*) die 2 "'$netdev' is not an interface name" ;; esac
[ -e "/sys/class/net/$netdev" ] || die 2 "no network interface '$netdev' (ip -br link lists them)"
name=${name:-rxe_$netdev}
case $name in *[!A-Za-z0-9_-]* | '') die 2 "'$name' is not a valid RDMA device name" ;; esac

# The rxe device on $netdev, whatever its name ("" if none).
rxe_on() { rdma link show 2>/dev/null | awk -v n="$1" '$0 ~ " netdev " n "( |$)" {split($2, a, "/"); print a[1]; exit}'; }

port_state() { cat "/sys/class/infiniband/$1/ports/1/state" 2>/dev/null; }

# IPv4-mapped GID index of $1 (RoCE v2), for the loopback check.
ipv4_gid_index() {
	local g i
	for g in /sys/class/infiniband/"$1"/ports/1/gids/*; do
		i=${g##*/}
		if grep -q '^0000:0000:0000:0000:0000:ffff:' "$g" 2>/dev/null &&
			grep -q 'RoCE v2' "/sys/class/infiniband/$1/ports/1/gid_attrs/types/$i" 2>/dev/null; then
			echo "$i"
			return 0
		fi
	done
	return 1
}

status() {
	local dev
	dev=$(rxe_on "$netdev")
	if [ -z "$dev" ]; then
		echo "rxe-setup: no rxe device on $netdev"
		return 3
	fi
	echo "device $dev on $netdev: $(port_state "$dev")"
	rdma link show "$dev/1"
	if [ -f "$state_dir/$dev" ]; then echo "created by rxe-setup.sh"; fi
	case $(port_state "$dev") in *ACTIVE*) return 0 ;; *) return 1 ;; esac
}

# wait_listening PORT PID: until something listens on TCP PORT (at most
# 10 s), or PID has exited.
wait_listening() {
	local port=$1 pid=$2 i
	if ! command -v ss >/dev/null; then
		sleep 1
		return 0
	fi
	for ((i = 0; i < 100; i++)); do
		ss -Hltn "sport = :$port" | grep -q . && return 0
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
}

verify() {
	local dev=$1 idx spid rc=0 log
	command -v ibv_devinfo >/dev/null || die 4 "ibv_devinfo is missing: install ibverbs-utils (Fedora: libibverbs-utils)"
	ibv_devinfo -d "$dev" | grep -q 'PORT_ACTIVE' || die 1 "ibv_devinfo does not show $dev's port ACTIVE"
	idx=$(ipv4_gid_index "$dev") || die 1 "$dev has no IPv4 RoCE v2 GID: give $netdev an IPv4 address"
	log=$(mktemp)
	timeout 30 ibv_rc_pingpong -d "$dev" -g "$idx" -c -n 100 -p 18515 >"$log" 2>&1 &
	spid=$!
	# The client must not start before the server listens: a fixed pause
	# loses that race on a loaded machine ("Couldn't connect").
	wait_listening 18515 "$spid"
	timeout 30 ibv_rc_pingpong -d "$dev" -g "$idx" -c -n 100 -p 18515 127.0.0.1 >>"$log" 2>&1 || rc=$?
	wait "$spid" || rc=$((rc ? rc : $?))
	if [ "$rc" != 0 ] || ! grep -q '100 iters' "$log"; then
		cat "$log" >&2
		rm -f "$log"
		die 1 "loopback ibv_rc_pingpong on $dev failed"
	fi
	rm -f "$log"
	echo "verified: $dev PORT_ACTIVE, loopback RC ping-pong over GID $idx with data check passed"
}

setup() {
	local dev m loaded=
	if ! modinfo rdma_rxe >/dev/null 2>&1; then
		die 4 "this kernel has no rdma_rxe module (CONFIG_RDMA_RXE): Debian/Ubuntu ship it in linux-image-*/linux-modules-extra-$(uname -r); Fedora in kernel-modules-extra"
	fi
	for m in rdma_rxe rdma_ucm; do
		[ -d "/sys/module/$m" ] && continue
		modprobe "$m" || die 4 "modprobe $m failed"
		loaded+="$m "
	done
	mkdir -p "$state_dir"
	[ -n "$loaded" ] && echo "$loaded" >>"$state_dir/modules"
	dev=$(rxe_on "$netdev")
	if [ -n "$dev" ]; then
		echo "rxe device $dev already on $netdev"
	else
		[ -e "/sys/class/infiniband/$name" ] && die 2 "an RDMA device named $name already exists on another netdev: choose --name"
		rdma link add "$name" type rxe netdev "$netdev" || die 1 "rdma link add $name type rxe netdev $netdev failed"
		touch "$state_dir/$name"
		dev=$name
		echo "created rxe device $dev on $netdev"
	fi
	local i
	for i in $(seq 50); do
		case $(port_state "$dev") in *ACTIVE*) break ;; esac
		sleep 0.1
	done
	case $(port_state "$dev") in *ACTIVE*) ;; *) die 1 "$dev's port is not ACTIVE (is $netdev up?)" ;; esac
	[ "$verify" = 1 ] && verify "$dev"
	return 0
}

teardown() {
	local dev m
	dev=$(rxe_on "$netdev")
	if [ -z "$dev" ]; then
		echo "no rxe device on $netdev: nothing to do"
	elif [ ! -f "$state_dir/$dev" ]; then
		# Someone else's (made by hand, or before this script ran): theirs
		# to remove.
		echo "rxe device $dev on $netdev was not created by rxe-setup.sh: left alone (rdma link delete $dev removes it)"
	else
		rdma link delete "$dev" || die 1 "rdma link delete $dev failed"
		rm -f "$state_dir/$dev"
		echo "removed rxe device $dev from $netdev"
	fi
	# Unload only what this script loaded, and only when no RDMA device is
	# left, its own or anyone's: unloading rdma_rxe takes every rxe device
	# with it, and modprobe -r does not refuse while they are idle.
	if [ -f "$state_dir/modules" ] && [ -z "$(find "$state_dir" -type f ! -name modules)" ] &&
		[ -z "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
		for m in $(tac -s ' ' "$state_dir/modules" 2>/dev/null); do
			modprobe -r "$m" 2>/dev/null || true
		done
		rm -f "$state_dir/modules"
	fi
	return 0
}

case $action in
setup) setup ;;
status) status ;;
teardown) teardown ;;
esac
