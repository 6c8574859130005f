#!/usr/bin/env bash
# The toolbox: a cached Debian trixie root (see recipe.sh) that QEMU, the
# device model and the module build run in.
#
#   toolbox.sh path            print the toolbox directory, building it if needed
#   toolbox.sh build           rebuild it now, even if a cached one exists
#   toolbox.sh enter CMD...    run CMD inside it (bubblewrap)
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
key=$(sha256sum "$here/recipe.sh" | cut -c1-16)
dir=$cache/toolbox-$key
stamp=$dir/.zcopy-toolbox

build() {
	local mode=root start
	[ "$(id -u)" = 0 ] || mode=unshare
	command -v mmdebstrap >/dev/null || zc_infra "mmdebstrap is missing: run 'make bootstrap' (ci/bootstrap.sh)"
	mkdir -p "$cache"
	local avail
	avail=$(df -Pk "$cache" | awk 'NR==2 {print $4}')
	[ "${avail:-0}" -ge $((4 * 1024 * 1024)) ] ||
		zc_infra "the toolbox needs about 4 GiB free in $cache (only $((avail / 1024)) MiB): free some space or set ZCOPY_CACHE"
	rm -rf "$dir.partial"
	zc_log "building the toolbox $dir (mmdebstrap, $mode mode; a few minutes)"
	start=$(date +%s)
	if ! zc_recipe_build "$dir.partial" "$mode" >"$cache/toolbox-build.log" 2>&1; then
		tail -n 40 "$cache/toolbox-build.log" >&2
		rm -rf "$dir.partial"
		zc_infra "toolbox build failed; full log: $cache/toolbox-build.log"
	fi
	echo "$(($(date +%s) - start))" >"$dir.partial/.zcopy-build-seconds"
	du -sm "$dir.partial" | cut -f1 >"$dir.partial/.zcopy-size-mib"
	echo "$key" >"$dir.partial/.zcopy-toolbox"
	rm -rf "$dir"
	mv "$dir.partial" "$dir"
	zc_log "toolbox ready in $(cat "$dir/.zcopy-build-seconds") s, $(cat "$dir/.zcopy-size-mib") MiB"
	# Older toolboxes (other recipe hashes) are dead weight.
	find "$cache" -maxdepth 1 -name 'toolbox-*' -type d ! -name "toolbox-$key" \
		! -name '*.partial' -exec rm -rf {} +
}

# ensure [force]: a built toolbox at $dir, built under a lock so concurrent
# runs wait for one build instead of racing.
ensure() {
	local force=${1:-}
	mkdir -p "$cache"
	exec 9>"$cache/toolbox.lock"
	flock 9
	if [ -n "$force" ] || [ ! -f "$stamp" ]; then build; fi
	flock -u 9
	exec 9>&-
}

enter() {
	ensure
	command -v bwrap >/dev/null || zc_infra "bubblewrap is missing: run 'make bootstrap'"
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
		--setenv PATH /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
		--setenv ZCOPY_KERNEL_ABI "$ZCOPY_KERNEL_ABI"
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
*) echo "usage: $0 path|build|enter CMD..." >&2; exit 2 ;;
esac
