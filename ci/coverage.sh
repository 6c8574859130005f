#!/usr/bin/env bash
# In the debug toolbox (called by ci/qemu-test-debug.sh): zcard.ko's line and
# branch coverage from the .gcda files copied next to its objects in driver/.
#
#   coverage.sh OUT    OUT/coverage.txt  the table (lcov --list) and the totals
#                      OUT/uncovered.txt error paths never taken (return -E...,
#                                        goto err..., and their labels' lines)
#                      OUT/html/         genhtml's report
set -euo pipefail
out=$1
rm -rf "$out"
mkdir -p "$out"
rc=(--rc branch_coverage=1 --ignore-errors "inconsistent,unused,empty,source")
lcov --quiet "${rc[@]}" --capture --directory driver --base-directory driver \
	--output-file "$out/zcard.info"
lcov --quiet "${rc[@]}" --extract "$out/zcard.info" '*/driver/zcard_*' --output-file "$out/zcard.info"
{
	lcov "${rc[@]}" --list "$out/zcard.info"
	lcov "${rc[@]}" --summary "$out/zcard.info" 2>&1 | grep -E 'lines|functions|branches'
} >"$out/coverage.txt"
genhtml --quiet "${rc[@]}" --output-directory "$out/html" "$out/zcard.info" >/dev/null
# Uncovered error paths: lines never run (DA:line,0) that return an errno or
# jump to an error label.
awk -F'[:,]' '
	/^SF:/ { file = substr($0, 4); next }
	/^DA:/ && $3 == 0 { print file ":" $2 }' "$out/zcard.info" |
	while IFS=: read -r file line; do
		text=$(sed -n "${line}p" "$file")
		if grep -Eq 'return -E|= -E[A-Z]+;|goto (err|out|fail|unwind)|^(err|fail|unwind)[a-z_]*:' <<<"$text"; then
			printf '%s:%s: %s\n' "${file#"$PWD"/}" "$line" "${text#"${text%%[![:space:]]*}"}"
		fi
	done >"$out/uncovered.txt"
echo "uncovered error paths: $(wc -l <"$out/uncovered.txt") (coverage/uncovered.txt)" >>"$out/coverage.txt"
