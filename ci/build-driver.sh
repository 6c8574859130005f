#!/usr/bin/env bash
# Builds driver/zcard.ko in the toolbox against a guest kernel's headers,
# with W=1; `check` adds sparse and checkpatch --strict.
#
#   ci/build-driver.sh [all|check|clean] [KERNEL...]
#
# KERNEL is a guest kernel of qemu/toolbox/recipe.sh (stock, backports,
# debug), each built in its own toolbox; without one, the selected kernel
# (ZCOPY_KERNEL). With several, each is built in turn from clean, and
# zcard.ko is left built for the last.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
target=${1:-all}
[ $# -gt 0 ] && shift
if [ $# -le 1 ]; then
	[ $# = 0 ] || export ZCOPY_KERNEL=$1
	exec "$ZCOPY_ROOT/qemu/toolbox/toolbox.sh" enter make -C driver "$target"
fi
for kernel in "$@"; do
	zc_log "zcard.ko: make $target against the $kernel kernel"
	ZCOPY_KERNEL=$kernel "$ZCOPY_ROOT/qemu/toolbox/toolbox.sh" enter \
		sh -c 'make -C driver clean >/dev/null && make -C driver "$1"' sh "$target"
done
