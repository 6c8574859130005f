#!/usr/bin/env bash
# GitHub Actions only: move the cached toolboxes (and a built debug kernel)
# between the cache action's file (toolbox.tar.zst in the workspace) and
# ZCOPY_CACHE, keeping ownership.
set -euo pipefail
cache=${ZCOPY_CACHE:-/var/cache/zcopy}
case ${1:-} in
restore)
	[ -f toolbox.tar.zst ] || { echo "no cached toolbox: the run builds one"; exit 0; }
	sudo mkdir -p "$cache"
	sudo tar --zstd -xpf toolbox.tar.zst -C "$cache"
	;;
save)
	[ -f toolbox.tar.zst ] && exit 0
	compgen -G "$cache/toolbox-*/.zcopy-toolbox" >/dev/null || exit 0
	dirs=()
	for d in "$cache"/toolbox-*/.zcopy-toolbox "$cache"/kernel-debug-*/.zcopy-kernel; do
		[ -f "$d" ] && dirs+=("$(basename "$(dirname "$d")")")
	done
	sudo tar --zstd -cpf toolbox.tar.zst -C "$cache" "${dirs[@]}"
	sudo chown "$(id -u)" toolbox.tar.zst
	;;
*) echo "usage: $0 restore|save" >&2; exit 2 ;;
esac
