"""Architected zPCI constants, as QEMU 7.2 and Linux name them.

IBM has not published the zPCI instructions, so "architected" here means what
QEMU (hw/s390x/s390-pci-*.h) and Linux (arch/s390/include/asm/pci_*.h) agree
on; see ../shared/docs/zpci-architecture.md for the sources.

Enums document the values; the hot paths use the plain module constants
below them because an enum attribute lookup costs more than a global.
"""
from __future__ import annotations

import enum

MASK64 = (1 << 64) - 1


class Cc(enum.IntEnum):
    OK = 0              # ZPCI_PCI_LS_OK
    ERR = 1             # ZPCI_PCI_LS_ERR: status code in the status register
    BUSY = 2
    INVAL_HANDLE = 3


class Pgm(enum.IntEnum):
    """Program-interruption codes the zPCI instructions can raise."""
    OPERATION = 0x01
    PRIVILEGED = 0x02
    ADDRESSING = 0x05
    SPECIFICATION = 0x06
    OPERAND = 0x15


class LsStatus(enum.IntEnum):
    """ZPCI_PCI_ST_*: load/store (and general) status codes."""
    FUNC_NOT_ENABLED = 4
    FUNC_IN_ERR = 8
    BLOCKED = 12
    INSUF_RES = 16
    INVAL_AS = 20
    FUNC_ALREADY_ENABLED = 24
    DMA_AS_NOT_ENABLED = 28
    SECOND_OP_IN_INV_AS = 36
    FUNC_NOT_AVAIL = 40
    ALREADY_IN_RQ_STATE = 44


class ModStatus(enum.IntEnum):
    """ZPCI_MOD_ST_*: MPCIFC status codes."""
    RES_NOT_AVAIL = 4
    INSUF_RES = 16
    SEQUENCE = 24
    DMAAS_INVAL = 28
    FRAME_INVAL = 32
    ERROR_RECOVER = 40


class StpcifcStatus(enum.IntEnum):
    PERM_ERROR = 8
    INVAL_DMAAS = 28
    ERROR_RECOVER = 40


RPCIT_ST_INSUFF_RES = 16


class FnState(enum.IntEnum):
    """QEMU's ZpciState, in its order."""
    RESERVED = 0
    STANDBY = 1
    DISABLED = 2
    ENABLED = 3
    BLOCKED = 4
    ERROR = 5
    PERMANENT_ERROR = 6


# Function handle
FH_MASK_ENABLE = 0x80000000
FH_MASK_INSTANCE = 0x7F000000
FH_MASK_SHM = 0x00FF0000
FH_MASK_INDEX = 0x0000FFFF
FH_SHM_VFIO = 0x00010000
FH_SHM_EMUL = 0x00020000

ZPCI_MAX_FID = 0xFFFFFFFF
ZPCI_MAX_UID = 0xFFFF
UID_UNDEFINED = 0
UID_CHECKING_ENABLED = 0x01


class Pcias(enum.IntEnum):
    BAR0 = 0
    BAR1 = 1
    BAR2 = 2
    BAR3 = 3
    BAR4 = 4
    BAR5 = 5
    CONFIG = 15


ZPCI_IO_BAR_MIN = 0
ZPCI_IO_BAR_MAX = 5
ZPCI_CONFIG_BAR = 15
PCI_BAR_COUNT = 6


class Pec(enum.IntEnum):
    """Error-event (cc 1) and availability-event (cc 2) PECs."""
    INVALAS = 0x1
    OORANGE = 0x2
    INVALTF = 0x3
    TPROTE = 0x4
    APROTE = 0x5
    KEYE = 0x6
    INVALTE = 0x7
    INVALTL = 0x8
    TT = 0x9
    INVALMS = 0xA
    SERR = 0xB
    NOMSI = 0x10
    INVALBV = 0x11
    AIBV = 0x12
    AIRERR = 0x13
    FMBA = 0x2A
    FMBUP = 0x2B
    FMBPRO = 0x2C
    CCONF = 0x30
    SERVAC = 0x3A
    PERMERR = 0x3B
    # hot-plug (availability) events
    TO_CONFIGURED = 0x0301
    RESERVED_TO_STANDBY = 0x0302
    DECONFIGURE_REQUEST = 0x0303
    CONFIGURED_TO_STBRES = 0x0304
    STANDBY_TO_RESERVED = 0x0308


class MpcifcOc(enum.IntEnum):
    """ZPCI_MOD_FC_*: MPCIFC operation controls (R1 bits 56-63)."""
    REG_INT = 2
    DEREG_INT = 3
    REG_IOAT = 4
    DEREG_IOAT = 5
    REREG_IOAT = 6
    RESET_ERROR = 7
    RESET_BLOCK = 9
    SET_MEASURE = 10
    REG_INT_D = 16      # directed interrupts: Linux only, QEMU -> operand exception
    DEREG_INT_D = 17


class FibFc(enum.IntFlag):
    ENABLED = 0x80
    ERROR = 0x40
    LS_BLOCKED = 0x20
    DMAAS_REG = 0x10


FIB_SIZE = 80

# CLP
CLP_BLK_SIZE = 4096
LIST_PCI_HDR_LEN = 32
CLP_FH_LIST_ENTRY_SIZE = 16
CLP_FHLIST_MASK_CONFIG = 0x80000000
CLP_MASK_FMT = 0xF0000000
PCI_MAX_FUNCTIONS = 4096
CLP_UTIL_STR_LEN = 64
CLP_PFIP_NR_SEGMENTS = 4
CLP_REQ_QPCIG_MASK_PFGID = 0xFF


class ClpCmd(enum.IntEnum):
    SLPC = 0x0001       # Linux only; QEMU answers "command not recognized"
    LIST_PCI = 0x0002
    QUERY_PCI_FN = 0x0003
    QUERY_PCI_FNGRP = 0x0004
    SET_PCI_FN = 0x0005


class ClpRsp(enum.IntEnum):
    OK = 0x0010
    CMD = 0x0020
    PERM = 0x0030
    FMT = 0x0040
    LEN = 0x0050
    K8 = 0x0060             # CLP_RC_8K: command needs an 8K LPCB
    RESNOT0 = 0x0070
    NODATA = 0x0080
    FC_UNKNOWN = 0x0100
    SETPCIFN_FH = 0x0101
    SETPCIFN_FHOP = 0x0102
    SETPCIFN_DMAAS = 0x0103
    SETPCIFN_RES = 0x0104
    SETPCIFN_ALRDY = 0x0105
    SETPCIFN_ERR = 0x0106
    SETPCIFN_RECPND = 0x0107
    SETPCIFN_BUSY = 0x0108
    LISTPCI_BADRT = 0x010A
    QUERYPCIFG_PFGID = 0x010B


class SetPciFnOc(enum.IntEnum):
    ENABLE = 0          # "Yes, 0 enables it"
    DISABLE = 1
    ENABLE_MIO = 2      # Linux only; QEMU -> SETPCIFN_FHOP
    DISABLE_MIO = 3


class SicMode(enum.IntEnum):
    """SIC operation controls (R1 bits 48-63)."""
    ALL = 0
    SINGLE = 1
    SET_AENI_CONTROLS = 2
    DIRECT = 4
    D_ALL = 16
    D_SINGLE = 17
    SET_CPU = 18


# IOTA and I/O translation tables (4K pages)
class IotaDt(enum.IntEnum):
    STO = 0
    RTTO = 1
    RSTO = 2
    RFTO = 3
    PFAA = 4
    IOPFAA = 5
    IOPTO = 7


ZPCI_IOTA_IOT_ENABLED = 0x800
ZPCI_IOTA_RTTO_FLAG = ZPCI_IOTA_IOT_ENABLED | (IotaDt.RTTO << 2)   # 0x804, key 0

ZPCI_INDEX_MASK = 0x7FF
ZPCI_PT_MASK = 0xFF
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1) & MASK64
ZPCI_ST_SHIFT = 20
ZPCI_RT_SHIFT = 31

ZPCI_TABLE_TYPE_MASK = 0xC
ZPCI_TABLE_TYPE_RFX = 0xC
ZPCI_TABLE_TYPE_RSX = 0x8
ZPCI_TABLE_TYPE_RTX = 0x4
ZPCI_TABLE_TYPE_SX = 0x0
ZPCI_TABLE_LEN_RTX = 0x3
ZPCI_TABLE_OFFSET_MASK = 0xC0
ZPCI_TABLE_INVALID = 0x20          # region/segment entries
ZPCI_TABLE_PROTECTED = 0x200
ZPCI_TABLE_FC = 0x400              # segment entry maps a 1 MiB frame
ZPCI_PTE_INVALID = 0x400
ZPCI_RTE_ADDR_MASK = ~0x3FFF & MASK64
ZPCI_STE_ADDR_MASK = ~0x7FF & MASK64
ZPCI_PTE_ADDR_MASK = ~0xFFF & MASK64
ZPCI_SFAA_MASK = ~((1 << 20) - 1) & MASK64

# QEMU's defaults for emulated functions and the default group
ZPCI_SDMA_ADDR = 0x100000000
ZPCI_EDMA_ADDR = 0x1FFFFFFFFFFFFFF
ZPCI_MSI_ADDR = 0xFE00000000000000
ZPCI_MSI_VEC_MASK = 0x7FF
ZPCI_DEFAULT_FN_GRP = 0xFF
ZPCI_DTSM = 0x40
DEFAULT_MUI = 4000

# Function measurement block (ZpciFmb)
FMBK_MASK = 0xF
FMB_UPDATE_U_BIT = 0x1
FMB_FORMAT = 0
FMB_OFF_FORMAT = 0
FMB_OFF_SAMPLE = 4
FMB_OFF_LAST_UPDATE = 8
FMB_OFF_COUNTERS = 16
FMB_SIZE = 64          # through the format-0 DMA byte counters

# measurement counters, in the block's order
FMB_CNT_LD = 0
FMB_CNT_ST = 1
FMB_CNT_STB = 2
FMB_CNT_RPCIT = 3
