#!/usr/bin/env bash
# make bench-platform: the platform's own figures, printed as a table and
# written as JSON to target/bench/platform.json.
#   toolbox build (cold)       rebuilds the toolbox from scratch (ZCOPY_BENCH_COLD=1
#                              only: it replaces the cached one); otherwise the
#                              cached toolbox's recorded build time
#   boot to first command      three guest boots running `true`, min/median
#   qemu-test (warm)           one full make qemu-test with everything cached
# The cold qemu-test figure (fresh machine, empty cache) is measured by hand
# and recorded in docs/testing.md.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 69
# shellcheck source=qemu/lib.sh
. qemu/lib.sh
out=target/bench
mkdir -p "$out"

if [ "${ZCOPY_BENCH_COLD:-0}" = 1 ]; then qemu/toolbox/toolbox.sh build >/dev/null || exit 69; fi
tb=$(qemu/toolbox/toolbox.sh path) || exit 69
build_s=$(cat "$tb/.zcopy-build-seconds")
size_mib=$(cat "$tb/.zcopy-size-mib")

boots=()
for _ in 1 2 3; do
	s=$(date +%s.%N)
	qemu/run.sh --no-rxe -- true >/dev/null 2>&1 || zc_infra "a guest boot failed"
	boots+=("$(awk -v s="$s" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')")
done
read -r boot_min boot_med < <(printf '%s\n' "${boots[@]}" | sort -n | awk '{a[NR] = $1} END {print a[1], a[2]}')

s=$(date +%s)
ci/qemu-test.sh >"$out/qemu-test.log" 2>&1
test_rc=$?
test_s=$(($(date +%s) - s))

accel=$(cat "$(zc_cache_dir)"/kvm-probe-* 2>/dev/null | head -n1)
printf '%-32s %10s\n' "figure" "value"
printf '%-32s %9ss\n' "toolbox build (cold)" "$build_s"
printf '%-32s %8sMiB\n' "toolbox size" "$size_mib"
printf '%-32s %9ss\n' "boot to first command (min)" "$boot_min"
printf '%-32s %9ss\n' "boot to first command (median)" "$boot_med"
printf '%-32s %9ss  (exit %s)\n' "make qemu-test (warm)" "$test_s" "$test_rc"
printf '%-32s %10s\n' "accelerator" "${accel:-tcg}"
cat >"$out/platform.json" <<J
{"toolbox_build_s": $build_s, "toolbox_size_mib": $size_mib, "boot_min_s": $boot_min,
 "boot_median_s": $boot_med, "qemu_test_warm_s": $test_s, "qemu_test_exit": $test_rc,
 "accel": "${accel:-tcg}", "cpus": $(nproc)}
J
echo "JSON: $out/platform.json"
