#!/usr/bin/env bash
# The guest-side test entry (run by ci/qemu-test.sh through qemu/run.sh):
# runs every guest test and records one line per test case in
# $ZCOPY_RESULTS (tab separated: suite, name, pass|fail|skip, seconds, log).
#
#   tests/sh/*.sh         one case each: exit 0 pass, 77 skip, else fail
#   Rust test binaries    listed in target/qemu-test/guest-bins.txt (built on
#                         the host), run with --include-ignored; one case per
#                         #[test], read from libtest's "test X ... ok" lines
#
# Environment: ZCOPY_ONLY (space-separated Rust suite names, e.g. "driver": run
# only those, no shell tests), ZCOPY_TAG (added to suite names in the results,
# e.g. "swiotlb" for the bounce-buffer run), ZCOPY_VFIO (1 in the VFIO boot:
# the vfio suite runs only then).
#
# Exit code: 0 when nothing failed.
set -u
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=$root/target/qemu-test
results=${ZCOPY_RESULTS:-$out/results.tsv}
logs=$out/logs
mkdir -p "$logs"
failed=0

tag=${ZCOPY_TAG:+-$ZCOPY_TAG}
record() { # record SUITE NAME STATUS SECONDS LOG
	local suite=$1$tag
	shift
	printf '%s\t%s\t%s\t%s\t%s\n' "$suite" "$@" >>"$results"
	set -- "$suite" "$@"
	printf '  %-5s %s/%s (%ss)\n' "$3" "$1" "$2" "$4"
	[ "$3" = fail ] && failed=$((failed + 1))
	return 0
}

now() { date +%s.%N; }
since() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.2f", e - s }'; }

# The vfio suite needs the VFIO boot (ZCOPY_VFIO=1, qemu/run.sh --vfio) and
# runs only there.
selected() {
	if [ "$1" = vfio ] && [ "${ZCOPY_VFIO:-0}" != 1 ]; then return 1; fi
	[ -z "${ZCOPY_ONLY:-}" ] || [[ " $ZCOPY_ONLY " == *" $1 "* ]]
}

# Shell tests, each bounded in time.
for t in "$root"/tests/sh/*.sh; do
	[ -z "${ZCOPY_ONLY:-}" ] || break
	name=$(basename "$t" .sh)
	[ "$name" = lib ] && continue
	log=$logs/sh-$name.log
	start=$(now)
	timeout -k 5 "${ZCOPY_CASE_TIMEOUT:-300}" "$t" >"$log" 2>&1
	rc=$?
	case $rc in
	0) st=pass ;;
	77) st=skip ;;
	*) st=fail; echo "--- $name (exit $rc), last lines of ${log#"$root"/}:"; tail -n 30 "$log" ;;
	esac
	record guest-sh "$name" "$st" "$(since "$start")" "${log#"$root"/}"
done

# Rust test binaries built on the host.
if [ -f "$out/guest-bins.txt" ]; then
	while IFS=$'\t' read -r suite bin; do
		[ -n "$bin" ] || continue
		selected "$suite" || continue
		log=$logs/rust-$suite$tag.log
		start=$(now)
		(cd "$root" && timeout -k 5 "${ZCOPY_CASE_TIMEOUT:-300}" "$bin" --include-ignored --test-threads=1) >"$log" 2>&1
		rc=$?
		n=0
		while read -r name status; do
			n=$((n + 1))
			case $status in ok) st=pass ;; ignored) st=skip ;; *) st=fail ;; esac
			record "guest-$suite" "$name" "$st" 0 "${log#"$root"/}"
		done < <(sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\)$/\1 \2/p' "$log")
		if [ "$rc" != 0 ] || [ "$n" = 0 ]; then
			echo "--- $suite (exit $rc, $n cases), last lines of ${log#"$root"/}:"
			tail -n 40 "$log"
			# A crash or timeout the per-case lines do not show is a failure too.
			if [ "$n" = 0 ] || ! grep -q FAILED "$log"; then
				record "guest-$suite" "(binary exit $rc)" fail "$(since "$start")" "${log#"$root"/}"
			fi
		fi
	done <"$out/guest-bins.txt"
fi

[ "$failed" = 0 ]
