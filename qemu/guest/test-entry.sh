#!/usr/bin/env bash
# The guest-side test entry (run by ci/qemu-test.sh through qemu/run.sh):
# runs every guest test and records one line per test case in
# $ZCOPY_RESULTS (tab separated: suite, name, pass|fail|skip, seconds, log,
# why it was skipped).
#
#   tests/sh/*.sh         one case each: exit 0 pass, 77 skip, else fail
#   Rust test binaries    listed in target/qemu-test/guest-bins.txt (built on
#                         the host), run with --include-ignored; one case per
#                         #[test], read from libtest's "test X ... ok" lines
#
# Environment: ZCOPY_ONLY (space-separated suite names, e.g. "driver card": run
# only those; "sh" names the shell cases), ZCOPY_FILTER (a libtest name filter
# given to every Rust binary; shell cases run when their name contains it),
# ZCOPY_TAG (added to suite names in the results, e.g. "swiotlb" for the
# bounce-buffer run), ZCOPY_VFIO (1 in the VFIO boot: the vfio suite runs
# only then), ZCOPY_SKIP (space-separated Rust test names this boot cannot
# run: each is left out and recorded as a skip with the reason
# ZCOPY_SKIP_WHY).
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
record() { # record SUITE NAME STATUS SECONDS LOG [WHY]
	local suite=$1$tag
	shift
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$suite" "$1" "$2" "$3" "$4" "${5:-}" >>"$results"
	set -- "$suite" "$@"
	printf '  %-5s %s/%s (%ss)%s\n' "$3" "$1" "$2" "$4" "${6:+: $6}"
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
filter=${ZCOPY_FILTER:-}

# Shell tests, each bounded in time.
for t in "$root"/tests/sh/*.sh; do
	selected sh || break
	name=$(basename "$t" .sh)
	[ "$name" = lib ] && continue
	[[ $name == *"$filter"* ]] || continue
	log=$logs/sh-$name$tag.log
	start=$(now)
	timeout -k 5 "${ZCOPY_CASE_TIMEOUT:-600}" "$t" >"$log" 2>&1
	rc=$?
	why=
	case $rc in
	0) st=pass ;;
	77) st=skip why=$(sed -n 's/^SKIP: //p' "$log" | tail -n 1) why=${why:-exit 77} ;;
	*) st=fail; echo "--- $name (exit $rc), last lines of ${log#"$root"/}:"; tail -n 30 "$log" ;;
	esac
	record guest-sh "$name" "$st" "$(since "$start")" "${log#"$root"/}" "$why"
done

# Rust test binaries built on the host.
if [ -f "$out/guest-bins.txt" ]; then
	while IFS=$'\t' read -r suite bin; do
		[ -n "$bin" ] || continue
		selected "$suite" || continue
		log=$logs/rust-$suite$tag.log
		start=$(now)
		args=(--include-ignored --test-threads=1)
		[ -n "$filter" ] && args+=("$filter")
		for t in ${ZCOPY_SKIP:-}; do
			"$bin" --list --include-ignored 2>/dev/null | grep -qxF "$t: test" || continue
			[[ $t == *"$filter"* ]] || continue
			args+=(--skip "$t")
			record "guest-$suite" "$t" skip 0 "" "${ZCOPY_SKIP_WHY:-skipped in this boot}"
		done
		(cd "$root" && timeout -k 5 "${ZCOPY_CASE_TIMEOUT:-600}" "$bin" "${args[@]}") >"$log" 2>&1
		rc=$?
		n=0
		while read -r name status; do
			n=$((n + 1))
			why=
			case $status in ok) st=pass ;; ignored) st=skip why="ignored in the guest" ;; *) st=fail ;; esac
			record "guest-$suite" "$name" "$st" 0 "${log#"$root"/}" "$why"
		done < <(sed -n 's/^test \(.*\) \.\.\. \(ok\|FAILED\|ignored\)$/\1 \2/p' "$log")
		# A filter may leave a binary with nothing to run: not a failure.
		if [ "$rc" != 0 ] || { [ "$n" = 0 ] && [ -z "$filter" ]; }; then
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
