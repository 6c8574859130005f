#!/usr/bin/env bash
# make demo: boot the platform and run the demo in the guest. The report is
# printed and kept in target/demo/report.txt.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 69
qemu/run.sh --timeout 900 -- qemu/guest/demo.sh
rc=$?
[ "$rc" = 0 ] && echo "report: $PWD/target/demo/report.txt"
exit "$rc"
