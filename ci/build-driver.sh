#!/usr/bin/env bash
# Builds driver/zcard.ko in the toolbox against the pinned kernel's headers,
# with W=1; `ci/build-driver.sh check` adds sparse and checkpatch --strict.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=qemu/lib.sh
. "$here/../qemu/lib.sh"
target=${1:-all}
exec "$ZCOPY_ROOT/qemu/toolbox/toolbox.sh" enter make -C driver "$target"
