#!/usr/bin/env bash
# In the debug kernel's guest, after the suites (called by
# ci/qemu-test-debug.sh): scans for leaks with kmemleak and saves zcard.ko's
# gcov data.
#
#   debug-checks.sh OUT     OUT/kmemleak.txt  the leaks kmemleak reports (empty: none)
#                           OUT/gcov/*.gcda   zcard.ko's coverage counters
#
# Exit code: 0, or 1 when a debugfs file the debug kernel must have is missing.
set -u
out=$1
mkdir -p "$out/gcov"
mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
leaks=/sys/kernel/debug/kmemleak
[ -w "$leaks" ] || { echo "no $leaks: not the debug kernel?" >&2; exit 1; }
# An object freed late is reported only after two scans find it unreferenced;
# kmemleak also ignores objects younger than 5 s.
sleep 6
echo scan >"$leaks"
sleep 6
echo scan >"$leaks"
cat "$leaks" >"$out/kmemleak.txt"
gcov=$(find /sys/kernel/debug/gcov -path '*/driver/zcard_main.gcda' 2>/dev/null | head -n 1)
[ -n "$gcov" ] || { echo "no gcov data for zcard.ko under /sys/kernel/debug/gcov" >&2; exit 1; }
for f in "$(dirname "$gcov")"/zcard_*.gcda; do
	cat "$f" >"$out/gcov/$(basename "$f")"
done
