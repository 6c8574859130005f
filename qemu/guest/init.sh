#!/usr/bin/env bash
# Runs first in every guest (vng --exec): sets the guest up the way the tests
# see it, runs the command, then reports through the shared run directory:
#
#   $ZCOPY_RUN/guest-exit   the command's exit code (the dedicated channel the
#                        host reads; its absence means the guest never got
#                        that far, an infrastructure failure)
#   $ZCOPY_RUN/kernel.log   the guest kernel log (dmesg) after the command
#
# Settings: ZCOPY_RUN (the run directory, required) on the vng command line,
# the rest from $ZCOPY_RUN/guest-env (qemu/vm.sh writes it: these, with their
# defaults, and every other ZCOPY_ variable set on the host):
#   ZCOPY_RXE   1: Soft-RoCE pair up (default)
#   ZCOPY_MTU   veth MTU (9000)
#   ZCOPY_VFIO  1: the VFIO boot: vfio-pci loaded for the user-space driver,
#            zcard.ko not loaded (the card is left to virtio-pci until a
#            test binds it to vfio-pci)
#   ZCOPY_NODE  0|1: one of two guests; Soft-RoCE on the link between them
#            (qemu/guest/rxe-link.sh) instead of the veth pair
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${ZCOPY_RUN:?ZCOPY_RUN must name the run directory}"
export ZCOPY_RUN
# The host's settings (qemu/vm.sh writes them), exported to the command.
if [ -f "$ZCOPY_RUN/guest-env" ]; then
	set -a
	# shellcheck source=/dev/null
	. "$ZCOPY_RUN/guest-env"
	set +a
fi

setup() {
	if [ -n "${ZCOPY_NODE:-}" ]; then
		"$here/rxe-link.sh" "$ZCOPY_NODE" --mtu "${ZCOPY_MTU:-9000}" || return 1
	elif [ "${ZCOPY_RXE:-1}" = 1 ]; then
		"$here/rxe-veth.sh" up --mtu "${ZCOPY_MTU:-9000}" || return 1
	fi
	# The card's control port (virtio-serial) when the card is attached.
	if [ -d /sys/bus/pci/drivers/virtio-pci ]; then
		modprobe virtio_console 2>/dev/null || true
	fi
	if [ "${ZCOPY_VFIO:-0}" = 1 ]; then
		modprobe vfio-pci || return 1
		return 0
	fi
	# The card hook: once driver/zcard.ko is built, load it here.
	if [ -f "$ZCOPY_ROOT_DIR/driver/zcard.ko" ]; then
		insmod "$ZCOPY_ROOT_DIR/driver/zcard.ko" || return 1
	fi
}

ZCOPY_ROOT_DIR=$(cd "$here/../.." && pwd)
if ! setup >"$ZCOPY_RUN/guest-setup.log" 2>&1; then
	cat "$ZCOPY_RUN/guest-setup.log" >&2
	echo "guest setup failed" >"$ZCOPY_RUN/guest-infra"
	dmesg >"$ZCOPY_RUN/kernel.log" 2>&1
	exit 69
fi

"$@"
rc=$?
dmesg >"$ZCOPY_RUN/kernel.log" 2>&1
echo "$rc" >"$ZCOPY_RUN/guest-exit"
sync
exit "$rc"
