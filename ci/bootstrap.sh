#!/usr/bin/env bash
# Host bootstrap: install what the host needs to build the workspace and the
# toolbox, with apt, only when something is missing. Idempotent and quick when
# everything is there; every make target that needs the host calls it.
#
# Needs: Debian or Ubuntu, root (or passwordless sudo), apt, and network
# access to the distribution's package mirror.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"

# Debian package -> a file it installs (cheap presence test, no dpkg query).
declare -A want=(
	[mmdebstrap]=/usr/bin/mmdebstrap
	[bubblewrap]=/usr/bin/bwrap
	[uidmap]=/usr/bin/newuidmap
	[debian-archive-keyring]=/usr/share/keyrings/debian-archive-keyring.gpg
	[clang]=/usr/bin/clang
	[libclang-dev]=/usr/lib/llvm-*/lib/libclang.so
	[pkg-config]=/usr/bin/pkg-config
	[libibverbs-dev]=/usr/include/infiniband/verbs.h
	[librdmacm-dev]=/usr/include/rdma/rdma_cma.h
	[gcc]=/usr/bin/gcc
	[make]=/usr/bin/make
	[python3]=/usr/bin/python3
	[python3-venv]=/usr/lib/python3*/ensurepip/__init__.py
	[curl]=/usr/bin/curl
	[ca-certificates]=/etc/ssl/certs/ca-certificates.crt
	[util-linux]=/usr/bin/flock
	[xz-utils]=/usr/bin/xz
)
# Extra needs from the caller, as package=path-glob (e.g. the IPC bench's
# libclang for iceoryx2's bindgen).
for extra in "$@"; do
	want[${extra%%=*}]=${extra#*=}
done

missing=()
for pkg in "${!want[@]}"; do
	# shellcheck disable=SC2086 # the path may hold a glob
	compgen -G ${want[$pkg]} >/dev/null || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
	command -v apt-get >/dev/null ||
		zc_infra "no apt-get: install by hand: ${missing[*]} (zcopy's platform expects Debian or Ubuntu)"
	sudo=
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
			sudo=sudo
		else
			zc_infra "not root: run 'sudo apt-get install ${missing[*]}' once, or run make as root"
		fi
	fi
	free_mb=$(df -Pm /var/cache/apt 2>/dev/null | awk 'NR==2 {print $4}')
	[ "${free_mb:-0}" -ge 1024 ] || zc_infra "less than 1 GiB free under /var/cache/apt: free disk space first"
	zc_log "installing host packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/zcopy-apt.log 2>&1; then
		$sudo apt-get update -q >>/tmp/zcopy-apt.log 2>&1 ||
			{ tail -n 20 /tmp/zcopy-apt.log >&2; zc_infra "apt-get update failed (see /tmp/zcopy-apt.log)"; }
		$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/zcopy-apt.log 2>&1 ||
			{ tail -n 20 /tmp/zcopy-apt.log >&2; zc_infra "apt-get install failed (see /tmp/zcopy-apt.log)"; }
	fi
fi

command -v cargo >/dev/null || zc_infra "no cargo on PATH: install Rust (rustup, stable) first"
