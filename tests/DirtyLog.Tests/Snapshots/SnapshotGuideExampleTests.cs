// Licensed under the MIT License. See LICENSE in the repository root.

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;
using DirtyLog.Bitmaps;
using DirtyLog.Memory;
using DirtyLog.Native;
using DirtyLog.Snapshots;
using NUnit.Framework;

namespace DirtyLog.Tests.Snapshots;

/// <summary>The snapshots guide's write-protected link, line for line: a write after resume does not reach the link.</summary>
[TestFixture]
[Category("Kernel")]
[Category("Userfaultfd")]
public sealed class SnapshotGuideExampleTests
{
    private const ulong MemoryBytes = 4UL << 20;

    [Test]
    public async Task TheWriteProtectedLinkHoldsMemoryAsItWasInThePause()
    {
        try
        {
            UserfaultfdContext.CreateWriteProtect().Dispose();
        }
        catch (KernelException e)
        {
            Assume.That(false, $"a userfaultfd that catches faults taken in the kernel is not available: {e.Message}");
        }

        using var mapping = new AnonymousMapping(MemoryBytes);
        var guestMemory = new GuestMemoryView(mapping.Address, MemoryBytes);
        Span<byte> Page(ulong page) => guestMemory.Slice(page * 4096, 4096);
        Page(5).Fill(0x11);
        var writer = new SnapshotChainWriter(guestMemory);
        using var baseLink = new MemoryStream();
        await writer.WriteFullAsync(baseLink, null, CancellationToken.None);
        List<DirtyRun> runs = [new(5, 1), new(9, 2)];       // what the diff's consumer took in the pause
        using var file = new MemoryStream();
        CancellationToken ct = CancellationToken.None;
        bool resumed = false;
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>> SaveVcpuStates() => new Dictionary<string, ReadOnlyMemory<byte>> { ["vcpu0"] = new byte[] { 1, 2, 3 } };
        void ResumeVcpus()
        {
            resumed = true;
            Page(5).Fill(0x22);                              // the guest writes a page of the link at once
        }

        // snippet: write-protected-link
        using var guard = new CopyBeforeWriteGuard(guestMemory);   // once: registers guest memory with a userfaultfd
        // in the vCPUs' pause, after the final harvest:
        guard.Protect(runs);                                       // or guard.ProtectAll() for a full snapshot
        var states = SaveVcpuStates();                             // captured in the same pause
        ResumeVcpus();
        await writer.WriteProtectedAsync(file, guard, states, ct); // memory as it was at the protection, byte for byte
        // end of snippet

        byte[] restored = GC.AllocateArray<byte>((int)MemoryBytes, pinned: true);
        baseLink.Position = 0;
        file.Position = 0;
        var into = new GuestMemoryView(Marshal.UnsafeAddrOfPinnedArrayElement(restored, 0), MemoryBytes);
        await SnapshotChain.RestoreAsync([baseLink, file], into, memoryStartsZeroed: true, ct);

        Assert.Multiple(() =>
        {
            Assert.That(resumed, Is.True);
            Assert.That(Page(5)[0], Is.EqualTo(0x22), "the guest's write went through");
            Assert.That(restored[5 * 4096], Is.EqualTo(0x11), "the link holds page 5 as it was in the pause");
            Assert.That(guard.PagesCopiedOnWrite, Is.GreaterThanOrEqualTo(1), "the write waited for its page's copy");
        });
    }
}
