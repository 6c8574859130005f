#!/usr/bin/env bash
# The rootless path, tested from make qemu-test as root: an unprivileged user
# runs `make toolbox` (its own toolbox, mmdebstrap in unshare mode) and
# `make qemu-exec` (bubblewrap in a user namespace, the guest with the card
# and its driver) in its own copy of this tree, as a developer would.
#
#   ci/rootless-test.sh start RESULTS LOGDIR   set up and build the toolbox,
#                                              in the background at low
#                                              priority; returns at once
#   ci/rootless-test.sh finish LOGDIR          then copy the card and driver
#                                              built meanwhile, boot the
#                                              guest, clean up; waits for it
#
# The user is ZCOPY_ROOTLESS_USER when set (an existing non-root user), else
# one added for the run. It is given a subordinate-id range if it has none.
# Everything the run adds (the user, its home, the toolbox cache, the range,
# the shadow tools' /etc/*- backups) is removed or restored when it ends,
# however it ends; it also ends, cleaning up, when the process that started
# it goes away; processes the run leaves behind (the added user's, and those
# in the added subordinate-id range) are killed first. Appends result lines (suite, name, status, seconds, log) to
# RESULTS; its output is LOGDIR/rootless.log, the steps' LOGDIR/rootless-*.log.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"

usage() { echo "usage: $0 start RESULTS LOGDIR | finish LOGDIR" >&2; exit 2; }
build_name="toolbox build by an unprivileged user (make toolbox: unshare mode)"
exec_name="qemu-exec by that user (bubblewrap): guest kernel, card and driver"

case ${1:-} in
start)
	[ $# = 3 ] || usage
	results=$2 logs=$3
	rm -f "$logs/rootless.go" "$logs/rootless.pid"
	if [ "$(id -u)" != 0 ]; then
		echo "not run: adding a user needs root, and this run is itself rootless" >"$logs/rootless.log"
		for n in "$build_name" "$exec_name"; do
			printf 'rootless\t%s\tskip\t0\t%s\n' "$n" "$logs/rootless.log" >>"$results"
		done
		exit 0
	fi
	zc_log "rootless: a user's toolbox build starts in the background (log: $logs/rootless.log)"
	"$0" run "$results" "$logs" "$PPID" </dev/null >"$logs/rootless.log" 2>&1 &
	echo "$!" >"$logs/rootless.pid"
	exit 0
	;;
finish)
	[ $# = 2 ] || usage
	logs=$2
	[ -f "$logs/rootless.pid" ] || exit 0
	zc_log "rootless: the user's toolbox build and guest (log: $logs/rootless.log)"
	: >"$logs/rootless.go"
	read -r pid <"$logs/rootless.pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 1; done
	cat "$logs/rootless.log" >&2
	exit 0
	;;
run) [ $# = 4 ] || usage; results=$2 logs=$3 parent=$4 ;;
*) usage ;;
esac

# row NAME STATUS SECONDS LOG: one result line; the cases without one when
# the run ends some other way fail (in cleanup).
declare -A recorded=()
row() {
	printf 'rootless\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"
	recorded[$1]=1
}
# The run stops (and cleans up) once whoever started it is gone.
parent_alive() { kill -0 "$parent" 2>/dev/null || { zc_warn "rootless test: its caller ended; stopping"; exit 1; }; }

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

# retry CMD...: CMD, tried again for up to 15 s while it fails.
# shellcheck disable=SC2329 # invoked by cleanup
retry() {
	local i
	for i in 1 2 3 4 5; do
		"$@" 2>/dev/null && return 0
		sleep "$i"
	done
	"$@"
}

# kill_uids LO HI: SIGKILL every process whose real uid is in LO..HI, until
# none is left; false if some are still there after 15 s.
# shellcheck disable=SC2329 # invoked by cleanup
kill_uids() {
	local lo=$1 hi=$2 i p k v left
	for i in $(seq 30); do
		left=0
		for p in /proc/[0-9]*; do
			v=
			while read -r k v _; do [ "$k" = Uid: ] && break; v=; done 2>/dev/null <"$p/status"
			[ -n "$v" ] && [ "$v" -ge "$lo" ] && [ "$v" -le "$hi" ] || continue
			kill -KILL "${p#/proc/}" 2>/dev/null
			left=1
		done
		[ "$left" = 0 ] && return 0
		[ "$i" = 30 ] || sleep 0.5
	done
	return 1
}

# shellcheck disable=SC2329 # invoked by the EXIT trap
cleanup() {
	local f uid
	if [ -n "$pid" ]; then
		kill -TERM -- "-$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	# What the process group did not take with it: mmdebstrap's children in
	# their user namespace (uids of the added range) and anything else the
	# added user still runs. Until they are gone the shadow tools refuse to
	# change the user. A user named by ZCOPY_ROOTLESS_USER keeps its own
	# processes.
	if [ -n "$added_range" ]; then
		kill_uids "${added_range%-*}" "${added_range#*-}" ||
			zc_warn "processes in the subordinate ids $added_range outlived the rootless test"
	fi
	if [ -n "$added_user" ] && uid=$(id -u "$user" 2>/dev/null); then
		kill_uids "$uid" "$uid" || zc_warn "processes of $user outlived the rootless test"
	fi
	if [ -n "$added_range" ]; then
		retry usermod --del-subuids "$added_range" --del-subgids "$added_range" "$user" ||
			zc_warn "could not remove the subordinate ids $added_range of $user"
	fi
	if [ -n "$added_user" ]; then
		retry userdel --remove "$user" || zc_warn "could not remove the user $user"
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
	for f in "$build_name" "$exec_name"; do
		[ -n "${recorded[$f]:-}" ] || row "$f" fail 0 "$logs/rootless.log"
	done
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

# The user's copy of this tree (its sources; the card and the driver come
# once they are built).
proj=$work/zcopy
mkdir -p "$proj/target/debug" "$work/cache"
tar -C "$ZCOPY_ROOT" --exclude=./target --exclude=./.git --exclude='./driver/*.ko' -cf - . |
	tar -C "$proj" -xf - || setup_fail "could not copy the tree to $proj"
chown -R "$user:" "$proj" "$work/cache"

# Unprivileged user namespaces may be off by the host's policy (Ubuntu
# 24.04's AppArmor restriction, a sysctl): then the path cannot run here.
if ! runuser -u "$user" -- unshare --user --map-root-user true >>"$log" 2>&1; then
	echo "not run: this host does not let unprivileged users create user namespaces (README: Without root)" >>"$log"
	zc_warn "rootless test skipped: this host does not let unprivileged users create user namespaces"
	row "$build_name" skip 0 "$log"
	row "$exec_name" skip 0 "$log"
	exit 0
fi

# as_user SECS LOG CMD...: run CMD as the user in its copy, with a clean
# environment, bounded by SECS, prefixed by ${prio[@]} (a lowered priority,
# raised again once the suite is done); returns its exit code.
prio=()
as_user() {
	local secs=$1 out=$2 rc
	shift 2
	# timeout leads its own process group: the trap stops all of it.
	"${prio[@]}" timeout -k 10 "$secs" runuser -u "$user" -- env -i HOME="$home" USER="$user" \
		LOGNAME="$user" PATH="$path" TMPDIR="$tmpd" ZCOPY_CACHE="$work/cache" \
		${ZCOPY_MIRROR:+ZCOPY_MIRROR="$ZCOPY_MIRROR"} make -C "$proj" "$@" >"$out" 2>&1 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		parent_alive
		# Once the suite is done, nothing is left to yield to.
		if [ ${#prio[@]} -gt 0 ] && [ -e "$logs/rootless.go" ]; then
			renice -n 0 -g "$pid" >/dev/null 2>&1
			ionice -c 2 -P "$pid" 2>/dev/null
			prio=()
		fi
		sleep 1
	done
	wait "$pid"
	rc=$?
	pid=
	return "$rc"
}

zc_log "rootless: make toolbox as $user (its own toolbox: a second mmdebstrap run)"
log=$logs/rootless-toolbox.log
start=$(date +%s)
# Beside the rest of the suite, so at the lowest CPU and I/O priority.
prio=(nice -n 19 ionice -c 3 -t)
as_user 1800 "$log" toolbox
rc=$?
prio=()
secs=$(($(date +%s) - start))
tb=$(find "$work/cache" -maxdepth 1 -name 'toolbox-*' -type d ! -name '*.partial' | head -n1)
kernel=$(sed -n 's/^ZCOPY_KERNEL_STOCK=//p' "$ZCOPY_ROOT/qemu/toolbox/recipe.sh")
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

# The guest boots once the suite's own guests are done and the card and
# driver are built.
while [ ! -e "$logs/rootless.go" ]; do
	parent_alive
	sleep 1
done
log=$logs/rootless-qemu-exec.log
card=$ZCOPY_ROOT/target/debug/zcard-vhost
if [ ! -x "$card" ]; then
	echo "the card is not built ($card): cargo build -p zcard-vhost --bins" >"$log"
	row "$exec_name" fail 0 "$log"
	exit 0
fi
cp "$card" "$proj/target/debug/"
[ -f "$ZCOPY_ROOT/driver/zcard.ko" ] && cp "$ZCOPY_ROOT/driver/zcard.ko" "$proj/driver/"
chown -R "$user:" "$proj/target" "$proj/driver"

zc_log "rootless: make qemu-exec as $user"
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
