#!/usr/bin/env bash
# The rootless path, tested from make qemu-test as root: an unprivileged user
# runs `make toolbox` (its own toolbox, mmdebstrap in unshare mode) and
# `make qemu-exec` (bubblewrap in a user namespace, the guest with the card
# and its driver) in its own copy of this tree, as a developer would.
#
#   ci/rootless-test.sh RESULTS LOGDIR
#
# The user is ZCOPY_ROOTLESS_USER when set (an existing non-root user), else
# one added for the run. It is given a subordinate-id range if it has none.
# Everything the run adds (the user, its home, the toolbox cache, the range,
# the shadow tools' /etc/*- backups) is removed or restored when it ends,
# however it ends. Appends result lines (suite, name, status, seconds, log)
# to RESULTS; the logs go to LOGDIR/rootless-*.log.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"

[ $# = 2 ] || { echo "usage: $0 RESULTS LOGDIR" >&2; exit 2; }
results=$1 logs=$2
build_name="toolbox build by an unprivileged user (make toolbox: unshare mode)"
exec_name="qemu-exec by that user (bubblewrap): guest kernel, card and driver"
row() { printf 'rootless\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }

if [ "$(id -u)" != 0 ]; then
	echo "not run: adding a user needs root; this run is itself rootless" >"$logs/rootless.log"
	row "$build_name" skip 0 "$logs/rootless.log"
	row "$exec_name" skip 0 "$logs/rootless.log"
	exit 0
fi

user=${ZCOPY_ROOTLESS_USER:-} added_user='' added_range='' pid='' work=''
# The shadow tools keep the previous /etc/passwd, /etc/subuid, ... as
# /etc/passwd-, /etc/subuid-, ...: saved here (root only) and put back.
saved=$(mktemp -d /var/tmp/zcopy-rootless-etc.XXXXXX) || exit "$ZCOPY_EXIT_INFRA"
etc_files=(passwd shadow group gshadow subuid subgid)
for f in "${etc_files[@]}" "${etc_files[@]/%/-}"; do
	if [ -e "/etc/$f" ]; then cp -p "/etc/$f" "$saved/$f"; else : >"$saved/$f.absent"; fi
done
# TMPDIR for the user's build: mmdebstrap's temporary root goes there, so
# it must be writable by the unshared root too; a lent toolchain as well.
tmpd=$(mktemp -d /var/tmp/zcopy-rootless-tmp.XXXXXX) || exit "$ZCOPY_EXIT_INFRA"
chmod 1777 "$tmpd"

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
	local f i
	if [ -n "$pid" ]; then
		kill -TERM -- "-$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	if [ -n "$added_range" ]; then
		usermod --del-subuids "$added_range" --del-subgids "$added_range" "$user" ||
			zc_warn "could not remove the subordinate ids $added_range of $user"
	fi
	if [ -n "$added_user" ]; then
		# A process of the user may take a moment to go.
		for i in 1 2 3 4 5; do
			userdel --remove "$user" 2>/dev/null && break
			sleep "$i"
		done
		id -u "$user" >/dev/null 2>&1 && zc_warn "could not remove the user $user"
	fi
	# The user and its range are gone, so the files are what they were
	# (their times put back too); the backups are restored.
	for f in "${etc_files[@]}"; do
		if [ -e "$saved/$f.absent" ]; then
			[ -s "/etc/$f" ] || rm -f "/etc/$f"
		elif cmp -s "$saved/$f" "/etc/$f"; then
			touch -r "$saved/$f" "/etc/$f"
		else
			zc_warn "/etc/$f differs from before the rootless test"
		fi
	done
	for f in "${etc_files[@]/%/-}"; do
		if [ -e "$saved/$f.absent" ]; then rm -f "/etc/$f"; else cp -p "$saved/$f" "/etc/$f"; fi
	done
	[ -n "$work" ] && rm -rf "$work"
	rm -rf "$saved" "$tmpd"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

log=$logs/rootless-setup.log
: >"$log"
setup_fail() {
	echo "$*" >>"$log"
	zc_warn "rootless test: $*"
	row "$build_name" fail 0 "$log"
	row "$exec_name" fail 0 "$log"
	exit 0
}

# The user: added with a home of its own under /home, or the one named,
# with a directory of the run's in its home.
if [ -z "$user" ]; then
	user=zcopy-rootless-$$
	useradd --create-home --shell /bin/bash --user-group --no-log-init \
		-K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user" >>"$log" 2>&1 ||
		setup_fail "useradd $user failed"
	added_user=1
	home=$(getent passwd "$user" | cut -d: -f6)
	work=$home
else
	uid=$(id -u "$user" 2>/dev/null) || setup_fail "ZCOPY_ROOTLESS_USER=$user: no such user"
	[ "$uid" != 0 ] || setup_fail "ZCOPY_ROOTLESS_USER=$user is root"
	home=$(getent passwd "$user" | cut -d: -f6)
	work=$(runuser -u "$user" -- mktemp -d "$home/zcopy-rootless.XXXXXX") ||
		setup_fail "cannot make a directory in $home as $user"
fi

if [ "$(zc_subid_count "$user" /etc/subuid)" -lt 65536 ] ||
	[ "$(zc_subid_count "$user" /etc/subgid)" -lt 65536 ]; then
	s=$(zc_subid_free)
	added_range=$s-$((s + 65535))
	usermod --add-subuids "$added_range" --add-subgids "$added_range" "$user" >>"$log" 2>&1 ||
		{ added_range=; setup_fail "usermod --add-subuids $s-$((s + 65535)) $user failed"; }
	# mmdebstrap uses the first range that names the user.
	[ "$(zc_subid_count "$user" /etc/subuid)" -ge 65536 ] ||
		setup_fail "$user has a smaller subordinate-id range before the one added"
fi

# A Rust toolchain on the user's PATH (make's bootstrap checks for cargo):
# the user's own, else this one's, linked in (no copy, if on the same disk).
path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if cargo=$(runuser -l "$user" -c 'command -v cargo' 2>/dev/null) && [ -n "$cargo" ]; then
	path=$(dirname "$cargo"):$path
else
	sysroot=$(rustc --print sysroot 2>>"$log") || setup_fail "no Rust toolchain to lend $user"
	cp -al "$sysroot" "$tmpd/rust" 2>/dev/null || cp -a "$sysroot" "$tmpd/rust" ||
		setup_fail "could not copy the toolchain $sysroot"
	path=$tmpd/rust/bin:$path
fi

# The user's copy of this tree (sources, the built driver) and of the card.
proj=$work/zcopy
mkdir -p "$proj/target/debug" "$work/cache"
tar -C "$ZCOPY_ROOT" --exclude=./target --exclude=./.git -cf - . | tar -C "$proj" -xf - ||
	setup_fail "could not copy the tree to $proj"
card=$ZCOPY_ROOT/target/debug/zcard-vhost
[ -x "$card" ] || setup_fail "the card is not built ($card): cargo build -p zcard-vhost --bins"
cp "$card" "$proj/target/debug/"
chown -R "$user:" "$proj" "$work/cache"

# as_user SECS LOG CMD...: run CMD as the user in its copy, with a clean
# environment, bounded by SECS; returns its exit code.
as_user() {
	local secs=$1 out=$2 rc
	shift 2
	# timeout leads its own process group: the trap stops all of it.
	timeout -k 10 "$secs" runuser -u "$user" -- env -i HOME="$home" USER="$user" \
		LOGNAME="$user" PATH="$path" TMPDIR="$tmpd" ZCOPY_CACHE="$work/cache" \
		${ZCOPY_MIRROR:+ZCOPY_MIRROR="$ZCOPY_MIRROR"} make -C "$proj" "$@" >"$out" 2>&1 &
	pid=$!
	wait "$pid"
	rc=$?
	pid=
	return "$rc"
}

zc_log "rootless: make toolbox as $user (its own toolbox: a second mmdebstrap run)"
log=$logs/rootless-toolbox.log
start=$(date +%s)
as_user 1800 "$log" toolbox
rc=$?
secs=$(($(date +%s) - start))
tb=$(find "$work/cache" -maxdepth 1 -name 'toolbox-*' -type d ! -name '*.partial' | head -n1)
kernel=$(sed -n 's/^ZCOPY_KERNEL_ABI=//p' "$ZCOPY_ROOT/qemu/toolbox/recipe.sh")
if [ "$rc" = 0 ] && [ -f "$tb/.zcopy-toolbox" ] &&
	runuser -u "$user" -- test -r "$tb/boot/vmlinuz-$kernel"; then
	st=pass
	zc_log "rootless: toolbox built in $(cat "$tb/.zcopy-build-seconds") s (make toolbox: $secs s), $(cat "$tb/.zcopy-size-mib") MiB"
else
	st=fail
	tail -n 30 "$log" >&2
fi
row "$build_name" "$st" "$secs" "$log"
if [ "$st" = fail ]; then
	row "$exec_name" fail 0 "$log"
	exit 0
fi

zc_log "rootless: make qemu-exec as $user"
log=$logs/rootless-qemu-exec.log
# What the guest must show: the pinned kernel, the card on the PCI bus, and
# the driver's device when the tree has the driver built.
check="uname -r && lspci -n -d 1af4:1066"
[ -f "$proj/driver/zcard.ko" ] && check+=" && ls /dev/zcard0"
start=$(date +%s)
as_user 900 "$log" qemu-exec CMD="$check"
rc=$?
secs=$(($(date +%s) - start))
if [ "$rc" = 0 ] && grep -qx "$kernel" "$log" && grep -q "1af4:1066" "$log" &&
	{ [ ! -f "$proj/driver/zcard.ko" ] || grep -qx /dev/zcard0 "$log"; }; then
	st=pass
else
	st=fail
	tail -n 30 "$log" >&2
fi
cp "$proj/target/qemu/console.log" "$logs/rootless-console.log" 2>/dev/null
row "$exec_name" "$st" "$secs" "$log"
exit 0
