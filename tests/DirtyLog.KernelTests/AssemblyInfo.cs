// Licensed under the MIT License. See LICENSE in the repository root.

// Runs on Linux only: it drives the kernel's iommufd.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
