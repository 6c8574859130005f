#!/usr/bin/env bash
# Platform fault: kill -9 of the card's process (zcard-vhost) with requests in flight, the
# process restarted on the same storage and the card given back (unplug,
# replug): tests/bin/zcard_faults.rs card-restart says what is checked.
# Needs the platform port (a boot with ZCOPY_PLATFORM_PORT=1: ci/qemu-test.sh
# runs the fault-* cases in a boot of their own); skipped without it.
set -euo pipefail
# shellcheck source=tests/sh/lib.sh
. "$(dirname "$0")/lib.sh"
fault_case card-restart
