"""The user's files, in and out, under one set of rules.

Inputs (ELF, raw blobs, traces, JSONL recordings, drive images) are opened by
``open_input``: only a regular file is read.  A FIFO would block the open
for ever, ``/dev/zero`` never ends, a directory is no data, and a ``/proc``
or ``/sys`` file states a size of 0 while it yields any amount; each is
refused with one line.  What is read is bounded by the size the file had when
it was opened, so a file growing under the reader cannot run it out of memory.

Outputs go through ``Output``: the path is checked (its folder exists, no
file in the way, not a folder itself, a name the file system can hold) and a
temporary file is created next to it before any long run, so a run that
cannot write its result fails at once; the result is renamed into place only
when the run succeeds, and a failed run leaves nothing behind.  A path that
already is a device or a FIFO (``/dev/null``, ``/dev/stdout``) is written
directly: nothing is left behind there either.

``load_json`` parses JSON from a file the user gave (a trace header or NOTE,
a JSONL line) within bounds the rest of the tool can rely on: nesting depth,
finite numbers, text that can be printed and encoded.
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import stat
import tempfile
from contextlib import contextmanager

from emulator.errors import UserError, quote

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))
JSON_MAX_DEPTH = 32      # headers, NOTEs and recorder lines nest 4 deep; JSON nests recursively


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_message(exc: OSError) -> str:
    if exc.errno == errno.ENAMETOOLONG:
        return "file name too long"
    return exc.strerror or str(exc)


class _Bounded(io.RawIOBase):
    """A file descriptor read up to offset ``limit`` (its size when opened), then end
    of file; seekable, so a reader can resume at a seek point of a trace."""

    def __init__(self, fd: int, limit: int):
        self._f = io.FileIO(fd, "rb", closefd=True)
        self._end = limit

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b) -> int:
        left = self._end - self._f.tell()
        if left <= 0:
            return 0
        view = memoryview(b).cast("B")
        return self._f.readinto(view[:min(len(view), left)]) or 0

    def close(self) -> None:
        self._f.close()
        super().close()


def _open_regular(path, where: str) -> tuple[int, os.stat_result]:
    """(descriptor, fstat) of a regular file, or a one-line UserError."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            # checked before opening: opening a FIFO or a device can block or act
            raise UserError(f"is {_kind(st.st_mode)}, not a regular file", where=where)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise UserError(_os_message(exc), where=where) from None
    except ValueError as exc:            # an embedded NUL
        raise UserError(str(exc), where=where) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):       # replaced between stat and open
        os.close(fd)
        raise UserError(f"is {_kind(st.st_mode)}, not a regular file", where=where)
    try:
        if st.st_size == 0 and os.read(fd, 1):
            raise UserError("says it holds 0 bytes but yields data (a /proc or /sys file?): "
                            "not a regular file", where=where)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError as exc:          # /proc/self/pagemap: reads only in 8-byte units
        os.close(fd)
        raise UserError(f"cannot be read as a file: {_os_message(exc)}", where=where) from None
    except UserError:
        os.close(fd)
        raise
    return fd, st


def open_input(path, where: str | None = None, buffer_size: int = 1 << 20):
    """A buffered binary stream over the regular file ``path``, reading at most
    the size it had when opened.  ``.size`` holds that size."""
    where = str(path) if where is None else where
    fd, st = _open_regular(path, where)
    f = io.BufferedReader(_Bounded(fd, st.st_size), buffer_size)
    f.size = st.st_size            # type: ignore[attr-defined]
    return f


def read_input(path, where: str | None = None) -> bytes:
    """The whole of the regular file ``path`` (at most its size when opened)."""
    where = str(path) if where is None else where
    with open_input(path, where) as f:
        try:
            return f.read()
        except OSError as exc:
            raise UserError(_os_message(exc), where=where) from None


def check_input(path, where: str | None = None) -> None:
    """Refuses ``path`` as ``open_input`` would, without reading it."""
    where = str(path) if where is None else where
    fd, _ = _open_regular(path, where)
    os.close(fd)


# --------------------------------------------------------------------------- outputs

class Output:
    """One output file: checked and reserved now, renamed into place by ``commit``.

    Write to ``.path`` (the temporary file; the target itself when that is a
    device or FIFO).  ``discard`` removes the temporary file; both are safe
    to call more than once.
    """

    def __init__(self, target, where: str | None = None):
        self.target = str(target)
        self.where = self.target if where is None else where
        self._direct = False
        self.path = self._reserve()
        self._done = False

    def _fail(self, what: str) -> UserError:
        return UserError(what, where=self.where)

    def _reserve(self) -> str:
        text = self.target
        if not text:
            raise self._fail("empty output path")
        if "\0" in text:
            raise self._fail("output path holds a NUL character")
        name = os.path.basename(text)
        if text.endswith(os.sep) or name in ("", ".", ".."):
            raise self._fail("names a folder, not a file")
        try:
            st = os.stat(text)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
                raise self._fail(_os_message(exc)) from None
            st = None
        if st is not None:
            if stat.S_ISDIR(st.st_mode):
                raise self._fail("is a directory")
            if not stat.S_ISREG(st.st_mode):
                self._direct = True           # /dev/null, /dev/stdout, a FIFO: written in place
                return text
        target = os.path.realpath(text) if os.path.islink(text) else text
        folder = os.path.dirname(target) or "."
        try:
            fst = os.stat(folder)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise self._fail(f"folder {quote(folder)} does not exist") from None
            if exc.errno == errno.ENOTDIR:
                raise self._fail("a file is in the way: part of the folder is not a folder") \
                    from None
            raise self._fail(_os_message(exc)) from None
        if not stat.S_ISDIR(fst.st_mode):
            raise self._fail(f"a file is in the way: {quote(folder)} is not a folder")
        try:
            name_max = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError):
            name_max = 255
        if len(os.fsencode(name)) > name_max:
            raise self._fail(f"file name too long ({len(os.fsencode(name))} bytes, "
                             f"at most {name_max})")
        self._target_real = target
        try:
            # the name's suffix kept last: a writer may take the format from it
            fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + name[:40] + ".",
                                       suffix=".tmp" + os.path.splitext(name)[1][:16])
        except OSError as exc:
            raise self._fail(f"cannot write in {quote(folder)}: {_os_message(exc)}") from None
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        os.close(fd)
        return tmp

    def commit(self) -> None:
        if self._done:
            return
        self._done = True
        if self._direct:
            return
        try:
            os.replace(self.path, self._target_real)
        except OSError as exc:
            self._remove()
            raise self._fail(f"cannot rename the result into place: {_os_message(exc)}") from None

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        if not self._direct:
            self._remove()

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _same(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


@contextmanager
def outputs(*targets):
    """``Output``s for the targets that are not None, reserved together (a
    second path that cannot be written releases the first); the context
    yields them in order (None where the target is None), commits them all
    when the block ends and discards them all if it raises."""
    named = [t for t in targets if t is not None]
    for i, t in enumerate(named):
        if any(_same(str(t), str(u)) for u in named[:i]):
            raise UserError("the same file is named for two outputs", where=str(t),
                            exit_code=2)
    made: list[Output] = []
    try:
        out = []
        for t in targets:
            o = None if t is None else Output(t)
            if o is not None:
                made.append(o)
            out.append(o)
        yield out
    except BaseException:
        for o in made:
            o.discard()
        raise
    for o in made:
        o.commit()


@contextmanager
def output_folder(folder, names):
    """``Output``s for the files ``names`` in ``folder``, which is made if it is
    missing (its parent must exist) and removed again if the block raises
    before anything was committed into it."""
    folder = str(folder)
    made = False
    if not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise UserError("a file is in the way: not a folder", where=folder)
        Output(folder.rstrip(os.sep) or folder, where=folder).discard()   # the parent's checks
        try:
            os.mkdir(folder)
        except OSError as exc:
            raise UserError(_os_message(exc), where=folder) from None
        made = True
    try:
        with outputs(*(os.path.join(folder, n) for n in names)) as outs:
            yield outs
    except BaseException:
        if made:
            try:
                os.rmdir(folder)
            except OSError:
                pass
        raise


@contextmanager
def output_file(target, where: str | None = None):
    """One ``Output``: the block writes ``.path``; committed on success, else discarded."""
    o = Output(target, where)
    try:
        yield o
    except BaseException:
        o.discard()
        raise
    o.commit()


# --------------------------------------------------------------------------- JSON

def _bad_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"number {text[:40]} is out of range")
    return v


def load_json(data):
    """``json.loads`` with the bounds a user's file needs: at most
    JSON_MAX_DEPTH levels, finite numbers (no NaN, Infinity, 1e400), strings
    without lone surrogates.  Anything else raises ValueError."""
    try:
        obj = json.loads(data, parse_constant=_bad_constant, parse_float=_finite)
    except RecursionError:
        raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels") from None
    # A str may hold surrogates as they are; in bytes only a \u escape makes
    # one, and only brackets nest: most lines need no walk.
    if (isinstance(data, str) or b"\\u" in data
            or data.count(b"[") + data.count(b"{") > JSON_MAX_DEPTH):
        _check_tree(obj)
    return obj


def _check_tree(obj) -> None:
    stack = [(obj, 1)]
    while stack:
        o, depth = stack.pop()
        if isinstance(o, str):
            _check_text(o)
            continue
        if not isinstance(o, (dict, list)):
            continue
        if depth > JSON_MAX_DEPTH:
            raise ValueError(f"nested deeper than {JSON_MAX_DEPTH} levels")
        if isinstance(o, dict):
            for k, v in o.items():
                _check_text(k)
                stack.append((v, depth + 1))
        else:
            stack.extend((v, depth + 1) for v in o)


def _check_text(s: str) -> None:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff), not Unicode text") \
            from None

