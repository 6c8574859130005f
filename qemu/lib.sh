# shellcheck shell=bash
# Shared helpers for the platform scripts (qemu/, ci/). Sourced, not run.

# Exit code of an infrastructure failure (toolbox, QEMU, daemon, boot
# timeout), distinct from a failing test. Same value as vmtest's.
ZC_EXIT_INFRA=69

ZC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

zc_log() { printf '\033[1m[zcopy]\033[0m %s\n' "$*" >&2; }
zc_warn() { printf '\033[1;33m[zcopy] warning:\033[0m %s\n' "$*" >&2; }

# zc_infra MSG: report an infrastructure failure and exit with ZC_EXIT_INFRA.
zc_infra() {
	printf '\033[1;31m[zcopy] infrastructure failure:\033[0m %s\n' "$*" >&2
	exit "$ZC_EXIT_INFRA"
}

# zc_cache_dir: where the toolbox and probe results live, outside any clone
# so every clone (and CI) reuses them.
zc_cache_dir() {
	if [ -n "${ZCOPY_CACHE:-}" ]; then
		echo "$ZCOPY_CACHE"
	elif [ "$(id -u)" = 0 ]; then
		echo /var/cache/zcopy
	else
		echo "${XDG_CACHE_HOME:-$HOME/.cache}/zcopy"
	fi
}
