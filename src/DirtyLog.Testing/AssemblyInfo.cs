// Licensed under the MIT License. See LICENSE in the repository root.

// The test doubles stand in for Linux kernel facilities, over Linux memory (mmap) and, for the tiny guest, /dev/kvm.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
