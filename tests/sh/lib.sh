# shellcheck shell=bash
# Shared by the guest shell tests (tests/sh/*.sh). A test passes with exit 0,
# is skipped with exit 77, and fails otherwise; fail() says why.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
# shellcheck disable=SC2034 # used by the tests that source this
ZCOPY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }
