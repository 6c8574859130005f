#!/usr/bin/env bash
# The toolbox: a cached Debian trixie root (see recipe.sh) that QEMU, the
# device model and the module build run in.
#
#   toolbox.sh path            print the toolbox directory, building it if needed
#   toolbox.sh build           rebuild it now, even if a cached one exists
#   toolbox.sh enter CMD...    run CMD inside it (bubblewrap)
#   toolbox.sh kernel          print the guest kernel image, building the
#                              debug kernel first if it is selected and not cached
#
# ZCOPY_KERNEL (stock, backports or debug; see recipe.sh) selects the guest
# kernel; each has its own toolbox. The debug kernel is cached beside them in
# kernel-debug-KEY, KEY a hash of the linux-source-6.12 version, its config
# fragment (qemu/kernel/debug.config) and its build script.
#
# Entering uses a private mount and PID namespace that dies with its parent:
# whatever way the caller exits (Ctrl-C, kill, timeout), the kernel tears down
# every mount and kills every process started inside. Nothing is left behind.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../lib.sh"
# shellcheck source=qemu/toolbox/recipe.sh
. "$here/recipe.sh"

cache=$(zc_cache_dir)
key=$({ cat "$here/recipe.sh"; echo "$ZCOPY_KERNEL"; } | sha256sum | cut -c1-16)
dir=$cache/toolbox-$ZCOPY_KERNEL-$key
stamp=$dir/.zcopy-toolbox

# rootless_check build|enter: the checks a non-root user needs to pass
# before building (user namespaces, uidmap, subordinate ids) or entering
# (user namespaces) the toolbox, each failing with what to do about it.
rootless_check() {
	unshare --user --map-root-user true 2>/dev/null ||
		zc_infra "this user cannot create user namespaces, which the rootless toolbox needs: as root, 'sysctl -w user.max_user_namespaces=15000' (older Debian kernels also 'kernel.unprivileged_userns_clone=1', Ubuntu 24.04 'kernel.apparmor_restrict_unprivileged_userns=0')"
	[ "$1" = build ] || return 0
	{ command -v newuidmap && command -v newgidmap; } >/dev/null ||
		zc_infra "newuidmap/newgidmap are missing (mmdebstrap's unshare mode needs them): run 'sudo apt-get install uidmap' (or 'make bootstrap' with sudo)"
	local user f start
	user=$(id -un)
	for f in /etc/subuid /etc/subgid; do
		# The toolbox's ids run from 0 to 65534 (nobody).
		[ "$(zc_subid_count "$user" "$f")" -ge 65536 ] && continue
		start=$(zc_subid_free)
		zc_infra "user $user has no range of at least 65536 subordinate ids in $f (mmdebstrap's unshare mode maps the toolbox's users onto /etc/subuid and /etc/subgid): as root, 'usermod --add-subuids $start-$((start + 65535)) --add-subgids $start-$((start + 65535)) $user'"
	done
}

# rm_tree DIR: remove DIR. Without root, a directory the user may not write
# is made writable first, and a root that mmdebstrap built in place in
# unshare mode (owned by the subordinate ids) is emptied from a user
# namespace mapped onto them (mmdebstrap --unshare-helper).
rm_tree() {
	[ -e "$1" ] || return 0
	rm -rf "$1" 2>/dev/null && return 0
	chmod -R u+rwX "$1" 2>/dev/null || true
	rm -rf "$1" 2>/dev/null && return 0
	mmdebstrap --unshare-helper find "$1" -mindepth 1 -delete 2>/dev/null || true
	rm -rf "$1"
}

# build_rootless DIR LOG: build the root into DIR as a non-root user.
# mmdebstrap's unshare mode builds in a user namespace whose root is the
# first subordinate id, so a directory it builds belongs to those ids, not to
# this user: this user could neither read /boot/vmlinuz-* (mode 0600) nor
# add the stamps and mount points below. So the build comes out as a tarball
# (its owners exactly as in root mode) that this user unpacks: every file is
# then its own, and entering the toolbox maps this user to root. Device
# nodes are left out (the toolbox binds the host's /dev), and setuid bits
# are dropped so that no other user runs one of these files as this user.
build_rootless() {
	local dir=$1 log=$2
	mkdir "$dir" || return 1
	# The temporary root goes to a disk-backed directory the unshared
	# root can write (/tmp may be a small tmpfs).
	{
		TMPDIR=${TMPDIR:-/var/tmp} zc_recipe_build - unshare |
			tar -x -C "$dir" --exclude='./dev/*'
	} 2>"$log" || return 1
	find "$dir" -xdev -type f -perm /6000 -exec chmod ug-s {} + || return 1
	# Directories this user cannot write would block the mount points
	# bubblewrap creates and a later removal.
	find "$dir" -xdev -type d ! -perm -u+w -exec chmod u+w {} + || return 1
}

build() {
	local mode=root start
	if [ "$(id -u)" != 0 ]; then
		mode=unshare
		rootless_check build
	fi
	command -v mmdebstrap >/dev/null || zc_infra "mmdebstrap is missing: run 'make bootstrap' (ci/bootstrap.sh)"
	mkdir -p "$cache"
	local avail
	avail=$(df -Pk "$cache" | awk 'NR==2 {print $4}')
	[ "${avail:-0}" -ge $((4 * 1024 * 1024)) ] ||
		zc_infra "the toolbox needs about 4 GiB free in $cache (only $((avail / 1024)) MiB): free some space or set ZCOPY_CACHE"
	rm_tree "$dir.partial" || zc_infra "cannot remove an old partial build at $dir.partial"
	zc_log "building the toolbox $dir (mmdebstrap, $mode mode; a few minutes)"
	start=$(date +%s)
	local log=$cache/toolbox-build.log ok=1
	if [ "$mode" = root ]; then
		zc_recipe_build "$dir.partial" "$mode" >"$log" 2>&1 || ok=0
	else
		build_rootless "$dir.partial" "$log" || ok=0
	fi
	if [ "$ok" = 0 ]; then
		tail -n 40 "$log" >&2
		rm_tree "$dir.partial" || true
		zc_infra "toolbox build failed; full log: $log"
	fi
	echo "$(($(date +%s) - start))" >"$dir.partial/.zcopy-build-seconds"
	du -sm "$dir.partial" | cut -f1 >"$dir.partial/.zcopy-size-mib"
	echo "$key" >"$dir.partial/.zcopy-toolbox"
	rm_tree "$dir"
	mv "$dir.partial" "$dir"
	zc_log "toolbox ready in $(cat "$dir/.zcopy-build-seconds") s, $(cat "$dir/.zcopy-size-mib") MiB"
	# Older toolboxes for this kernel (other recipe hashes), and those of
	# the layout before kernels had toolboxes of their own, are dead weight.
	local old
	for old in "$cache"/toolbox-"$ZCOPY_KERNEL"-* "$cache"/toolbox-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]; do
		[ -d "$old" ] && [ "$old" != "$dir" ] && [ "${old%.partial}" = "$old" ] && rm_tree "$old"
	done
	return 0
}

# ensure [force]: a built toolbox at $dir, built under a lock so concurrent
# runs wait for one build instead of racing.
ensure() {
	local force=${1:-}
	mkdir -p "$cache"
	exec 9>"$cache/toolbox-$ZCOPY_KERNEL.lock"
	flock 9
	if [ -n "$force" ] || [ ! -f "$stamp" ]; then build; fi
	flock -u 9
	exec 9>&-
}

# debug_kernel_dir: where the debug kernel for this toolbox is cached.
debug_kernel_dir() {
	local version
	version=$(awk '/^Package: linux-source-6.12$/ {p = 1} p && /^Version:/ {print $2; exit}' \
		"$dir/var/lib/dpkg/status")
	[ -n "$version" ] || zc_infra "the debug toolbox $dir has no linux-source-6.12"
	echo "$cache/kernel-debug-$({ echo "$version"; cat "$here/../kernel/debug.config" \
		"$here/../kernel/build-debug.sh"; } | sha256sum | cut -c1-16)"
}

# kernel_ensure: the debug kernel built and cached (under a lock, like the
# toolbox); the build runs in the debug toolbox.
kernel_ensure() {
	local kdir avail
	kdir=$(debug_kernel_dir)
	exec 8>"$cache/kernel-debug.lock"
	flock 8
	if [ ! -f "$kdir/.zcopy-kernel" ]; then
		avail=$(df -Pk "$cache" | awk 'NR==2 {print $4}')
		[ "${avail:-0}" -ge $((8 * 1024 * 1024)) ] ||
			zc_infra "the debug kernel build needs about 8 GiB free in $cache (only $((avail / 1024)) MiB): free some space or set ZCOPY_CACHE"
		# The tree of an interrupted build (this key or an older one) is
		# built on rather than thrown away; other partial trees go.
		local old
		old=$(find "$cache" -maxdepth 1 -name 'kernel-debug-*.partial' -type d -printf '%T@ %p\n' |
			sort -rn | head -n 1 | cut -d' ' -f2-)
		if [ -n "$old" ] && [ "$old" != "$kdir.partial" ]; then
			mv "$old" "$kdir.partial"
		fi
		find "$cache" -maxdepth 1 -name 'kernel-debug-*.partial' -type d ! -name "$(basename "$kdir").partial" \
			-exec rm -rf {} +
		mkdir -p "$kdir.partial"
		zc_log "building the debug kernel $kdir (linux-source-6.12 + qemu/kernel/debug.config; about 15 min on 2 idle cores, log: $kdir.log)"
		if ! (building=1 ZCOPY_TOOLBOX_BIND="$kdir.partial" enter "$here/../kernel/build-debug.sh" "$kdir.partial" "$kdir") \
			>"$kdir.log" 2>&1; then
			tail -n 40 "$kdir.log" >&2
			zc_infra "the debug kernel build failed; full log: $kdir.log (the partial tree stays in $kdir.partial)"
		fi
		rm -rf "$kdir"
		mv "$kdir.partial" "$kdir"
		zc_log "debug kernel $(cat "$kdir/.zcopy-kernel") ready in $(cat "$kdir/.zcopy-build-seconds") s, $(cat "$kdir/.zcopy-size-mib") MiB"
		find "$cache" -maxdepth 1 -name 'kernel-debug-*' -type d ! -name "$(basename "$kdir")" \
			! -name '*.partial' -exec rm -rf {} +
	fi
	flock -u 8
	exec 8>&-
	echo "$kdir"
}

# kernel_image: the guest kernel image (inside the toolbox's view).
kernel_image() {
	if [ "$ZCOPY_KERNEL" = debug ]; then
		echo "$(kernel_ensure)/vmlinuz"
	else
		echo "/boot/vmlinuz-$ZCOPY_KERNEL_ABI"
	fi
}

# enter CMD...: run CMD in the toolbox. With the debug kernel selected and
# built, its image, modules and build tree are seen where the stock kernel's
# are (/lib/modules/RELEASE) and ZCOPY_KERNEL_ABI names its release.
enter() {
	ensure
	command -v bwrap >/dev/null || zc_infra "bubblewrap is missing: run 'make bootstrap'"
	[ "$(id -u)" = 0 ] || rootless_check enter
	local kargs=() abi=$ZCOPY_KERNEL_ABI image=/boot/vmlinuz-$ZCOPY_KERNEL_ABI kdir
	if [ "$ZCOPY_KERNEL" = debug ] && [ -z "${building:-}" ]; then
		kdir=$(kernel_ensure)
		abi=$(cat "$kdir/.zcopy-kernel")
		image=$kdir/vmlinuz
		kargs=(--ro-bind "$kdir" "$kdir" --ro-bind "$kdir/lib/modules/$abi" "/lib/modules/$abi")
		# The modules' build link names the tree where it was built; a cache
		# moved since (another ZCOPY_CACHE) still has it there.
		local built
		built=$(readlink "$kdir/lib/modules/$abi/build")
		[ "$built" = "$kdir/build" ] || kargs+=(--ro-bind "$kdir/build" "$built")
	fi
	local args=(
		--bind "$dir" /
		--dev-bind /dev /dev
		--proc /proc
		--ro-bind /sys /sys
		--tmpfs /tmp --tmpfs /var/tmp --tmpfs /run --tmpfs /root
		--bind "$ZCOPY_ROOT" "$ZCOPY_ROOT"
		--chdir "$ZCOPY_ROOT"
		--unshare-pid --die-with-parent
		--setenv HOME /root
		# The caller's temporary and runtime directories are not inside
		# (/tmp and /run are the toolbox's own).
		--unsetenv TMPDIR --unsetenv XDG_RUNTIME_DIR
		--setenv PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		--setenv ZCOPY_KERNEL "$ZCOPY_KERNEL"
		--setenv ZCOPY_KERNEL_ABI "$abi"
		--setenv ZCOPY_KERNEL_IMAGE "$image"
		"${kargs[@]}"
	)
	# Extra host paths the caller needs inside (space separated), e.g. the
	# Cargo target dir when it is outside the project.
	local p
	for p in ${ZCOPY_TOOLBOX_BIND:-}; do args+=(--bind "$p" "$p"); done
	if [ "$(id -u)" != 0 ]; then
		# Rootless: a user namespace where we are root, owning the toolbox.
		args+=(--unshare-user --uid 0 --gid 0)
	fi
	# The toolbox stays read-only once the mount points exist.
	args+=(--remount-ro /)
	exec bwrap "${args[@]}" -- "$@"
}

case "${1:-}" in
path) ensure; echo "$dir" ;;
build) ensure force ;;
enter) shift; [ $# -gt 0 ] || set -- bash; enter "$@" ;;
kernel) ensure; kernel_image ;;
*) echo "usage: $0 path|build|enter CMD...|kernel" >&2; exit 2 ;;
esac
