# shellcheck shell=bash
# Shared by the guest shell tests (tests/sh/*.sh). A test passes with exit 0,
# is skipped with exit 77, and fails otherwise; fail() says why.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# shellcheck disable=SC2034 # used by the tests that source this
ZCOPY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

# fault_case WHAT: runs `zcard-faults WHAT` (tests/bin/zcard_faults.rs), a
# platform fault that needs the host's platform helper on the virtio-serial
# port org.zcopy.platform (qemu/platform.py); skips in a boot without it.
fault_case() {
	local port
	port=$(grep -lx org.zcopy.platform /sys/class/virtio-ports/*/name 2>/dev/null || true)
	[ -n "$port" ] || skip "no platform port in this boot (ZCOPY_PLATFORM_PORT=1; ci/qemu-test.sh runs it in the faults boot)"
	"$ZCOPY_ROOT/target/debug/zcard-faults" "$1"
}
