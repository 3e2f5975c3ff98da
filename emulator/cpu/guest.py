"""The guest as the firmware model sees it: firmware_model.guest.Guest over a trap."""
from __future__ import annotations

from emulator._native import ffi, lib
from emulator.cpu import native
from emulator.cpu.lowcore import PSW_MASK_DAT


class UcGuest:
    """firmware_model.guest.Guest over the trap context: GPRs and absolute memory.

    ``gpr`` and ``set_gpr`` are cbits/trap.c's builtins over the trap
    context's GPR array (the model calls them several times per instruction,
    so neither spends a Python frame or a cffi conversion); trap.c writes the
    array back to unicorn after the callback.  Memory goes straight to unicorn
    through trap.c's helpers; reads of up to READ_BUF bytes reuse one buffer.
    """

    __slots__ = ("gprs", "gpr", "set_gpr", "problem_state", "absolute", "_t", "_size", "_buf",
                 "_chars", "_mem_read", "_mem_write", "_unpack")

    READ_BUF = 4096

    def __init__(self, t, size: int):
        self._t = t
        self.gprs = t.gpr
        accessors: list = []
        native.check(lib.trap_gpr_accessors(t, native.object_pointer(t), native.object_pointer(accessors)))
        self.gpr, self.set_gpr = accessors
        self._size = size
        self._buf = ffi.new("uint8_t[]", self.READ_BUF)
        self._chars = ffi.cast("char *", self._buf)     # ffi.unpack of a char * gives bytes
        self._mem_read = lib.trap_mem_read
        self._mem_write = lib.trap_mem_write
        self._unpack = ffi.unpack
        self.problem_state = False
        self.absolute = self

    def read(self, addr: int, size: int) -> bytes | None:
        if addr < 0 or size < 0 or addr + size > self._size:
            return None
        return self._read(self._mem_read, addr, size)

    def _read(self, reader, addr: int, size: int) -> bytes | None:
        """``size`` bytes by trap.c's ``reader`` (absolute or virtual)."""
        if size > self.READ_BUF:
            buf = ffi.new("uint8_t[]", size)
            if reader(self._t, addr, buf, size):
                return None
            return ffi.buffer(buf, size)[:]
        # the DMA table walk reads 8 bytes at a time: one buffer for all
        if size and reader(self._t, addr, self._buf, size):
            return None
        return self._unpack(self._chars, size)

    def write(self, addr: int, data: bytes) -> bool:
        n = len(data)
        if addr < 0 or addr + n > self._size:
            return False
        if data.__class__ is not bytes:
            data = bytes(data)
        if n and self._mem_write(self._t, addr, data, n):
            return False
        return True


class DatGuest(UcGuest):
    """The model's Guest for a supervisor-state kernel: translated while DAT is on.

    Linux keeps zPCI operand blocks (FIB, PCISTB source, CLP blocks) where
    its instructions address them virtually, on vmapped stacks; the model's
    other addresses (DMA, IOTA, FMB) are absolute.  A 6.1 kernel maps all
    of memory at virtual = absolute, so translating every access with the
    CPU's current translation serves the operands; the firmware's own
    absolute accesses (the DMA tables the IOTA anchors) go through
    ``absolute``, the machine's absolute storage.
    """

    __slots__ = ("_dat_t", "_vread", "_vwrite")

    def __init__(self, t, size: int, absolute: UcGuest):
        super().__init__(t, size)
        self.absolute = absolute
        self._dat_t = t
        self._vread = lib.trap_vmem_read
        self._vwrite = lib.trap_vmem_write

    def _dat(self) -> bool:
        return bool(self._dat_t.pswm & PSW_MASK_DAT)

    def read(self, addr: int, size: int) -> bytes | None:
        if not self._dat():
            return super().read(addr, size)
        if addr < 0 or size < 0:
            return None
        return self._read(self._vread, addr, size)

    def write(self, addr: int, data: bytes) -> bool:
        if not self._dat():
            return super().write(addr, data)
        if addr < 0:
            return False
        data = bytes(data)
        return not (data and self._vwrite(self._t, addr, data, len(data)))
