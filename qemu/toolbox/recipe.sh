# shellcheck shell=bash
# The toolbox recipe: a Debian trixie root that holds QEMU (>= 10.2, from
# trixie-backports), the pinned guest kernel with its headers, virtme-ng,
# the module build tools and rdma-core/perftest.
#
# The cache key of a toolbox is the hash of this file and the kernel it is
# for: change anything here and the next run builds a new toolbox. Sourced by
# qemu/toolbox/toolbox.sh.

# The guest kernels; ZCOPY_KERNEL picks the one a toolbox holds:
#   stock      trixie's kernel (the default)
#   backports  the newest kernel trixie-backports offers
#   debug      the stock kernel's toolbox plus what building a kernel takes;
#              qemu/kernel/build-debug.sh builds the debug kernel
#              (qemu/kernel/debug.config) from linux-source-6.12 in it
# A kernel's headers build driver/zcard.ko; both must match.
ZCOPY_KERNEL_STOCK=6.12.107+deb13-amd64
ZCOPY_KERNEL_BACKPORTS=7.3.4+deb13-amd64

ZCOPY_SUITE=trixie
ZCOPY_MIRROR=${ZCOPY_MIRROR:-http://deb.debian.org/debian}

# Packages taken from trixie-backports (with the dependencies that need it).
# QEMU 10.2 is the first with the user-creatable vhost-user-test-device-pci;
# backports' QEMU pulls libelf from backports, so libdw1t64 must follow or apt
# refuses linux-headers.
ZCOPY_BACKPORTS=(
	qemu-system-x86
	qemu-system-common
	qemu-system-data
	seabios
	libdw1t64
	libelf1t64
)

ZCOPY_PACKAGES=(
	linux-source-6.12
	virtme-ng
	busybox-static
	kmod
	udev
	gcc
	make
	sparse
	python3
	rdma-core
	ibverbs-utils
	ibverbs-providers
	perftest
	iproute2
	iputils-ping
	pciutils
	procps
	psmisc
	file
	ca-certificates
)

# What building a kernel takes beyond the module tools (the debug toolbox);
# libelf-dev from backports, to match the backports libelf above.
ZCOPY_KBUILD_PACKAGES=(bc bison flex cpio xz-utils libssl-dev zlib1g-dev lcov)
ZCOPY_KBUILD_BACKPORTS=(libelf-dev)

# The selected kernel: its release (ZCOPY_KERNEL_ABI) and its packages.
ZCOPY_KERNEL=${ZCOPY_KERNEL:-stock}
case $ZCOPY_KERNEL in
stock | debug)
	ZCOPY_KERNEL_ABI=$ZCOPY_KERNEL_STOCK
	ZCOPY_PACKAGES+=("linux-image-$ZCOPY_KERNEL_ABI" "linux-headers-$ZCOPY_KERNEL_ABI")
	;;
backports)
	ZCOPY_KERNEL_ABI=$ZCOPY_KERNEL_BACKPORTS
	ZCOPY_BACKPORTS+=("linux-image-$ZCOPY_KERNEL_ABI" "linux-headers-$ZCOPY_KERNEL_ABI")
	;;
*)
	echo "ZCOPY_KERNEL must be stock, backports or debug (not '$ZCOPY_KERNEL')" >&2
	return 2
	;;
esac
# sparse for the selected kernel's headers. 7.3.4's use __typeof_unqual__
# under sparse, which trixie's sparse 0.6.4 cannot parse (it fails on them,
# or crashes); the backports toolbox takes the sparse binary (it needs only
# libc) from ZCOPY_SPARSE_SUITE, Debian's next release, into /usr/local/bin,
# and the build fails unless that one parses __typeof_unqual__. Its Release
# file is taken past its Valid-Until date (still signature-checked): the
# mirrors this platform reaches may hold a testing suite weeks old.
ZCOPY_SPARSE_SUITE=
[ "$ZCOPY_KERNEL" = backports ] && ZCOPY_SPARSE_SUITE=forky
ZCOPY_KEEP_SOURCE=0
if [ "$ZCOPY_KERNEL" = debug ]; then
	ZCOPY_PACKAGES+=("${ZCOPY_KBUILD_PACKAGES[@]}")
	ZCOPY_BACKPORTS+=("${ZCOPY_KBUILD_BACKPORTS[@]}")
	ZCOPY_KEEP_SOURCE=1
fi

# zc_recipe_build DIR MODE: build the root into DIR (must not exist) with
# mmdebstrap in MODE (root or unshare).
zc_recipe_build() {
	local dir=$1 mode=$2 p sparse hooks=()
	local include=("${ZCOPY_PACKAGES[@]}")
	for p in "${ZCOPY_BACKPORTS[@]}"; do include+=("$p/$ZCOPY_SUITE-backports"); done
	if [ -n "$ZCOPY_SPARSE_SUITE" ]; then
		# Run by sh in the new root: no single quotes in here.
		local apt="apt-get -q -o Dir::Etc::SourceList=/tmp/sparse.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=/tmp/sparse-lists -o Acquire::Check-Valid-Until=false"
		sparse="echo \"deb $ZCOPY_MIRROR $ZCOPY_SPARSE_SUITE main\" >/tmp/sparse.list"
		sparse+=" && mkdir -p /tmp/sparse-lists/partial && $apt update && cd /tmp && $apt download sparse"
		sparse+=" && dpkg-deb -x sparse_*.deb /tmp/sparse && install -m 0755 /tmp/sparse/usr/bin/sparse /usr/local/bin/sparse"
		sparse+=" && rm -rf /tmp/sparse* && echo \"int u(const int *q) { __typeof_unqual__(*q) v = *q; return v; }\" >/tmp/t.c"
		sparse+=" && if /usr/local/bin/sparse /tmp/t.c 2>&1 | grep -q error; then echo \"toolbox: the sparse of $ZCOPY_SPARSE_SUITE cannot parse __typeof_unqual__\" >&2; exit 1; fi"
		sparse+=" && rm /tmp/t.c && /usr/local/bin/sparse --version"
		hooks+=(--customize-hook="chroot \"\$1\" sh -c '$sparse'")
	fi
	mmdebstrap --mode="$mode" --variant=apt --components=main \
		--aptopt='APT::Install-Recommends "false"' \
		--aptopt='Acquire::Retries "3"' \
		--dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/man/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' \
		--include="$(IFS=,; echo "${include[*]}")" \
		--customize-hook='chroot "$1" sh -c "tar -C /usr/src -xf /usr/src/linux-source-6.12.tar.xz --wildcards \"*/scripts/checkpatch.pl\" \"*/scripts/spelling.txt\" \"*/scripts/const_structs.checkpatch\" && mv /usr/src/linux-source-6.12 /usr/src/checkpatch"' \
		--customize-hook="[ $ZCOPY_KEEP_SOURCE = 1 ] || rm -f \"\$1\"/usr/src/linux-source-6.12.tar.xz" \
		--customize-hook='chroot "$1" sh -c "qemu-system-x86_64 -device help | grep -q vhost-user-test-device-pci" || { echo "toolbox: this QEMU lacks vhost-user-test-device-pci (need >= 10.2)" >&2; exit 1; }' \
		"${hooks[@]}" \
		--customize-hook='rm -rf "$1"/var/cache/apt/archives/*.deb "$1"/var/lib/apt/lists/*_Packages*' \
		"$ZCOPY_SUITE" "$dir" \
		"deb $ZCOPY_MIRROR $ZCOPY_SUITE main" \
		"deb $ZCOPY_MIRROR $ZCOPY_SUITE-backports main"
}
