// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Bitmaps.Layouts;

/// <summary>
/// Asks the memory system for the dirty lines a walk visits next. Each atomic exchange of a harvest waits for the
/// misses before it, so a scattered dirty line would cost a whole memory latency; the summaries tell which lines come
/// next, so they are fetched ahead of the exchanges. The walk specialises per lookahead (a struct), so the calls inline.
/// </summary>
internal interface ILineLookahead
{
    /// <summary>The walk moves on by one line: fetch one more ahead.</summary>
    void Advance();
}
