# shellcheck shell=bash
# Shared helpers for the platform scripts (qemu/, ci/). Sourced, not run.

# Exit code of an infrastructure failure (toolbox, QEMU, daemon, boot
# timeout), distinct from a failing test. Same value as vmtest's.
ZCOPY_EXIT_INFRA=69

# shellcheck disable=SC2034 # used by the scripts that source this
ZCOPY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

zc_log() { printf '\033[1m[zcopy]\033[0m %s\n' "$*" >&2; }
zc_warn() { printf '\033[1;33m[zcopy] warning:\033[0m %s\n' "$*" >&2; }

# zc_infra MSG: report an infrastructure failure and exit with ZCOPY_EXIT_INFRA.
zc_infra() {
	printf '\033[1;31m[zcopy] infrastructure failure:\033[0m %s\n' "$*" >&2
	exit "$ZCOPY_EXIT_INFRA"
}

# zc_build_tools: the release zcopy tools the guest runs
# (zcopy, zcopy-rdma-bench, ...), built as one package set. Cargo
# resolves dependency features per set, so another set builds another
# target/release/zcopy, laid out differently, and under TCG a hot loop's
# speed depends on that layout (QEMU does not chain translated blocks
# across pages). The demo and every bench build the tools this way, so
# they measure one binary. The card (zcard-vhost) is built apart.
zc_build_tools() {
	cargo build --release -p zcopy-cli -p zcopy-bench
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

# Lines in a guest kernel log that mean the kernel is in trouble; every guest
# run fails on any of them.
ZCOPY_KERNEL_BAD='WARNING:|BUG:|Oops|general protection|refcount_t:|list_del corruption|hung task|blocked for more than|Kernel panic|UBSAN:|KASAN:|is not a head|unexpected used|DMA-API:'

# Lines that match ZCOPY_KERNEL_BAD and are no trouble: the banner a kernel
# with CONFIG_DMA_API_DEBUG (the debug kernel) prints at every boot. Its
# reports look otherwise ("DMA-API: DEVICE: ...", with a WARNING).
ZCOPY_KERNEL_BENIGN='DMA-API: (preallocated [0-9]+ debug entries|debugging enabled by kernel config)$'

# A test that makes the kernel log a line on purpose (a card that breaks its
# virtqueue on command) announces it in the log itself, as ZCOPY_EXPECT_MARK
# "/REGEX/" before and ZCOPY_EXPECT_MARK "end" after (tests/support:
# `ExpectKernel`); lines in between that match REGEX are no trouble.
ZCOPY_EXPECT_MARK='zcopy-test: expecting'

# zc_kernel_log_unexpected FILE: FILE without the benign and the announced lines.
zc_kernel_log_unexpected() {
	awk -v mark="$ZCOPY_EXPECT_MARK " '
		index($0, mark "end") { pat = ""; next }
		index($0, mark "/") { pat = substr($0, index($0, mark "/") + length(mark) + 1); sub(/\/$/, "", pat); next }
		pat != "" && $0 ~ pat { next }
		{ print }
	' "$1" | grep -E -v "$ZCOPY_KERNEL_BENIGN"
}

# zc_kernel_log_ok FILE: true when FILE exists and shows no trouble; prints
# the offending lines otherwise.
zc_kernel_log_ok() {
	[ -f "$1" ] || { zc_warn "no guest kernel log at $1"; return 1; }
	zc_kernel_log_unexpected "$1" | grep -E -q "$ZCOPY_KERNEL_BAD" || return 0
	zc_warn "the guest kernel log shows trouble ($1):"
	zc_kernel_log_unexpected "$1" | grep -E -B2 -A20 "$ZCOPY_KERNEL_BAD" | head -n 80 >&2
	return 1
}

# zc_subid_count USER FILE: the size of USER's first range in FILE
# (/etc/subuid or /etc/subgid), the range mmdebstrap's unshare mode maps the
# toolbox's users onto; 0 when there is none.
zc_subid_count() {
	cat "$2" 2>/dev/null | awk -F: -v u="$1" '$1 == u { n = $3; exit } END { print n + 0 }'
}

# zc_subid_free: the start of a free range of 65536 subordinate ids, past
# every range in /etc/subuid and /etc/subgid (100000 on a fresh machine).
zc_subid_free() {
	cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: '
		{ e = $2 + $3; if (e > m) m = e }
		END { s = 100000; if (m > s) s = int((m + 65535) / 65536) * 65536; print s }'
}
