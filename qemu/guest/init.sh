#!/usr/bin/env bash
# Runs first in every guest (vng --exec): sets the guest up the way the tests
# see it, runs the command, then reports through the shared run directory:
#
#   $ZC_RUN/guest-exit   the command's exit code (the dedicated channel the
#                        host reads; its absence means the guest never got
#                        that far, an infrastructure failure)
#   $ZC_RUN/kernel.log   the guest kernel log (dmesg) after the command
#
# Settings come as environment variables set on the vng command line:
#   ZC_RUN   run directory (required)   ZC_RXE   1: Soft-RoCE pair up (default)
#   ZC_MTU   veth MTU (9000)
#   ZC_NODE  0|1: one of two guests; Soft-RoCE on the link between them
#            (qemu/guest/rxe-link.sh) instead of the veth pair
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${ZC_RUN:?ZC_RUN must name the run directory}"
export ZC_RUN

setup() {
	if [ -n "${ZC_NODE:-}" ]; then
		"$here/rxe-link.sh" "$ZC_NODE" --mtu "${ZC_MTU:-9000}" || return 1
	elif [ "${ZC_RXE:-1}" = 1 ]; then
		"$here/rxe-veth.sh" up --mtu "${ZC_MTU:-9000}" || return 1
	fi
	# The card's control port (virtio-serial) when the card is attached.
	if [ -d /sys/bus/pci/drivers/virtio-pci ]; then
		modprobe virtio_console 2>/dev/null || true
	fi
	# The card hook: once driver/zcard.ko is built, load it here.
	if [ -f "$ZC_ROOT_DIR/driver/zcard.ko" ]; then
		insmod "$ZC_ROOT_DIR/driver/zcard.ko" || return 1
	fi
}

ZC_ROOT_DIR=$(cd "$here/../.." && pwd)
if ! setup >"$ZC_RUN/guest-setup.log" 2>&1; then
	cat "$ZC_RUN/guest-setup.log" >&2
	echo "guest setup failed" >"$ZC_RUN/guest-infra"
	dmesg >"$ZC_RUN/kernel.log" 2>&1
	exit 69
fi

"$@"
rc=$?
dmesg >"$ZC_RUN/kernel.log" 2>&1
echo "$rc" >"$ZC_RUN/guest-exit"
sync
exit "$rc"
