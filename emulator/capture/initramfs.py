"""A gzip'd newc cpio archive, written directly (no cpio tool needed)."""
from __future__ import annotations

import gzip
import stat
from pathlib import Path


class Cpio:
    def __init__(self):
        self._parts: list[bytes] = []
        self._ino = 1
        self._names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        name = name.lstrip("/")
        if name in self._names:
            raise ValueError(f"duplicate cpio entry {name}")
        self._names.add(name)
        nb = name.encode() + b"\0"
        fields = [self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
        self._ino += 1
        head = b"070701" + b"".join(b"%08x" % f for f in fields)
        self._parts += [head, nb, b"\0" * (-(len(head) + len(nb)) % 4), data,
                        b"\0" * (-len(data) % 4)]

    def dir(self, name: str):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, mode: int = 0o600):
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def bytes(self) -> bytes:
        """The archive: the entries, the TRAILER!!! entry, padding to 512 bytes."""
        trailer = Cpio()
        trailer._ino = 0
        trailer._entry("TRAILER!!!", 0)
        raw = b"".join(self._parts + trailer._parts)
        return raw + b"\0" * (-len(raw) % 512)

    def write_gz(self, path: Path) -> Path:
        Path(path).write_bytes(gzip.compress(self.bytes(), compresslevel=6, mtime=0))
        return Path(path)
