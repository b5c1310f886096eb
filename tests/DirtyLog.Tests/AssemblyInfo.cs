// Licensed under the MIT License. See LICENSE in the repository root.

// Runs on Linux only: it drives Linux kernel facilities (KVM, userfaultfd, mmap).
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
