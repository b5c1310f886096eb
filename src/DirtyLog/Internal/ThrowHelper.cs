// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Diagnostics.CodeAnalysis;
using System.Runtime.CompilerServices;

namespace DirtyLog.Internal;

/// <summary>Cold throw paths, kept out of the hot methods so that they stay small and inlinable.</summary>
internal static class ThrowHelper
{
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowObjectDisposed(object instance) =>
        throw new ObjectDisposedException(instance.GetType().FullName);

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowPageOutOfRange(string paramName, ulong page, ulong pageCount) =>
        throw new ArgumentOutOfRangeException(paramName, page,
            $"Page {page:#,0} (0x{page:x}) is beyond the bitmap's page space of {pageCount:#,0} pages (last page 0x{pageCount - 1:x}).");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowRangeOutOfRange(string paramName, ulong firstPage, ulong pageCount, ulong spaceCount)
    {
        string reason = firstPage + pageCount < firstPage
            ? $"the range [0x{firstPage:x} +{pageCount:#,0}) overflows a 64-bit page number"
            : $"the range [0x{firstPage:x} +{pageCount:#,0}) ends past the bitmap's page space of {spaceCount:#,0} pages";
        throw new ArgumentOutOfRangeException(paramName, pageCount, $"Invalid page range: {reason}.");
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    public static void ThrowBitmapTooShort(string paramName, int words, ulong pageCount) =>
        throw new ArgumentException(
            $"The bitmap holds {words:#,0} words ({(ulong)words * 64:#,0} bits) but {pageCount:#,0} pages were announced; it needs {(pageCount + 63) / 64:#,0} words.",
            paramName);
}
