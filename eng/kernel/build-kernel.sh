#!/usr/bin/env bash
# Builds the test kernel the kernel tests boot: Debian trixie's linux-source-6.12, tinyconfig plus a serial console,
# an initramfs, what a .NET program needs (futex, epoll, eventfd, timers, membarrier, rseq, Unix sockets, THP,
# userfaultfd) and iommufd with the kernel's own test IOMMU (CONFIG_IOMMUFD_TEST, which needs the fault-injection
# and runtime-testing menus). apt's state for the download is private to the work folder: the machine's apt
# configuration is not changed. Takes about 9 minutes on 2 cores. Prints the image's path.
# Usage: eng/kernel/build-kernel.sh [work folder]   (default $TMPDIR/dirtylog-kernel; an image already built is reused)
set -euo pipefail
work=${1:-${TMPDIR:-/tmp}/dirtylog-kernel}
tree=$work/linux-source-6.12
image=$tree/arch/x86/boot/bzImage
if [[ -f $image ]]; then echo "$image"; exit 0; fi

apt-get install -y -qq flex bison libelf-dev bc >&2
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/apt/parts" "$work/apt/prefs"
# The machine's Debian mirror, from either sources format.
# (Either file may be missing: the list is read whatever sed says about them.)
mirror=$({ sed -nE 's/^\s*URIs:\s*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | tr ' ' '\n' || true
           sed -nE 's/^\s*deb\s+(\[[^]]*\]\s+)?(\S+).*/\2/p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
         grep -E '/debian/?$' | head -n1 || true)
[[ -n $mirror ]] || { echo "build-kernel: no Debian archive in this machine's apt sources" >&2; exit 1; }
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" >"$work/apt/sources.list"
private=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=$work/apt/parts"
         -o "Dir::Etc::Preferences=$work/apt/prefs/none" -o "Dir::Etc::PreferencesParts=$work/apt/prefs"
         -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o "APT::Get::List-Cleanup=0"
         -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
apt-get "${private[@]}" -qq update >&2
(cd "$work" && apt-get "${private[@]}" -qq download linux-source-6.12 >&2)
dpkg -x "$work"/linux-source-6.12_*.deb "$work/deb"
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
