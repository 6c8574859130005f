#!/usr/bin/env bash
# make demo, guest side: what the platform gives today. The Soft-RoCE pair
# and perftest between its two devices, written to target/demo/report.txt.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$root/target/demo
mkdir -p "$out"
exec > >(tee "$out/report.txt") 2>&1

echo "== zcopy platform demo: $(uname -r), $(nproc) vCPUs"
echo
echo "== RDMA devices (Soft-RoCE on veth zcv0 <-> zcv1)"
rdma link show
ibv_devices
echo
run() { # run NAME SERVER... -- CLIENT...: server on zrxe0, client on zrxe1
	local name=$1 srv=()
	shift
	while [ "$1" != -- ]; do srv+=("$1"); shift; done
	shift
	timeout 120 "${srv[@]}" >/dev/null 2>&1 &
	local spid=$!
	sleep 1
	echo "== $name"
	timeout 120 "$@" | sed -n '/#bytes/,/^-*$/p'
	wait "$spid"
	echo
}
run "ib_write_bw, 64 KiB writes (IB MTU 4096)" ib_write_bw -d zrxe0 -x 1 -s 65536 -n 1000 -F -- \
	ib_write_bw -d zrxe1 -x 1 -s 65536 -n 1000 -F 169.254.77.1
run "ib_send_lat, 64 B sends" ib_send_lat -d zrxe0 -x 1 -s 64 -n 1000 -F -- \
	ib_send_lat -d zrxe1 -x 1 -s 64 -n 1000 -F 169.254.77.1
run "ib_write_bw over rdma_cm (-R), 64 KiB" ib_write_bw -d zrxe0 -R -s 65536 -n 1000 -F -- \
	ib_write_bw -d zrxe1 -R --bind_source_ip 169.254.77.2 -s 65536 -n 1000 -F 169.254.77.1
echo "Soft-RoCE under TCG emulation: absolute figures are indicative only."
