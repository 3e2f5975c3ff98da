"""Recording zPCI instructions executed by the firmware model itself.

``ModelRecorder`` is what ``zpci-emu boot --trace`` does per zPCI
instruction, without the CPU emulator: it runs the instruction on a Machine
against a guest, logs the memory it touched (RecordingGuest) and writes the
event.  Tests drive it with instruction sequences; the result is a trace
whose every event the model must reproduce under --check.
"""
from __future__ import annotations

from emulator.decode import decode_one
from firmware_model.guest import RecordingGuest

_CC_MASK = 3 << 44


class ModelRecorder:
    def __init__(self, writer, machine, guest, pswm: int = 0x0704C00180000000,
                 blocks: bool = False):
        self.w = writer
        self.m = machine
        self.g = guest
        # the machine's storage logs too: a boot trace holds the device's DMA, so
        # that replay can run the device models live against the recording
        self.storage = RecordingGuest(guest)
        machine.attach(self.storage)
        self.pswm = pswm
        self.blocks = blocks
        self._bids: dict = {}

    def execute(self, insn: bytes, addr: int):
        g = self.g
        if self.blocks:
            key = (addr, bytes(insn))
            bid = self._bids.get(key)
            if bid is None:
                bid = self._bids[key] = self.w.add_block(addr, bytes(insn))
            self.w.run_block(bid)
        before = [g.gpr(r) for r in range(16)]
        rg = self.storage
        rg.clear()
        out = self.m.execute(decode_one(bytes(insn), addr), rg)
        after = [g.gpr(r) for r in range(16)]
        c = out.completion
        pswm_after = self.pswm
        if c.pgm is None and c.cc is not None:
            pswm_after = (self.pswm & ~_CC_MASK) | (c.cc << 44)
        self.w.zpci_event(addr, insn, before, after, pswm_before=self.pswm, pswm_after=pswm_after,
                          reads=rg.reads, writes=rg.writes, pgm=c.pgm)
        self.pswm = pswm_after
        return out
