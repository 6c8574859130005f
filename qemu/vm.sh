#!/usr/bin/env bash
# Inside the toolbox (called by qemu/run.sh): start the side processes the
# guest needs, boot the pinned kernel with virtme-ng and run one command in
# it. Runs in the toolbox's own PID namespace, so everything started here dies
# with it; the trap below also stops things in order on a normal exit.
#
#   vm.sh RUN_DIR ACCEL INTERACTIVE -- CMD...
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/lib.sh"

run=$1 accel=$2 interactive=$3
shift 4

pids=()
# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# side NAME SOCKET CMD...: start a side process (its log in $run/NAME.log)
# and wait until it listens on SOCKET; an early exit or no socket within 10 s
# is an infrastructure failure.
side() {
	local name=$1 sock=$2
	shift 2
	rm -f "$sock"
	"$@" >"$run/$name.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 100); do
		[ -S "$sock" ] && return 0
		kill -0 "${pids[-1]}" 2>/dev/null || { cat "$run/$name.log" >&2; zc_infra "$name exited before listening on $sock"; }
		sleep 0.1
	done
	zc_infra "$name did not listen on $sock within 10 s (log: $run/$name.log)"
}

# platform_port: the guest's port to the host for platform faults
# (ZCOPY_PLATFORM_PORT=1): the virtio-serial port org.zcopy.platform to
# qemu/platform.py, which kills and restarts the card's process and unplugs
# and replugs the card through QMP when a guest test asks. The card then sits
# behind a PCIe root port of its own: q35's root bus takes no hotplug.
platform_port() {
	qemu_opts+=(-device "pcie-root-port,id=zcport,chassis=38")
	card_dev+=",bus=zcport"
	side platform "$run/platform.sock" python3 "$here/platform.py" \
		--socket "$run/platform.sock" --qmp "$run/qmp.sock" \
		--card-pid "$card_pid" --card-log "$run/zcard-vhost.log" \
		--card-socket "$run/zcard.sock" --card-device "$card_dev" -- "${card_cmd[@]}"
	qemu_opts+=(-device "virtio-serial-pci,id=zcplatser"
		-chardev "socket,id=zcplat,path=$run/platform.sock"
		-device "virtserialport,bus=zcplatser.0,chardev=zcplat,name=org.zcopy.platform")
}

qemu_opts=()
# The VFIO boot (run.sh --vfio): an emulated IOMMU, created before the card
# so the card sits in an IOMMU group of its own. Interrupt remapping needs
# a split irqchip under KVM; there the boot goes without it and vfio is
# told to accept that (allow_unsafe_interrupts).
vfio_append=
if [ "${ZCOPY_VFIO:-0}" = 1 ]; then
	if [ "$accel" = kvm ]; then
		qemu_opts+=(-machine q35 -device "intel-iommu,intremap=off")
		vfio_append=" vfio_iommu_type1.allow_unsafe_interrupts=1"
	else
		qemu_opts+=(-device "intel-iommu,intremap=on")
	fi
	vfio_append="intel_iommu=on iommu=pt hugepages=16$vfio_append"
fi
# The card hook: when the device model is built, it attaches here as a
# DMA-capable virtio PCI card (virtio-id 38).
card=${ZCOPY_CARD_BIN:-$ZCOPY_ROOT/target/debug/zcard-vhost}
# Its control socket reaches the guest as the virtio-serial port
# org.zcopy.zcard.ctl (JSON lines, docs/zcard-spec.md), so guest tests can
# inject faults and read counters; after the run its counters are saved in
# $run/zcard-stats.json.
card_ctl=
if [ -x "$card" ]; then
	card_ctl=$run/zcard.ctl
	# ZCOPY_CARD_ARGS: extra options, split on spaces (e.g. "--fault stall:queue=0").
	read -ra card_args <<<"${ZCOPY_CARD_ARGS:-}"
	# In the VFIO boot the card does not offer ACCESS_PLATFORM: with it, QEMU
	# would put it behind the IOMMU and send IOTLB messages the back end
	# cannot serve (docs/vfio.md). Queues of 256 there, so 32 copies (4
	# descriptors each) fit in one.
	card_vq_size=
	if [ "${ZCOPY_VFIO:-0}" = 1 ]; then
		card_args+=(--no-access-platform)
		card_vq_size=256
	fi
	# The storage is a file of this run, fresh at each boot, so that it
	# outlives the card's process when a test kills and restarts it.
	rm -f "$run/zcard.storage"
	card_cmd=("$card" --socket "$run/zcard.sock" --control "$card_ctl"
		--queues "${ZCOPY_CARD_QUEUES:-2}" --storage "$run/zcard.storage"
		--storage-size "${ZCOPY_CARD_STORAGE:-64M}" "${card_args[@]}")
	card_dev="vhost-user-test-device-pci,id=zcard,chardev=zcard,virtio-id=38,num_vqs=${ZCOPY_CARD_QUEUES:-2},config_size=${ZCOPY_CARD_CONFIG:-64}${card_vq_size:+,vq_size=$card_vq_size}"
	side zcard-vhost "$run/zcard.sock" "${card_cmd[@]}"
	card_pid=${pids[-1]}
	[ "${ZCOPY_PLATFORM_PORT:-0}" = 1 ] && platform_port
	# The control port's chardev reconnects, so it comes back with a
	# restarted card.
	qemu_opts+=(-chardev "socket,id=zcard,path=$run/zcard.sock"
		-device "$card_dev"
		-device "virtio-serial-pci,id=zcser"
		-chardev "socket,id=zcctl,path=$card_ctl,reconnect-ms=200"
		-device "virtserialport,bus=zcser.0,chardev=zcctl,name=org.zcopy.zcard.ctl")
fi
# QEMU's monitor, for qemu/platform.py and for a person debugging a run.
qemu_opts+=(-qmp "unix:$run/qmp.sock,server=on,wait=off")

# Two-node runs: a virtio-net NIC joined to the other guest's over a unix
# socket (no host network involved); node 0 is the listening end.
if [ -n "${ZCOPY_NODE:-}" ]; then
	case $ZCOPY_NODE in
	0) link="server=on" ;;
	1) link="server=off,reconnect-ms=200" ;;
	*) zc_infra "ZCOPY_NODE must be 0 or 1" ;;
	esac
	qemu_opts+=(-netdev "stream,id=zlink,$link,addr.type=unix,addr.path=${ZCOPY_LINK:?ZCOPY_LINK names the link socket}"
		-device "virtio-net-pci,netdev=zlink,mac=52:54:00:7a:00:0$ZCOPY_NODE,host_mtu=9000")
fi

vng_args=(
	--run "${ZCOPY_KERNEL_IMAGE:?the guest kernel image, set by qemu/toolbox/toolbox.sh}"
	--cpus "${ZCOPY_VM_CPUS:-2}"
	--memory "${ZCOPY_VM_MEM:-2G}" --numa "${ZCOPY_VM_MEM:-2G}"
	--rwdir "$ZCOPY_ROOT=$ZCOPY_ROOT"
	--cwd "$ZCOPY_ROOT"
	--user root
	--name "zcopy-guest${ZCOPY_NODE:-}"
)
[ "$accel" = tcg ] && vng_args+=(--disable-kvm)
# The debug kernel's modules live in its cache directory, which the guest's
# root (9p with overlays on /lib and /var) does not show: share it as is.
if [ "${ZCOPY_KERNEL:-stock}" = debug ]; then
	kdir=$(dirname "$ZCOPY_KERNEL_IMAGE")
	vng_args+=(--rodir "$kdir=$kdir")
fi
append="${ZCOPY_APPEND:-}${ZCOPY_APPEND:+${vfio_append:+ }}$vfio_append"
[ -n "$append" ] && vng_args+=(--append "$append")
# ZCOPY_VERBOSE=1: the kernel's console messages (a panic, say) in the output.
[ "${ZCOPY_VERBOSE:-0}" = 1 ] && vng_args+=(--verbose)
# "=" form: the value starts with a dash, which argparse would take for an option.
[ ${#qemu_opts[@]} -gt 0 ] && vng_args+=("--qemu-opts=${qemu_opts[*]}")

# Settings reach the guest in $run/guest-env, which qemu/guest/init.sh loads:
# the guest's own (with their defaults), then every other ZCOPY_ variable of
# this environment, so that a knob set on the host (ZCOPY_PROPTEST_CASES,
# ZCOPY_CARD_QUEUES, ...) is seen by the tests in the guest too. A file, not
# the kernel command line that carries guest_cmd (2 KiB at most).
{
	printf 'ZCOPY_RXE=%q\nZCOPY_MTU=%q\nZCOPY_NODE=%q\n' "${ZCOPY_RXE:-1}" "${ZCOPY_MTU:-9000}" "${ZCOPY_NODE:-}"
	for v in $(compgen -e); do
		case $v in ZCOPY_RUN | ZCOPY_RXE | ZCOPY_MTU | ZCOPY_NODE) ;; ZCOPY_*) printf '%s=%q\n' "$v" "${!v}" ;; esac
	done
} >"$run/guest-env"
guest_cmd="env ZCOPY_RUN=$(printf %q "$run") $(printf %q "$here/guest/init.sh")"
guest_cmd+=" $(printf '%q ' "$@")"

if [ "$interactive" = 1 ]; then
	vng "${vng_args[@]}" --exec "$guest_cmd"
else
	vng "${vng_args[@]}" --exec "$guest_cmd" </dev/null 2>&1 | tee "$run/console.log"
fi
vng_rc=${PIPESTATUS[0]}

if [ -n "$card_ctl" ] && [ -S "$card_ctl" ]; then
	python3 - "$card_ctl" >"$run/zcard-stats.json" 2>>"$run/zcard-vhost.log" <<'PY' || true
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(5)
s.connect(sys.argv[1])
s.sendall(b'{"cmd":"stats"}\n')
print(json.dumps(json.loads(s.makefile().readline()), indent=1))
PY
fi

if [ -f "$run/guest-infra" ]; then
	zc_infra "$(cat "$run/guest-infra") (log: $run/guest-setup.log)"
fi
if [ ! -f "$run/guest-exit" ]; then
	tail -n 50 "$run/console.log" >&2 2>/dev/null
	zc_infra "the guest did not report an exit code (vng/QEMU exit $vng_rc); console: $run/console.log (ZCOPY_VERBOSE=1 shows the kernel console, e.g. a panic)"
fi
exit "$(cat "$run/guest-exit")"
