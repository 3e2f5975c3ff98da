"""SERVICE CALL (SERVC) as QEMU 7.2's SCLP answers a bare-metal guest.

The guest's console is an SCLP ASCII console (event type 0x1a): WRITE EVENT
DATA hands the text to QEMU's sclpconsole, which writes it to its chardev byte
for byte.  QEMU runs the command synchronously (the response code is in the
SCCB when SERVC completes with cc 0) and then raises a service-signal
external interruption, which stays pending while the guest keeps external
interruptions disabled.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from emulator.cpu import lowcore as lc

SCLP_CMD_CODE_MASK = 0xFFFF00FF
CMDW_READ_SCP_INFO = 0x00020001
CMDW_READ_SCP_INFO_FORCED = 0x00120001
CMDW_READ_CPU_INFO = 0x00010001
CMDW_CONFIGURE_IOA = 0x001A0001
CMDW_DECONFIGURE_IOA = 0x001B0001
CMD_READ_EVENT_DATA = 0x00770005
CMD_WRITE_EVENT_DATA = 0x00760005
CMD_WRITE_EVENT_MASK = 0x00780005

RC_NORMAL_READ_COMPLETION = 0x0010
RC_NORMAL_COMPLETION = 0x0020
RC_SCCB_BOUNDARY_VIOLATION = 0x0100
RC_INSUFFICIENT_SCCB_LENGTH = 0x0300
RC_INVALID_SCLP_COMMAND = 0x01F0
RC_ADAPTER_TYPE_NOT_RECOGNIZED = 0x06F0
RC_ADAPTER_ID_NOT_RECOGNIZED = 0x09F0
RC_EVENT_BUFFER_SYNTAX_ERROR = 0x73F0
RC_INVALID_FUNCTION = 0x40F0
RC_NO_EVENT_BUFFERS_STORED = 0x60F0
RC_INCONSISTENT_LENGTHS = 0x72F0
RC_INVALID_MASK_LENGTH = 0x74F0

SCCB_HEADER = 8
EVENT_HEADER = 6
EVENT_ACCEPTED = 0x80
EVENT_ASCII_CONSOLE = 0x1A
EVENT_SIGNAL_QUIESCE = 0x1D
EVENT_CONFIG_MGT_DATA = 0x04
FC_NORMAL_WRITE = 0

IOA_PCI = 2                    # atype of a PCI function in CONFIGURE I/O ADAPTER

# READ SCP INFO constants of QEMU 7.2.22 with -cpu qemu, as it stored them
# (benchmarks/guests/privprobe.c dumps the block): the facilities word
# (CPU info and I/O-adapter reconfiguration), the configuration
# characteristics (bytes 80-98), mha_pow and hmfai.
SCP_FACILITIES = 0x0C00000040000000
SCP_CONF_CHAR = bytes(5) + b"\x02" + bytes(13)
SCP_MHA_POW = 0x2F
SCP_HMFAI = 0x08000000


def event_mask(event_type: int) -> int:
    """QEMU's SCLP_EVENT_MASK: 64-bit masks, type 1 is the top bit."""
    return 1 << (64 - event_type)


@dataclass
class Sclp:
    """The service processor of one machine."""
    console_out: Callable[[bytes], None]
    memory_size: int
    console: bool = True                 # an sclpconsole is attached
    pci_configure: Callable[[int], int] | None = None     # fid -> response code
    pci_deconfigure: Callable[[int], int] | None = None
    pending_param: int | None = None     # service-signal parameter still undelivered
    commands: dict = field(default_factory=dict)   # command word -> count

    @property
    def host_receive_mask(self) -> int:
        return event_mask(EVENT_ASCII_CONSOLE) if self.console else 0

    @property
    def host_send_mask(self) -> int:
        m = event_mask(EVENT_SIGNAL_QUIESCE) | event_mask(EVENT_CONFIG_MGT_DATA)
        return m | (event_mask(EVENT_ASCII_CONSOLE) if self.console else 0)

    def service_call(self, code: int, sccb_addr: int, prefix: int, read, write) -> int | None:
        """SERVC: returns None on success (cc 0) or a program-interruption code.

        ``read(addr, n) -> bytes | None`` and ``write(addr, data) -> bool`` reach
        absolute guest memory.  Checks are QEMU's sclp_service_call, in order.
        """
        code &= 0xFFFFFFFF
        if sccb_addr >= self.memory_size:
            return lc.PGM_ADDRESSING
        if ((sccb_addr & ~0x1FFF) == 0 or (sccb_addr & ~0x1FFF) == prefix
                or (sccb_addr & ~0x7FFFFFF8) != 0):
            return lc.PGM_SPECIFICATION
        head = read(sccb_addr, SCCB_HEADER)
        if head is None:
            return lc.PGM_ADDRESSING
        length = int.from_bytes(head[0:2], "big")
        if length < SCCB_HEADER:
            return lc.PGM_SPECIFICATION
        body = read(sccb_addr, length)
        if body is None:
            return lc.PGM_ADDRESSING
        sccb = bytearray(body)
        self.commands[code] = self.commands.get(code, 0) + 1
        if not self._code_valid(code):
            self._rc(sccb, RC_INVALID_SCLP_COMMAND)
        elif not self._boundary_ok(sccb_addr, length):
            self._rc(sccb, RC_SCCB_BOUNDARY_VIOLATION)
        else:
            self._execute(sccb, code)
        write(sccb_addr, bytes(sccb[:length]))
        # QEMU's sclp service interrupt: parameter = SCCB address (+1 if an
        # event is pending for the guest, never the case here); its FLIC ORs
        # the parameters of service signals that are still pending.
        self.pending_param = (self.pending_param or 0) | (sccb_addr & ~3)
        return None

    # -- QEMU's command checks
    @staticmethod
    def _code_valid(code: int) -> bool:
        return code & SCLP_CMD_CODE_MASK in (
            CMDW_READ_SCP_INFO, CMDW_READ_SCP_INFO_FORCED, CMDW_READ_CPU_INFO,
            CMDW_CONFIGURE_IOA, CMDW_DECONFIGURE_IOA, CMD_READ_EVENT_DATA,
            CMD_WRITE_EVENT_DATA, CMD_WRITE_EVENT_MASK)

    @staticmethod
    def _boundary_ok(addr: int, length: int) -> bool:
        # Only the extended-length SCCB facility lets the info commands cross
        # a page, and QEMU's "qemu" CPU model does not have it (its READ SCP
        # INFO puts the CPU entries at the fixed offset 128).
        return addr + length - 1 < (addr & ~0xFFF) + 0x1000

    @staticmethod
    def _rc(sccb: bytearray, rc: int) -> None:
        sccb[6:8] = rc.to_bytes(2, "big")

    def _execute(self, sccb: bytearray, code: int) -> None:
        cmd = code & SCLP_CMD_CODE_MASK
        if cmd in (CMDW_READ_SCP_INFO, CMDW_READ_SCP_INFO_FORCED):
            self._read_scp_info(sccb)
        elif cmd == CMDW_READ_CPU_INFO:
            self._read_cpu_info(sccb)
        elif cmd in (CMDW_CONFIGURE_IOA, CMDW_DECONFIGURE_IOA):
            self._configure_ioa(sccb, cmd == CMDW_CONFIGURE_IOA)
        elif cmd == CMD_WRITE_EVENT_DATA:
            self._write_event_data(sccb)
        elif cmd == CMD_READ_EVENT_DATA:
            self._rc(sccb, RC_NO_EVENT_BUFFERS_STORED)
        elif cmd == CMD_WRITE_EVENT_MASK:
            self._write_event_mask(sccb)

    # -- event facility (hw/s390x/event-facility.c)
    def _write_event_data(self, sccb: bytearray) -> None:
        if sccb[2] != FC_NORMAL_WRITE:
            self._rc(sccb, RC_INVALID_FUNCTION)
            return
        length = int.from_bytes(sccb[0:2], "big")
        # length check of every buffer before any is handled
        off, left = SCCB_HEADER, length - SCCB_HEADER
        while left > 0:
            elen = int.from_bytes(sccb[off:off + 2], "big") if off + 2 <= len(sccb) else 0
            if elen < EVENT_HEADER or elen > left:
                self._rc(sccb, RC_EVENT_BUFFER_SYNTAX_ERROR)
                return
            off += elen
            left -= elen
        rc = RC_NORMAL_COMPLETION
        off, left = SCCB_HEADER, length - SCCB_HEADER
        while left > 0:
            elen = int.from_bytes(sccb[off:off + 2], "big")
            if rc != RC_NORMAL_COMPLETION:
                sccb[off + 3] &= ~EVENT_ACCEPTED & 0xFF
            else:
                rc = self._write_event_buf(sccb, off, elen)
            off += elen
            left -= elen
        self._rc(sccb, rc)

    def _write_event_buf(self, sccb: bytearray, off: int, elen: int) -> int:
        etype = sccb[off + 2]
        if etype == EVENT_ASCII_CONSOLE and self.console:
            self.console_out(bytes(sccb[off + EVENT_HEADER:off + elen]))
            sccb[off + 3] |= EVENT_ACCEPTED
            return RC_NORMAL_COMPLETION
        return RC_INVALID_FUNCTION

    def _write_event_mask(self, sccb: bytearray) -> None:
        mlen = int.from_bytes(sccb[10:12], "big")
        if mlen != 4 and mlen != 8 or len(sccb) < 12 + 4 * mlen:
            self._rc(sccb, RC_INVALID_MASK_LENGTH)
            return
        base = 12

        def put(i: int, value: int) -> None:
            sccb[base + i * mlen:base + (i + 1) * mlen] = value.to_bytes(8, "big")[:mlen]

        # masks: cp receive, cp send, sclp receive, sclp send; the guest's
        # own (cp) masks matter only for events sent to it, and none ever is
        put(2, self.host_receive_mask)
        put(3, self.host_send_mask)
        self._rc(sccb, RC_NORMAL_COMPLETION)

    # -- configuration information
    def _read_scp_info(self, sccb: bytearray) -> None:
        """ReadInfo with the values QEMU 7.2.22 stores for -cpu qemu (one CPU).

        The constant fields were read back from QEMU by
        benchmarks/guests/privprobe.c; storage fields follow the memory size.
        """
        offset_cpu = 128            # SCLP_READ_SCP_INFO_FIXED_CPU_OFFSET (no ELS)
        if len(sccb) < offset_cpu + 16:
            self._rc(sccb, RC_INSUFFICIENT_SCCB_LENGTH)
            return
        increment = 20
        rnmax = self.memory_size >> increment
        if rnmax < 0x10000:
            sccb[8:10] = rnmax.to_bytes(2, "big")
        else:
            sccb[8:10] = b"\0\0"
            sccb[104:112] = rnmax.to_bytes(8, "big")
        sccb[10] = 1 << (increment - 20)
        sccb[16:18] = (1).to_bytes(2, "big")          # entries_cpu
        sccb[18:20] = offset_cpu.to_bytes(2, "big")
        sccb[24:32] = b"\x40" * 8                     # loadparm: EBCDIC blanks
        sccb[48:56] = SCP_FACILITIES.to_bytes(8, "big")
        sccb[80:99] = SCP_CONF_CHAR
        sccb[99] = SCP_MHA_POW
        sccb[120:122] = (0).to_bytes(2, "big")        # highest_cpu: max_cpus - 1
        sccb[124:128] = SCP_HMFAI.to_bytes(4, "big")
        sccb[offset_cpu:offset_cpu + 16] = bytes(16)  # CPU 0, type CP, no features
        self._rc(sccb, RC_NORMAL_READ_COMPLETION)

    def _read_cpu_info(self, sccb: bytearray) -> None:
        offset = 24                                   # offsetof(ReadCpuInfo, entries)
        if len(sccb) < offset + 16:
            self._rc(sccb, RC_INSUFFICIENT_SCCB_LENGTH)
            return
        sccb[8:10] = (1).to_bytes(2, "big")           # nr_configured
        sccb[10:12] = offset.to_bytes(2, "big")       # offset_configured
        sccb[12:14] = (0).to_bytes(2, "big")          # nr_standby
        # offset_standby as QEMU 7.2 computes it: from the already big-endian
        # offset and count, on a little-endian host (measured: bytes 28 00)
        swap = lambda v: int.from_bytes(v.to_bytes(2, "big"), "little")  # noqa: E731
        sccb[14:16] = ((swap(offset) + swap(1) * 16) & 0xFFFF).to_bytes(2, "big")
        sccb[offset:offset + 16] = bytes(16)
        self._rc(sccb, RC_NORMAL_READ_COMPLETION)

    def _configure_ioa(self, sccb: bytearray, configure: bool) -> None:
        # ConfigurationInformation: atype u8 @8, aid u32 @12 (the fid)
        if len(sccb) < 16:
            self._rc(sccb, RC_INSUFFICIENT_SCCB_LENGTH)
            return
        atype = sccb[8]
        if atype != IOA_PCI:
            self._rc(sccb, RC_ADAPTER_TYPE_NOT_RECOGNIZED)
            return
        fid = int.from_bytes(sccb[12:16], "big")
        fn = self.pci_configure if configure else self.pci_deconfigure
        self._rc(sccb, fn(fid) if fn else RC_ADAPTER_ID_NOT_RECOGNIZED)
