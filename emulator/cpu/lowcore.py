"""The lowcore and PSW rules the emulated CPU follows (z/Architecture, as QEMU 7.2).

Interruptions swap PSWs through fixed real addresses (PoP "Assigned Storage
Locations"); QEMU's do_program_interrupt and do_svc_interrupt write the same
fields, so these offsets are what a guest reads back.
"""
from __future__ import annotations

# PSW mask bits (bit n of the PoP is 1 << (63 - n))
PSW_MASK_PER = 1 << 62          # bit 1
PSW_MASK_DAT = 1 << 58          # bit 5
PSW_MASK_IO = 1 << 57           # bit 6
PSW_MASK_EXT = 1 << 56          # bit 7
PSW_MASK_KEY = 0xF << 52        # bits 8-11
PSW_MASK_MCHECK = 1 << 50       # bit 13
PSW_MASK_WAIT = 1 << 49         # bit 14
PSW_MASK_PSTATE = 1 << 48       # bit 15
PSW_MASK_ASC = 3 << 46          # bits 16-17
PSW_MASK_CC = 3 << 44           # bits 18-19
PSW_MASK_PM = 0xF << 40         # bits 20-23
PSW_MASK_RI = 1 << 39           # bit 24
PSW_MASK_64 = 1 << 32           # bit 31 (EA)
PSW_MASK_32 = 1 << 31           # bit 32 (BA)
PSW_MASK_INTERRUPTS = PSW_MASK_IO | PSW_MASK_EXT | PSW_MASK_MCHECK

# QEMU's -kernel start state (hw/s390x/ipl.c IPL_PSW_MASK): EA|BA, all else 0
IPL_PSW_MASK = PSW_MASK_64 | PSW_MASK_32

# Reset values of the control registers (QEMU target/s390x/cpu.h CR0_RESET, CR14_RESET)
CR0_RESET = 0xE0
CR14_RESET = 0xC2000000

# Assigned storage locations (real addresses)
EXT_PARAMS = 0x80               # u32 external-interruption parameter
CPU_ADDR = 0x84                 # u16 CPU address of the interrupted CPU
EXT_INT_CODE = 0x86             # u16 external-interruption code
SVC_ILEN = 0x88                 # u16 ILC of SVC
SVC_CODE = 0x8A                 # u16 SVC number
PGM_ILEN = 0x8C                 # u16 ILC of the program interruption
PGM_CODE = 0x8E                 # u16 program-interruption code
DATA_EXC_CODE = 0x90            # u32 DXC
TRANS_EXC_CODE = 0xA8           # u64 translation-exception identification
SUBCHANNEL_ID = 0xB8            # u16 I/O interruption: subsystem-identification word
SUBCHANNEL_NR = 0xBA            # u16   ... subchannel number
IO_INT_PARM = 0xBC              # u32 I/O-interruption parameter
IO_INT_WORD = 0xC0              # u32 I/O-interruption-identification word
STFL_FAC_LIST = 0xC8            # u32 facility bits 0-31 stored by STFL
BREAKING_EVENT_ADDR = 0x110     # u64 PER breaking-event address
EXT_OLD_PSW = 0x130
SVC_OLD_PSW = 0x140
PROGRAM_OLD_PSW = 0x150
MCHK_OLD_PSW = 0x160
IO_OLD_PSW = 0x170
EXT_NEW_PSW = 0x1B0
SVC_NEW_PSW = 0x1C0
PROGRAM_NEW_PSW = 0x1D0
MCHK_NEW_PSW = 0x1E0
IO_NEW_PSW = 0x1F0
LOWCORE_SIZE = 0x2000

# Program-interruption codes
PGM_OPERATION = 0x01
PGM_PRIVILEGED = 0x02
PGM_EXECUTE = 0x03
PGM_PROTECTION = 0x04
PGM_ADDRESSING = 0x05
PGM_SPECIFICATION = 0x06
PGM_DATA = 0x07
PGM_FIXPT_OVERFLOW = 0x08
PGM_FIXPT_DIVIDE = 0x09
PGM_OPERAND = 0x15
PGM_SPECIAL_OP = 0x13
PGM_MONITOR = 0x40

# QEMU 7.2 do_program_interrupt advances the old PSW past the instruction for
# these codes ("not nullifying"); translation exceptions and the like keep it.
ADVANCING_PGM = frozenset({
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x0E,
    0x0F, 0x12, 0x13, 0x15, 0x1D, 0x1F, 0x30, 0x40,
})

# ILC of the specification exception for an odd instruction address in a
# loaded PSW (the architecture leaves it unpredictable; QEMU 8.0 and later,
# like the hardware kvm-unit-tests s390x/spec_ex runs on, give 2, and the old
# PSW's address is the odd one advanced by it)
ODD_ADDRESS_ILEN = 2

# Bits a z/Architecture PSW must have zero (PoP "Exceptions Associated with
# the PSW"): 0, 2-4, 12 (the ESA/390 format bit), 24-30 (24 is runtime
# instrumentation, a facility -cpu qemu lacks) and 33-63.
PSW_MASK_UNASSIGNED = ((1 << 63) | (7 << 59) | (1 << 51) | (0x7F << 33) | 0x7FFFFFFF)

# ILC of the early specification exception an invalid PSW gives when an
# interruption, LPSW or LPSWE loads it (the PSW is loaded, nothing of it runs)
EARLY_PSW_ILEN = 0


def psw_invalid(mask: int, addr: int) -> str | None:
    """Why (mask, addr) is an invalid PSW, or None: an early specification exception.

    An odd address is not among these: it is recognised later, when the
    instruction there would be fetched (a wait PSW fetches nothing).
    """
    if mask & PSW_MASK_UNASSIGNED:
        return "a bit that must be zero is one"
    ea, ba = mask & PSW_MASK_64, mask & PSW_MASK_32
    if ea and not ba:
        return "bit 31 (extended addressing) is one without bit 32"
    if not ea and addr >> (31 if ba else 24):
        return f"the address does not fit the {31 if ba else 24}-bit addressing mode"
    return None


def fetches_odd(mask: int, addr: int) -> bool:
    """Whether the next fetch under PSW (mask, addr) is at an odd address, a
    specification exception (a wait PSW fetches nothing)."""
    return bool(addr & 1) and not mask & PSW_MASK_WAIT


# External-interruption codes
EXT_SERVICE = 0x2401
EXT_CLOCK_COMP = 0x1004
CR0_SERVICE_SC = 1 << 9         # CR0 bit 54: service-signal subclass mask
CR0_CKC_SC = 1 << 11
CR0_LOW_ADDRESS_PROTECTION = 1 << 28   # CR0 bit 35            # CR0 bit 52: clock-comparator subclass mask
# CR6 bits 32-39: the I/O-interruption subclass mask, ISC 0 the leftmost
CR6_ISC_BIT0 = 0x80000000


def psw_bytes(mask: int, addr: int) -> bytes:
    return mask.to_bytes(8, "big") + addr.to_bytes(8, "big")
