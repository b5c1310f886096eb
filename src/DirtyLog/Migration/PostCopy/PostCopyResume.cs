// Licensed under the MIT License. See LICENSE in the repository root.

namespace DirtyLog.Migration.PostCopy;

/// <summary>A recovered post-copy connection's resume, as read: whether it is the control connection, its push index, attempt, token and push count.</summary>
internal readonly record struct PostCopyResume(bool IsControl, int Index, uint Attempt, ulong Token, uint PushConnections);
