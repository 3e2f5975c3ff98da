"""Kinds of EVENT record heads: what the replay loop needs to know once per kind.

Records whose head from the instruction to the memory counts is the same
(bytes 32..52 of the EVENT head: instruction, length, flags, cc, register
and memory masks) have the same layout, the same instruction and the same
handle register, so the loop checks and classifies a head once per kind and
afterwards only looks it up.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from emulator.decode import decode_one
from emulator.trace.format import EVENT_HEAD, popcount16
from emulator.trace.reader import check_event_head, parse_event
from firmware_model.insns import BY_MNEMONIC
from firmware_model.policy import handle_register

_EH = EVENT_HEAD.size
KIND_KEY = slice(32, 52)        # the head bytes that decide a record's kind

# Configuration instructions change what the host knows about a function
# (GISA designation, IOAT path): they end an epoch of the decision cache.
EPOCH_ENDERS = frozenset(BY_MNEMONIC[m].index for m in ("CLP", "MPCIFC"))

# What the decision cache does with an event of a kind (HeadSpec.role).
UNKEYED = 0      # the handle is not recorded: the full model runs (and sees it missing)
KEYED = 1        # decided by (kind, handle, PSW byte) within an epoch
CONFIG = 2       # a configuration instruction: runs fully and may end the epoch


class HeadSpec(NamedTuple):
    index: int            # the instruction's row in firmware_model/zpci_insns.def
    fh_off: int           # offset of the handle (high word of the request register) in the record
    role: int             # UNKEYED, KEYED or CONFIG
    length: int           # the record's length when its memory ranges have the kind's lengths
    memory: struct.Struct | None   # unpacks (address, length) of each memory range; None: no memory
    lens: tuple           # the memory ranges' lengths the kind stands for
    sid: int              # a number for this kind, unique within one replay


def decoded(insn: bytes, addr: int):
    """The decoded instruction of an event (the reader has refused bytes that are no zPCI instruction)."""
    return decode_one(insn, addr)


class HeadKinds:
    """The HeadSpec of each kind of event head seen so far (at most 4096, then forgotten)."""

    __slots__ = ("rd", "specs", "_sid")

    def __init__(self, rd):
        self.rd = rd
        self.specs: dict[bytes, HeadSpec] = {}
        self._sid = 0

    def learn(self, buf, start: int, n: int, off: int) -> HeadSpec:
        """Check one kind of event head and note what the loop needs for it."""
        rd = self.rd
        if n < _EH:
            raise rd.error(off, f"short EVENT record ({n} bytes)")
        (seq, _addr, _pb, _pa, insn6, ilen, flags, cc, _r, _pgm, in_mask, out_mask, nr, nw) = \
            EVENT_HEAD.unpack_from(buf, start)
        ins = check_event_head(rd, off, insn6, ilen, flags, cc)
        hr = handle_register(ins.index, decoded(bytes(insn6[:ilen]), 0))
        nin = popcount16(in_mask)
        if ins.index in EPOCH_ENDERS:
            role, fh_off = CONFIG, 0
        elif (in_mask >> hr) & 1:
            role = KEYED
            fh_off = _EH + 8 * popcount16(in_mask & ((1 << hr) - 1)) + 4   # high word: the handle
        else:
            role, fh_off = UNKEYED, 0
        regs = 8 * (nin + popcount16(out_mask))
        if nr + nw:
            # The memory ranges' lengths of this record stand for its kind:
            # records of the same shape (DMA table entries, an IIB) then check
            # in one unpack; any other shape takes parse_event's walk.
            rd.last_seq = seq - 1
            ev = parse_event(rd, buf, start, n, off)
            lens = tuple(len(d) for _, d in ev.reads + ev.writes)
            memory = struct.Struct("<" + "8x" * (regs // 8) + "".join(f"QI{ln}x" for ln in lens))
            length = memory.size + _EH
        else:
            memory, length, lens = None, _EH + regs, ()
        self._sid += 1
        spec = HeadSpec(ins.index, fh_off, role, length, memory, lens, self._sid)
        if len(self.specs) > 4096:
            self.specs.clear()
        self.specs[bytes(buf[start + KIND_KEY.start:start + KIND_KEY.stop])] = spec
        return spec
