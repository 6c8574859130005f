#!/usr/bin/env bash
# Guest helper for two-node runs: Soft-RoCE on the virtio-net link to the
# other guest (QEMU -netdev stream over a unix socket; no host network).
#
#   rxe-link.sh NODE [--mtu N]    NODE 0: 169.254.78.1, device zrxe0
#                                 NODE 1: 169.254.78.2, device zrxe1
#
# GID index 1 of the device is the IPv4-mapped one.
set -euo pipefail

node=${1:?usage: rxe-link.sh 0|1 [--mtu N]}
shift
mtu=9000
while [ $# -gt 0 ]; do
	case $1 in
	--mtu) mtu=$2; shift 2 ;;
	*) echo "rxe-link.sh: unknown option $1" >&2; exit 2 ;;
	esac
done
case $node in 0 | 1) ;; *) echo "rxe-link.sh: node is 0 or 1" >&2; exit 2 ;; esac

modprobe -a virtio_net rdma_rxe rdma_ucm
# The link NIC is the one with the MAC the runner gave it (52:54:00:7a:00:0N).
dev=
for _ in $(seq 50); do
	dev=$(grep -l "52:54:00:7a:00:0$node" /sys/class/net/*/address 2>/dev/null | head -n1 | cut -d/ -f5)
	[ -n "$dev" ] && break
	sleep 0.1
done
[ -n "$dev" ] || { echo "rxe-link.sh: no link NIC (52:54:00:7a:00:0$node)" >&2; exit 1; }
ip link set "$dev" mtu "$mtu" up
ip addr add "169.254.78.$((node + 1))/24" dev "$dev"
# Static neighbour: the other node's MAC is known, no ARP wait.
ip neigh replace "169.254.78.$((2 - node))" lladdr "52:54:00:7a:00:0$((1 - node))" dev "$dev" nud permanent
rdma link add "zrxe$node" type rxe netdev "$dev"
for _ in $(seq 50); do
	grep -q ACTIVE "/sys/class/infiniband/zrxe$node/ports/1/state" 2>/dev/null && exit 0
	sleep 0.1
done
echo "rxe-link.sh: zrxe$node did not become ACTIVE" >&2
exit 1
