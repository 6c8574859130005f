#!/usr/bin/env bash
# Guest helper: two Soft-RoCE devices on the two ends of one veth, in the one
# network namespace rxe works in on 6.12, with the policy routing that makes
# traffic between the two local addresses leave through the veth instead of
# lo (and lets rdma_cm validate the route by output interface).
#
#   rxe-veth.sh up [--mtu N]    create veth zcv0/zcv1 and rxe devices zrxe0/zrxe1
#   rxe-veth.sh down            remove them again
#
# Addresses: 169.254.77.1 (zcv0, zrxe0) and 169.254.77.2 (zcv1, zrxe1).
# GID index 1 of each device is the IPv4-mapped one. Only for the guest: it
# rewrites the routing policy of the namespace it runs in.
set -euo pipefail

A=zcv0 B=zcv1 IPA=169.254.77.1 IPB=169.254.77.2
RXEA=zrxe0 RXEB=zrxe1 TA=7701 TB=7702

up() {
	local mtu=9000
	while [ $# -gt 0 ]; do
		case $1 in
		--mtu) mtu=$2; shift 2 ;;
		*) echo "rxe-veth.sh: unknown option $1" >&2; exit 2 ;;
		esac
	done
	modprobe -a rdma_rxe rdma_ucm veth
	ip link add "$A" mtu "$mtu" type veth peer name "$B" mtu "$mtu"
	ip addr add "$IPA/24" dev "$A"
	ip addr add "$IPB/24" dev "$B"
	ip link set "$A" up
	ip link set "$B" up
	local k
	for k in all default "$A" "$B"; do
		sysctl -qw "net.ipv4.conf.$k.rp_filter=0" "net.ipv4.conf.$k.accept_local=1"
	done
	# Static neighbours: no ARP between two addresses the kernel thinks local.
	ip neigh replace "$IPB" lladdr "$(cat "/sys/class/net/$B/address")" dev "$A" nud permanent
	ip neigh replace "$IPA" lladdr "$(cat "/sys/class/net/$A/address")" dev "$B" nud permanent
	# Locally generated traffic between the two addresses goes out the veth;
	# the local table moves behind these rules so it no longer wins first.
	ip route replace "$IPB" dev "$A" src "$IPA" table "$TA"
	ip route replace "$IPA" dev "$B" src "$IPB" table "$TB"
	ip rule add pref 100 iif lo from "$IPA" to "$IPB" lookup "$TA"
	ip rule add pref 100 iif lo from "$IPB" to "$IPA" lookup "$TB"
	ip rule add pref 101 oif "$A" to "$IPB" lookup "$TA"
	ip rule add pref 101 oif "$B" to "$IPA" lookup "$TB"
	ip rule add pref 1000 lookup local
	ip rule del pref 0 lookup local
	rdma link add "$RXEA" type rxe netdev "$A"
	rdma link add "$RXEB" type rxe netdev "$B"
	# The ports come up asynchronously; wait (bounded) for both.
	for _ in $(seq 50); do
		if grep -q ACTIVE "/sys/class/infiniband/$RXEA/ports/1/state" 2>/dev/null &&
			grep -q ACTIVE "/sys/class/infiniband/$RXEB/ports/1/state" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "rxe-veth.sh: rxe ports did not become ACTIVE" >&2
	exit 1
}

down() {
	rdma link del "$RXEA" 2>/dev/null || true
	rdma link del "$RXEB" 2>/dev/null || true
	ip rule del pref 100 2>/dev/null || true
	ip rule del pref 100 2>/dev/null || true
	ip rule del pref 101 2>/dev/null || true
	ip rule del pref 101 2>/dev/null || true
	if ! ip rule show pref 0 | grep -q local; then
		ip rule add pref 0 lookup local
		ip rule del pref 1000 lookup local 2>/dev/null || true
	fi
	ip route flush table "$TA" 2>/dev/null || true
	ip route flush table "$TB" 2>/dev/null || true
	ip link del "$A" 2>/dev/null || true
}

case "${1:-}" in
up) shift; up "$@" ;;
down) down ;;
*) echo "usage: $0 up [--mtu N] | down" >&2; exit 2 ;;
esac
