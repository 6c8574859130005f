#!/usr/bin/env bash
# Platform fault: QMP device_del of the live card with requests in flight, and
# device_add back: tests/bin/zcard_faults.rs hot-unplug says what is checked.
# Needs the platform port (a boot with ZCOPY_PLATFORM_PORT=1: ci/qemu-test.sh
# runs the fault-* cases in a boot of their own); skipped without it.
set -euo pipefail
# shellcheck source=tests/sh/lib.sh
. "$(dirname "$0")/lib.sh"
fault_case hot-unplug
