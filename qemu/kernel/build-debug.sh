#!/usr/bin/env bash
# Inside the debug toolbox (called by qemu/toolbox/toolbox.sh kernel): build
# the debug kernel from linux-source-6.12 with qemu/kernel/debug.config into
# OUT, laid out for the toolbox to use:
#
#   OUT/vmlinuz                   the image vng boots
#   OUT/lib/modules/RELEASE/      its modules; build -> OUT/build
#   OUT/build/                    the tree zcard.ko builds against (objects pruned)
#   OUT/.zcopy-kernel             RELEASE (uname -r)
#   OUT/.zcopy-build-seconds, OUT/.zcopy-size-mib
#
#   build-debug.sh OUT FINAL      FINAL: where OUT is moved once built
#
# An OUT that already holds a tree (an interrupted build, or one for an
# older fragment that toolbox.sh handed over) is built on: make rebuilds
# only what the changed configuration touches.
# The compile runs under nice -n 19 with ZCOPY_KERNEL_JOBS jobs (2).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
out=$1 final=$2
start=$(date +%s)
src=$out/build
if [ ! -f "$src/Makefile" ]; then
	mkdir -p "$src"
	tar -C "$src" --strip-components=1 -xf /usr/src/linux-source-6.12.tar.xz
fi
cd "$src"
vng --kconfig
scripts/kconfig/merge_config.sh -m .config "$here/debug.config"
make olddefconfig
# Every line of the fragment must hold: a dependency Kconfig dropped
# silently would leave a checker off.
bad=0
while IFS= read -r line; do
	case $line in '' | '#'*) continue ;; esac
	opt=${line%%=*} val=${line#*=}
	if [ "$val" = n ]; then
		grep -q "^$opt=" .config && { echo "debug.config: $opt is set, wanted off" >&2; bad=1; }
	elif [ "$val" = m ] && grep -qx "$opt=y" .config; then
		: # built in where a module was asked for: modprobe still finds it
	else
		grep -qxF "$line" .config || { echo "debug.config: '$line' does not hold (.config: $(grep "^$opt=\|# $opt is not set" .config))" >&2; bad=1; }
	fi
done <"$here/debug.config"
[ "$bad" = 0 ] || exit 1
nice -n 19 make -j"${ZCOPY_KERNEL_JOBS:-2}" bzImage modules
release=$(make -s kernelrelease)
make -s modules_install INSTALL_MOD_PATH="$out" INSTALL_MOD_STRIP=1
# The modules' build symlink must point where the tree ends up.
ln -sfn "$final/build" "$out/lib/modules/$release/build"
rm -f "$out/lib/modules/$release/source"
cp arch/x86/boot/bzImage "$out/vmlinuz"
# Out-of-tree modules need the config, the generated headers, Module.symvers
# and the host tools (scripts/, objtool), not the kernel's objects.
find . -name '*.o' ! -path './scripts/*' ! -path './tools/*' -delete
find . \( -name '*.ko' -o -name '*.mod.c' -o -name '*.cmd' \) ! -path './scripts/*' ! -path './tools/*' -delete
rm -f vmlinux vmlinux.a vmlinux.o arch/x86/boot/compressed/vmlinux.bin*
echo "$release" >"$out/.zcopy-kernel"
echo "$(($(date +%s) - start))" >"$out/.zcopy-build-seconds"
du -sm "$out" | cut -f1 >"$out/.zcopy-size-mib"
