#!/usr/bin/env python3
# Licensed under the MIT License. See LICENSE in the repository root.
"""Writes a directory tree as an initramfs: a cpio archive in the kernel's "newc" format (no cpio tool needed).

usage: newc.py ROOT OUTPUT
"""
import os
import stat
import sys


def entry(out, name, st, data, ino):
    name_bytes = name.encode() + b"\0"
    header = "070701" + "".join(f"{v:08x}" for v in (
        ino, st.st_mode if st else 0, 0, 0, st.st_nlink if st else 1, int(st.st_mtime) if st else 0,
        len(data), 0, 0, 0, 0, len(name_bytes), 0))
    out.write(header.encode() + name_bytes)
    out.write(b"\0" * ((4 - (110 + len(name_bytes)) % 4) % 4))
    out.write(data)
    out.write(b"\0" * ((4 - len(data) % 4) % 4))


def main(root, output):
    with open(output, "wb") as out:
        ino = 1
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                path = os.path.join(directory, name)
                st = os.lstat(path)
                if stat.S_ISLNK(st.st_mode):
                    data = os.readlink(path).encode()
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        data = f.read()
                else:
                    data = b""
                entry(out, os.path.relpath(path, root), st, data, ino)
                ino += 1
        entry(out, "TRAILER!!!", None, b"", 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
