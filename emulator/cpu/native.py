"""The binding to libunicorn and the cffi trap registry of cbits/trap.c.

cbits/trap.c reaches unicorn through the very libunicorn the Python binding
loaded (trap_bind), hooks an engine by its handle, and calls Python back in
two ways: the run's zPCI callable directly (a PyObject pointer trap_run
takes), and cffi ``extern "Python"`` functions for the rare traps.  This
module owns both ends: the library path, the engine handle, the object
pointers and which machine's handlers the externs are attached to.  Unicorn
register ids and exception numbers the trap path uses live here too.
"""
from __future__ import annotations

import sys
from pathlib import Path

from unicorn import Uc
from unicorn import s390x_const as sc

from emulator._native import ffi, lib

EXCP_SVC = 2
EXCP_PGM = 3
REG_CR0 = sc.UC_S390X_REG_CR0
REG_PSWM = sc.UC_S390X_REG_PSWM
REG_PC = sc.UC_S390X_REG_PC

if sys.implementation.name != "cpython":     # id() is an address only there
    raise ImportError("emulator.cpu.native needs CPython (trap_run takes PyObject pointers)")


def check(rc: int) -> None:
    """A trap.c call's non-zero result as the RuntimeError naming why."""
    if rc != 0:
        raise RuntimeError(ffi.string(lib.trap_last_error()).decode())


def _unicorn_library() -> str:
    """Path of the libunicorn the Python binding has loaded."""
    try:
        from unicorn.unicorn_py3 import unicorn as binding
        name = getattr(binding.uclib, "_name", None)
        if name:
            return name
    except (ImportError, AttributeError):
        pass
    import unicorn
    return str(Path(unicorn.__file__).parent / "lib" / "libunicorn.so.2")


def bind() -> None:
    """Binds trap.c to the binding's libunicorn (once; later calls are free)."""
    check(lib.trap_bind(_unicorn_library().encode()))


def engine_handle(uc: Uc) -> int:
    """The ``uc_engine *`` behind a binding's Uc, for trap_install."""
    h = getattr(uc, "_uch", None)
    value = getattr(h, "value", None)
    if not value:
        raise RuntimeError("cannot reach the unicorn engine handle (unicorn binding changed?)")
    return int(value)


def object_pointer(obj):
    """``obj`` as the ``PyObject *`` trap_run takes (a ``void *`` in the cdef).

    In CPython ``id()`` is the object's address.  The pointer is only valid
    while the caller keeps ``obj`` referenced; trap_run takes its own
    reference for the run and drops it at the end.
    """
    return ffi.cast("void *", id(obj))


# --- the extern "Python" functions of cbits/trap_cdef.h ------------------------------
# cbits/trap.c calls these three by name for the rare traps (privileged
# instructions other than zPCI, the block hook, the poll); UcMachine.run
# attaches the running machine's handlers to them (ffi.def_extern again,
# ~1 us) for the length of its trap_run and restores the previous ones
# afterwards, so a machine run from inside another machine's callback works
# too.  Outside any run the idle handlers below are attached: they stop a run
# nobody attached to.  (cffi itself keeps the last machine's handlers
# referenced, measured: that one machine is freed once another machine has
# run.)  The zPCI callback, once per zPCI instruction, is not among them:
# trap_run takes it as a Python object and trap.c calls it directly, which
# saves cffi's extern "Python" entry and exit (~0.19 us a call).
EXTERNS = ("trap_py_other", "trap_py_block", "trap_py_poll")


def _idle_stop(*_args) -> int:
    return 1


def _idle_block(*_args) -> None:
    return None


IDLE = ((_idle_stop, None), (_idle_block, None), (_idle_stop, None))
_attached: tuple = ()


def attach(handlers: tuple) -> tuple:
    """Attaches ((other, onerror), (block, onerror), (poll, onerror)).

    Returns what was attached before, for the caller to attach again.
    """
    global _attached
    previous = _attached
    if handlers is not previous:
        for name, (fn, onerror) in zip(EXTERNS, handlers):
            ffi.def_extern(name=name, onerror=onerror)(fn)
        _attached = handlers
    return previous


attach(IDLE)
