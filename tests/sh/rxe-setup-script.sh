#!/usr/bin/env bash
# scripts/rxe-setup.sh on a veth of its own (zct0/zct1, 169.254.88.0/24):
# setup with verification, an idempotent re-run, --status, --teardown, and
# the errors a person can act on.
set -euo pipefail
# shellcheck source=tests/sh/lib.sh
. "$(dirname "$0")/lib.sh"
S=$ZCOPY_ROOT/scripts/rxe-setup.sh

ip link add zct0 type veth peer name zct1
trap 'ip link del zct0 2>/dev/null; rm -rf "$T"' EXIT
ip addr add 169.254.88.1/24 dev zct0
ip link set zct0 up
ip link set zct1 up

expect() { # expect RC CMD...: run CMD, its exit code must be RC
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>&1 || rc=$?
	cat "$T/out"
	[ "$rc" = "$want" ] || fail "'$*' exited $rc, expected $want"
}
devices_on() { rdma link show | grep -c " netdev $1 " || true; }

expect 3 "$S" --status zct0
expect 0 "$S" zct0
grep -q 'created rxe device rxe_zct0 on zct0' "$T/out" || fail "setup did not say what it created"
grep -q 'verified: rxe_zct0 PORT_ACTIVE' "$T/out" || fail "setup did not verify the device"
[ "$(devices_on zct0)" = 1 ] || fail "expected one rxe device on zct0"

expect 0 "$S" zct0
grep -q 'already on zct0' "$T/out" || fail "re-run did not notice the existing device"
[ "$(devices_on zct0)" = 1 ] || fail "re-run created a second device"

expect 0 "$S" --status zct0
grep -q 'ACTIVE' "$T/out" || fail "--status does not show the port state"

# The other guest devices are untouched by all of this.
[ "$(devices_on zcv0)" = 1 ] || fail "zrxe0 on zcv0 was disturbed"

expect 0 "$S" --teardown zct0
[ "$(devices_on zct0)" = 0 ] || fail "teardown left the device behind"
expect 0 "$S" --teardown zct0
expect 3 "$S" --status zct0
[ "$(devices_on zcv0)" = 1 ] || fail "teardown removed a device it did not create"

# A device the script did not create is not its to remove.
rdma link add other_zct0 type rxe netdev zct0
expect 0 "$S" zct0
grep -q 'already on zct0' "$T/out" || fail "setup did not take the existing device"
expect 0 "$S" --teardown zct0
grep -q 'not created by rxe-setup.sh: left alone' "$T/out" || fail "teardown did not say it left the device"
[ "$(devices_on zct0)" = 1 ] || fail "teardown removed a device it did not create"
rdma link delete other_zct0

expect 2 "$S" no-such-if0
grep -q "no network interface 'no-such-if0'" "$T/out" || fail "unknown netdev message"
expect 2 "$S" --bogus
# The guest has no default route (no network device to the outside).
expect 2 "$S"
grep -q 'no default route' "$T/out" || fail "missing default-route message"
expect 2 "$S" --name 'bad name' zct0
# Without an IPv4 address there is no IPv4 GID to verify over.
expect 1 "$S" zct1
grep -q 'no IPv4 RoCE v2 GID' "$T/out" || fail "missing-IPv4 message"
expect 0 "$S" --teardown zct1
echo ok
