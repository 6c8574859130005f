#!/usr/bin/env bash
# The VM runner: boot the zcopy guest and run one command in it.
#
#   qemu/run.sh [--timeout SECS] [--interactive] [--no-rxe] [--vfio] [--] CMD...
#
# The guest: the pinned kernel of the toolbox, booted by virtme-ng with the
# toolbox as its root and this project shared read-write at the same path,
# 2 vCPUs, guest RAM in a shared memfd (vhost-user needs it), no network
# device (-net none), Soft-RoCE up on a veth pair (unless --no-rxe), the card
# attached and its driver loaded once they are built.
#
# --vfio: the boot for the user-space driver (userspace/zcard-vfio,
# docs/vfio.md): q35 with an emulated Intel IOMMU ahead of the card,
# intel_iommu=on iommu=pt, 16 hugepages of 2 MiB reserved, the card started
# without VIRTIO_F_ACCESS_PLATFORM (so it uses guest-physical addresses),
# vfio-pci loaded and zcard.ko not.
#
# Exit code: the guest command's, or 69 for an infrastructure failure
# (toolbox, QEMU, side daemon, boot or run timeout), or 1 when the command
# passed but the guest kernel log shows a WARN/BUG/Oops (printed).
# Logs: target/qemu/ (console.log, kernel.log, guest-setup.log, daemons).
#
# Environment: ZCOPY_KERNEL=stock|backports|debug (the guest kernel, see
# qemu/toolbox/recipe.sh), ZCOPY_ACCEL=auto|kvm|tcg, ZCOPY_VM_MEM (2G), ZCOPY_VM_CPUS (2),
# ZCOPY_APPEND (extra kernel parameters, e.g. swiotlb=force), ZCOPY_MTU (9000),
# ZCOPY_RUN_DIR (run directory, target/qemu), ZCOPY_NODE=0|1 with ZCOPY_LINK=SOCKET
# (one of two guests joined by a virtio-net link over a unix socket, QEMU
# -netdev stream; node 0 listens on SOCKET: see ci/qemu-test-2node.sh).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/lib.sh"

timeout=1800 interactive=0
export ZCOPY_RXE=1
while [ $# -gt 0 ]; do
	case $1 in
	--timeout) timeout=$2; shift 2 ;;
	--interactive) interactive=1; shift ;;
	--no-rxe) ZCOPY_RXE=0; shift ;;
	--vfio) export ZCOPY_VFIO=1; shift ;;
	--) shift; break ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || set -- bash -l
case $timeout in '' | *[!0-9]*) echo "run.sh: --timeout takes seconds" >&2; exit 2 ;; esac

tb() { "$here/toolbox/toolbox.sh" "$@"; }
toolbox=$(tb path) || exit "$ZCOPY_EXIT_INFRA"

# accel: KVM when it really boots a standard guest, TCG otherwise. /dev/kvm
# can exist and still fail (nested virtualisation that cannot run this
# kernel hangs or stops with "KVM internal error"), so the first run on a
# machine makes a bounded trial boot and caches the verdict per host kernel,
# QEMU and guest kernel.
accel() {
	case ${ZCOPY_ACCEL:-auto} in
	kvm | tcg) echo "$ZCOPY_ACCEL"; return ;;
	auto) ;;
	*) zc_infra "ZCOPY_ACCEL must be auto, kvm or tcg" ;;
	esac
	if [ ! -w /dev/kvm ]; then echo tcg; return; fi
	local f
	f="$(zc_cache_dir)/kvm-probe-$(uname -r)-$(basename "$toolbox")"
	if [ ! -f "$f" ]; then
		zc_log "probing KVM with a trial boot (once per machine, at most 30 s)"
		local out
		out=$(timeout -k 5 30 "$here/toolbox/toolbox.sh" enter \
			vng --run "$image" --user root --memory 512M \
			--exec 'echo zcopy-kvm-ok' </dev/null 2>&1)
		if grep -q zcopy-kvm-ok <<<"$out"; then echo kvm >"$f"; else echo tcg >"$f"; fi
	fi
	cat "$f"
}
image=$(tb kernel) || exit "$ZCOPY_EXIT_INFRA"

acc=$(accel)
run=${ZCOPY_RUN_DIR:-$ZCOPY_ROOT/target/qemu}
mkdir -p "$run"
rm -f "$run"/{console,kernel,guest-setup}.log "$run"/guest-exit "$run"/guest-infra
zc_log "booting the guest ($acc, ${ZCOPY_KERNEL:-stock} kernel $image); logs in target/qemu/"

if [ "$interactive" = 1 ]; then
	"$here/toolbox/toolbox.sh" enter "$here/vm.sh" "$run" "$acc" 1 -- "$@"
	exit $?
fi

# The guest runs in the toolbox's PID namespace (bubblewrap) under timeout.
# Stopping bubblewrap tears the namespace down, QEMU and daemons included;
# it is stopped here on Ctrl-C, TERM and HUP, and through the parent-death
# signal even when this script is killed outright (timeout runs in its own
# process group, so a terminal's Ctrl-C does not reach it by itself).
start=$(date +%s.%N)
setpriv --pdeathsig TERM -- timeout -k 10 "$timeout" \
	"$here/toolbox/toolbox.sh" enter "$here/vm.sh" "$run" "$acc" 0 -- "$@" &
guest=$!
trap 'kill -TERM "$guest" 2>/dev/null; wait "$guest"; zc_infra "interrupted; the guest was stopped"' INT TERM HUP
wait "$guest"
rc=$?
trap - INT TERM HUP
awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", e - s }' >"$run/seconds"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
	tail -n 50 "$run/console.log" >&2 2>/dev/null
	zc_infra "the guest run exceeded ${timeout} s and was stopped; console: target/qemu/console.log"
fi
[ "$rc" = "$ZCOPY_EXIT_INFRA" ] && exit "$rc"

# Every guest run fails on a kernel log that shows the kernel in trouble.
if ! zc_kernel_log_ok "$run/kernel.log" && [ "$rc" = 0 ]; then rc=1; fi
exit "$rc"
