// Licensed under the MIT License. See LICENSE in the repository root.

using System.Runtime.CompilerServices;

// Every native signature is blittable; the source-generated stubs do the rest (errno capture included).
[assembly: DisableRuntimeMarshalling]
