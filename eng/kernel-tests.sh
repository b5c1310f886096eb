#!/usr/bin/env bash
# The kernel tests: boots a kernel with iommufd and its test IOMMU under QEMU (TCG), with an initramfs built here
# (busybox, the test program published Native AOT, the libraries it links), runs tests/DirtyLog.KernelTests as init
# and reads its verdicts from the serial console. Prints every KERNEL-TEST line and ends with
# "kernel tests: N passed, N failed"; exits 0 only when the VM ran them all and none failed.
# The kernel: $DIRTYLOG_KERNEL, else the shared prebuilt image beside the checkout (a cache), else one built from
# Debian's source by eng/kernel/build-kernel.sh.
# Usage: eng/kernel-tests.sh [seed]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
seed=${1:-20261130}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "kernel tests: $*" >&2; echo "kernel tests: 0 passed, 1 failed"; exit 1; }

kernel=${DIRTYLOG_KERNEL:-}
[[ -n $kernel ]] || { [[ -f ../shared/kernels/iommufd-test/bzImage ]] && kernel=$root/../shared/kernels/iommufd-test/bzImage; }
[[ -n $kernel ]] || kernel=$(bash eng/kernel/build-kernel.sh) || fail "no kernel image, and building one failed"

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[[ -x /bin/busybox && $(file -b /bin/busybox 2>/dev/null) == *static* ]] || [[ -x /usr/lib/busybox-static ]] || dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
if ((${#need[@]})); then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 || fail "could not install ${need[*]}"
fi

dotnet publish tests/DirtyLog.KernelTests -c Release -r linux-x64 -p:PublishAot=true -o "$work/publish" >"$work/publish.log" 2>&1 ||
  { tail -30 "$work/publish.log"; fail "publishing the test program failed"; }

# On the host: the test command's layout (sizes, offsets, constants) against the kernel source's iommufd_test.h.
layout="KERNEL-TEST FAIL TheTestCommandLayoutMatchesIommufdTestH"
if header=$(bash eng/kernel/fetch-test-header.sh 2>"$work/header.log") && uapi=$(bash eng/fetch-uapi-headers.sh 2>>"$work/header.log"); then
  "$work/publish/DirtyLog.KernelTests" --layout-asserts >"$work/layout.c"
  if gcc -fsyntax-only -std=gnu11 -I "$(dirname "$header")" -I "$uapi" "$work/layout.c" 2>"$work/layout.log"; then
    layout="KERNEL-TEST PASS TheTestCommandLayoutMatchesIommufdTestH ($(grep -c static_assert "$work/layout.c") asserts)"
  else
    layout="$layout: $(head -c 600 "$work/layout.log" | tr '\n' ' ')"
  fi
else
  layout="$layout: the kernel source's header could not be fetched: $(tail -c 300 "$work/header.log" | tr '\n' ' ')"
fi

# The initramfs: busybox for /init's shell, the program, and each library the program's ELF asks for.
rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,dev,proc,sys,tmp}
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for tool in sh mount echo poweroff; do ln -s busybox "$rootfs/bin/$tool"; done
cp "$work/publish/DirtyLog.KernelTests" "$rootfs/bin/kernel-tests"
ldd "$rootfs/bin/kernel-tests" | grep -oE '/[^ ]+' | while read -r lib; do
  mkdir -p "$rootfs$(dirname "$lib")"; cp -L "$lib" "$rootfs$lib"
done
cat >"$rootfs/init" <<INIT
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs tmp /tmp
echo "KERNEL-TESTS booted \$(cat /proc/version)"
DOTNET_gcServer=0 /bin/kernel-tests $seed
echo "KERNEL-TESTS exit \$?"
INIT
chmod +x "$rootfs/init"
python3 eng/kernel/newc.py "$rootfs" "$work/initrd.cpio" || fail "building the initramfs failed"

# No ACPI in the test kernel: when /init ends the kernel panics and QEMU exits (-no-reboot).
log=$work/serial.log
timeout 900 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -kernel "$kernel" -initrd "$work/initrd.cpio" \
  -append "console=ttyS0 panic=-1 quiet" -display none -nodefaults -serial "file:$log" -no-reboot >/dev/null 2>&1
echo "$layout"
grep -aE '^KERNEL-TEST' "$log" | tr -d '\r'
grep -aq '^KERNEL-TESTS booted' "$log" || { tail -40 "$log"; fail "the VM never ran /init"; }
summary=$(grep -aoE '^KERNEL-TESTS [0-9]+ passed, [0-9]+ failed' "$log" | tail -n1)
[[ -n $summary ]] || { tail -40 "$log"; fail "the test program did not finish"; }
passed=$(sed -E 's/KERNEL-TESTS ([0-9]+) passed.*/\1/' <<<"$summary")
failed=$(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$summary")
if [[ $layout == *PASS* ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
echo "kernel tests: $passed passed, $failed failed"
[[ $failed -eq 0 && $passed -gt 0 ]]
