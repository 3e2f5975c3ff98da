"""The firmware's own zPCI interpretation: load/store, and (what-if) RPCIT.

Firmware serves only functions the host enabled for interpretation with
this guest's GISA (the decision established that before it runs).  It finds
the function by the handle the guest presents in its own function table
(the dispatcher's lookup, passed in as ``found``), never through QEMU's bus;
what it then does is semantics.py's, so the guest sees QEMU's answer.

Each handler has the signature ``(d, guest, req, found) -> Completion | None``:
``req`` is the value of the row's handle register, ``found`` the
``FunctionEntry`` the firmware table holds for ``req >> 32`` (or None).
None means the firmware does not complete the instruction itself: it
intercepts, and the dispatcher sends it to userspace.  A load/store row's
handler is the table lookup around a body (``BODIES``), which the
dispatcher runs directly when its own lookup has found the function.
"""
from __future__ import annotations

from functools import partial

from .dma import shadow_pass
from .insns import InsnClass, TABLE
from .outcome import CC3, Completion
from .semantics import load, registration_matches, store, store_block, translate


def _access(semantic):
    """A load/store/store-block row: the firmware completes it for any function
    in its table; a handle whose function changed since is cc 3."""
    def serve(d, guest, req, found):
        if found is None:
            return None
        fn = found.fn
        if fn.fh != req >> 32:
            return CC3
        return semantic(fn, d, guest, req)
    serve.__name__ = serve.__qualname__ = semantic.__name__
    return serve


def _shadow(guest, fn, hf, ioat, start, end):
    return shadow_pass(guest.absolute, fn, hf.domain, ioat, start, end)[:2]


def rpcit(d, guest, req, found) -> Completion | None:
    """What-if: RPCIT against the IOAT the host registered for the function."""
    if found is None:
        return None
    hf, fn = found.hf, found.fn
    ioat = hf.ioat
    if ioat is None or fn.dma_avail is not None or not registration_matches(fn, ioat):
        # no anchor to refresh against, a budget only userspace keeps, or a
        # registration that is not the guest's: intercept
        return None
    if fn.fh != req >> 32:
        return CC3
    return translate(fn, d, guest, partial(_shadow, guest, fn, hf, ioat))[0]


# per class, what the firmware completes for a function its table names under
# the request's own handle: the shared semantics, (fn, d, guest, req) -> Completion
BODIES_BY_CLASS = {
    InsnClass.LOAD: load,
    InsnClass.STORE: store,
    InsnClass.STORE_BLOCK: store_block,
}
# per class, what the firmware completes itself; every other class intercepts
HANDLERS = {cls: _access(body) for cls, body in BODIES_BY_CLASS.items()}
HANDLERS[InsnClass.TRANSLATE] = rpcit
# per table row, the firmware's handler or None (always intercepted)
ROWS = tuple(HANDLERS.get(i.cls) for i in TABLE)
# per table row, the handler's body or None: the dispatcher, whose lookup found the
# function under the handle (what ``serve`` checks first), runs it directly
BODIES = tuple(BODIES_BY_CLASS.get(i.cls) for i in TABLE)
