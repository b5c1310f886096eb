#!/usr/bin/env bash
# Builds the test kernel the kernel tests boot: Debian trixie's linux-source-6.12, tinyconfig plus a serial console,
# an initramfs, what a .NET program needs (futex, epoll, eventfd, timers, membarrier, rseq, Unix sockets, THP,
# userfaultfd) and iommufd with the kernel's own test IOMMU (CONFIG_IOMMUFD_TEST, which needs the fault-injection
# and runtime-testing menus). The source comes through eng/debian-download.sh: the machine's apt configuration is
# not changed. Takes about 9 minutes on 2 cores. Prints the image's path.
# Usage: eng/kernel/build-kernel.sh [work folder]   (default $TMPDIR/dirtylog-kernel; an image already built is reused)
set -euo pipefail
work=${1:-${TMPDIR:-/tmp}/dirtylog-kernel}
tree=$work/linux-source-6.12
image=$tree/arch/x86/boot/bzImage
if [[ -f $image ]]; then echo "$image"; exit 0; fi

apt-get install -y -qq flex bison libelf-dev bc >&2
mkdir -p "$work"
deb=$(bash "$(dirname "$0")/../debian-download.sh" linux-source-6.12 "$work")
dpkg -x "$deb" "$work/deb"
tar -C "$work" -xf "$work"/deb/usr/src/linux-source-6.12.tar.xz

cd "$tree"
make -s tinyconfig >&2
options=(64BIT SMP PRINTK EARLY_PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE
         BLK_DEV_INITRD BINFMT_ELF BINFMT_SCRIPT DEVTMPFS DEVTMPFS_MOUNT PROC_FS SYSFS TMPFS SHMEM MULTIUSER
         FUTEX EPOLL EVENTFD SIGNALFD TIMERFD POSIX_TIMERS FILE_LOCKING ADVISE_SYSCALLS MEMBARRIER RSEQ NET UNIX
         INOTIFY_USER TRANSPARENT_HUGEPAGE USERFAULTFD
         HYPERVISOR_GUEST PARAVIRT KVM_GUEST X86_TSC CPU_SUP_AMD CPU_SUP_INTEL
         EXPERT DEBUG_KERNEL FAULT_INJECTION RUNTIME_TESTING_MENU IOMMU_SUPPORT IOMMUFD IOMMUFD_TEST)
for option in "${options[@]}"; do scripts/config --enable "$option"; done
scripts/config --set-val NR_CPUS 2
make -s olddefconfig >&2
for option in IOMMUFD IOMMUFD_TEST; do grep -q "^CONFIG_$option=y" .config || { echo "CONFIG_$option did not stick" >&2; exit 1; }; done
make -s -j"$(nproc)" bzImage >&2
echo "$image"
