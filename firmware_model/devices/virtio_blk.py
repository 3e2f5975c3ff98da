"""virtio-blk-pci as QEMU 7.2 presents it (hw/block/virtio-blk.c, virtio-blk-pci.c).

PCI: ids 1af4:1001 (transitional) / 1af4:1042 (modern only), class 0x0100
(PCI_CLASS_STORAGE_SCSI), no option ROM, ioeventfd on.  ``num-queues``
defaults to one queue per vCPU (one here) and ``vectors`` to num-queues + 1.

Device configuration (struct virtio_blk_config) is 36 bytes, extended to the
end of the discard fields (48) and of the write-zeroes fields (57) when those
features are offered (virtio_get_config_size); geometry is guessed from the
image as hd_geometry_guess does (an MBR partition that ends on a cylinder
boundary, else 16 heads x 63 sectors).

Requests are handled when the queue is kicked, synchronously and in ring
order: QEMU completes them from its AIO callbacks, which a guest that waits
for the used ring cannot tell apart.  The status byte is the last byte of the
last device-writable buffer and the used length is every device-writable
byte, status included (virtio_blk_req_complete pushes req->in_len).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from .sparse import SparseBytes
from .virtio import F_ANY_LAYOUT, S_DRIVER_OK, TransportOptions, VirtioPciDevice

# feature bits (include/standard-headers/linux/virtio_blk.h)
BLK_F_SIZE_MAX, BLK_F_SEG_MAX, BLK_F_GEOMETRY, BLK_F_RO = 1, 2, 4, 5
BLK_F_BLK_SIZE, BLK_F_SCSI, BLK_F_WCE, BLK_F_TOPOLOGY = 6, 7, 9, 10
BLK_F_CONFIG_WCE, BLK_F_MQ, BLK_F_DISCARD, BLK_F_WRITE_ZEROES = 11, 12, 13, 14

# request types and status values
T_IN, T_OUT, T_SCSI_CMD, T_FLUSH, T_GET_ID = 0, 1, 2, 4, 8
T_DISCARD, T_WRITE_ZEROES = 11, 13
T_BARRIER = 0x80000000
S_OK, S_IOERR, S_UNSUPP = 0, 1, 2
WRITE_ZEROES_FLAG_UNMAP = 1

SECTOR = 512                     # BDRV_SECTOR_SIZE: capacity and sector numbers count these
ID_BYTES = 20                    # VIRTIO_BLK_ID_BYTES
REQUEST_MAX_SECTORS = 0x7FFFFFFF >> 9     # BDRV_REQUEST_MAX_SECTORS
OUTHDR_LEN = 16                  # type, ioprio, sector
DWZ_LEN = 16                     # struct virtio_blk_discard_write_zeroes

# virtio_get_config_size: the minimum and the end of each optional group
CONFIG_MIN = 36
CONFIG_DISCARD_END = 48
CONFIG_WRITE_ZEROES_END = 57

_CHUNK = 1 << 20                 # image bytes moved per DMA piece for long transfers


class BlockImage:
    """A raw image: the BlockBackend behind a drive.

    ``path`` reads and writes a file in place, as QEMU's raw driver does.
    In memory (tests, a replay's blank drive, snapshot=on) the image is
    ``sparse.SparseBytes``: a written page costs memory, the rest reads
    from the data given, the file (snapshot) or zeros (blank), so a drive
    of any size costs what the guest writes to it.  ``write_cache`` is
    blk_enable_write_cache: the cache mode of the drive, changed by the
    guest through the wce byte or feature negotiation.
    """

    def __init__(self, data: bytes | bytearray | SparseBytes | None = None, *,
                 path: str | None = None, readonly: bool = False, write_cache: bool = True):
        if (data is None) == (path is None):
            raise ValueError("a BlockImage is either in memory or a file")
        self.path = path
        self.readonly = readonly
        self.write_cache = write_cache
        self.flushes = 0
        self._fd = None
        if path is not None:
            self._fd = os.open(path, os.O_RDONLY if readonly else os.O_RDWR)
            self.size = os.fstat(self._fd).st_size
            self.mem = None
        else:
            if not isinstance(data, SparseBytes):
                data = bytes(data)
                data = SparseBytes(len(data), base=lambda off, n, src=data: src[off:off + n])
            self.mem = data
            self.size = len(data)

    @classmethod
    def blank(cls, size: int, readonly: bool = False) -> "BlockImage":
        return cls(SparseBytes(size), readonly=readonly)

    @classmethod
    def snapshot(cls, path: str, readonly: bool = False, write_cache: bool = True) -> "BlockImage":
        """snapshot=on: reads see the file, writes stay in memory."""
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        image = cls(SparseBytes(size, base=lambda off, n: os.pread(fd, n, off)),
                    readonly=readonly, write_cache=write_cache)
        image._fd = fd                    # the file under the snapshot, closed with the image
        return image

    def read(self, offset: int, length: int) -> bytes:
        if self.mem is not None:
            return self.mem.read(offset, length)
        return os.pread(self._fd, length, offset).ljust(length, b"\0")

    def write(self, offset: int, data: bytes) -> bool:
        """False: the backend refused (a read-only drive), as bdrv_co_pwritev's -EPERM."""
        if self.readonly:
            return False
        if self.mem is not None:
            self.mem.write(offset, data)
        else:
            os.pwrite(self._fd, data, offset)
        return True

    def flush(self) -> bool:
        self.flushes += 1
        if self.mem is None and not self.readonly:
            os.fsync(self._fd)
        return True

    def close(self) -> None:
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):
        # boot builds each device twice (once to name a bad -device): no fd may leak
        self.close()


@dataclass(frozen=True)
class BlkConf:
    """The realized virtio-blk properties (already validated)."""
    num_queues: int = 1
    queue_size: int = 256
    serial: str = ""
    logical_block_size: int = 512
    physical_block_size: int = 512
    min_io_size: int = 0
    opt_io_size: int = 0
    discard_granularity: int = -1
    cyls: int = 0                   # 0, 0, 0: guessed from the image
    heads: int = 0
    secs: int = 0
    seg_max_adjust: bool = True
    config_wce: bool = True
    discard: bool = True
    write_zeroes: bool = True
    report_discard_granularity: bool = True
    max_discard_sectors: int = REQUEST_MAX_SECTORS
    max_write_zeroes_sectors: int = REQUEST_MAX_SECTORS
    enable_wce_if_config_wce: bool = True
    write_cache: str = "auto"       # the device's write-cache property: auto, on, off


def guess_geometry(image: BlockImage) -> tuple[int, int, int]:
    """hd_geometry_guess for a plain image: the MBR's logical geometry, else 16/63."""
    nb_sectors = image.size // SECTOR
    lchs = _mbr_geometry(image, nb_sectors)
    if lchs is not None and lchs[1] <= 16:
        return lchs
    cyls = min(max(nb_sectors // (16 * 63), 2), 16383)
    return cyls, 16, 63


def _mbr_geometry(image: BlockImage, nb_sectors: int) -> tuple[int, int, int] | None:
    """guess_disk_lchs: the first partition entry whose end gives a usable geometry."""
    if image.size < SECTOR:
        return None
    mbr = image.read(0, SECTOR)
    if mbr[510] != 0x55 or mbr[511] != 0xAA:
        return None
    for i in range(4):
        entry = mbr[0x1BE + 16 * i:0x1BE + 16 * (i + 1)]
        nr_sects = int.from_bytes(entry[12:16], "little")
        end_head, end_sector = entry[5], entry[6]
        if nr_sects and end_head:
            heads = end_head + 1
            sectors = end_sector & 63
            if sectors == 0:
                continue
            cyls = nb_sectors // (heads * sectors)
            if cyls < 1 or cyls > 16383:
                continue
            return cyls, heads, sectors
    return None


def _physical_block_exp(conf: BlkConf) -> int:
    exp, size = 0, conf.physical_block_size
    while size > conf.logical_block_size:
        size >>= 1
        exp += 1
    return exp


class VirtioBlkPci(VirtioPciDevice):
    kind = "virtio-blk-pci"
    virtio_id = 2
    legacy_device_id = 0x1001
    class_code = 0x0100            # PCI_CLASS_STORAGE_SCSI

    def __init__(self, options: TransportOptions, image: BlockImage, conf: BlkConf = BlkConf()):
        self.image = image
        self.conf = conf
        if conf.write_cache != "auto":
            image.write_cache = conf.write_cache == "on"
        self.original_wce = image.write_cache
        if conf.cyls or conf.heads or conf.secs:
            self.geometry = (conf.cyls, conf.heads, conf.secs)
        else:
            self.geometry = guess_geometry(image)
        self.sector_mask = conf.logical_block_size // SECTOR - 1
        features = (1 << BLK_F_SEG_MAX | 1 << BLK_F_GEOMETRY | 1 << BLK_F_TOPOLOGY
                    | 1 << BLK_F_BLK_SIZE
                    | (1 << BLK_F_CONFIG_WCE) * conf.config_wce
                    | (1 << BLK_F_DISCARD) * conf.discard
                    | (1 << BLK_F_WRITE_ZEROES) * conf.write_zeroes)
        if not options.modern:
            features |= 1 << BLK_F_SCSI
        if image.write_cache or (conf.enable_wce_if_config_wce and conf.config_wce):
            features |= 1 << BLK_F_WCE
        if image.readonly:
            features |= 1 << BLK_F_RO
        if conf.num_queues > 1:
            features |= 1 << BLK_F_MQ
        self.config_len = (CONFIG_WRITE_ZEROES_END if conf.write_zeroes
                           else CONFIG_DISCARD_END if conf.discard else CONFIG_MIN)
        super().__init__(options, features, [conf.queue_size] * conf.num_queues)
        if not options.modern:
            # virtio_blk_get_features withdraws ANY_LAYOUT from a legacy-only device
            self.host_features &= ~(1 << F_ANY_LAYOUT)

    def _queue_handlers(self):
        return [self._handle_vq] * self.conf.num_queues

    # -- configuration ----------------------------------------------------------
    def get_config(self) -> bytes:
        """virtio_blk_update_config, in the device's current byte order."""
        c, o = self.conf, self._order()
        bs = c.logical_block_size
        cyls, heads, secs = self.geometry
        length = self.image.size
        if length > 0 and heads and secs and length // heads // secs % bs:
            secs &= ~self.sector_mask
        cfg = bytearray(CONFIG_WRITE_ZEROES_END + 3)
        cfg[0:8] = (length // SECTOR).to_bytes(8, o)
        seg_max = c.queue_size - 2 if c.seg_max_adjust else 128 - 2
        cfg[12:16] = seg_max.to_bytes(4, o)
        cfg[16:18] = cyls.to_bytes(2, o)
        cfg[18] = heads & 0xFF
        cfg[19] = secs & 0xFF
        cfg[20:24] = bs.to_bytes(4, o)
        cfg[24] = _physical_block_exp(c)
        cfg[26:28] = (c.min_io_size // bs).to_bytes(2, o)
        cfg[28:32] = (c.opt_io_size // bs).to_bytes(4, o)
        cfg[32] = int(self.image.write_cache)
        cfg[34:36] = c.num_queues.to_bytes(2, o)
        if c.discard:
            gran = c.discard_granularity
            if gran == -1 or not c.report_discard_granularity:
                gran = bs
            cfg[36:40] = c.max_discard_sectors.to_bytes(4, o)
            cfg[40:44] = (1).to_bytes(4, o)
            cfg[44:48] = (gran // SECTOR).to_bytes(4, o)
        if c.write_zeroes:
            cfg[48:52] = c.max_write_zeroes_sectors.to_bytes(4, o)
            cfg[52:56] = (1).to_bytes(4, o)
            cfg[56] = 1
        return bytes(cfg[:self.config_len])

    def set_config(self, data: bytes) -> None:
        # virtio_blk_set_config: only the wce byte has an effect
        if len(data) > 32:
            self.image.write_cache = data[32] != 0

    def set_status_hook(self, status: int) -> None:
        # without CONFIG_WCE the negotiated WCE bit decides the cache mode at DRIVER_OK
        if status & S_DRIVER_OK and not self.has_feature(BLK_F_CONFIG_WCE):
            self.image.write_cache = self.has_feature(BLK_F_WCE)

    def device_reset(self) -> None:
        self.image.write_cache = self.original_wce

    # -- requests -----------------------------------------------------------------
    def _handle_vq(self, vq) -> None:
        """virtio_blk_handle_vq: pop until empty, notifications off meanwhile."""
        while True:
            self.set_notification(vq, False)
            while True:
                elem = self.pop(vq)
                if elem is None:
                    break
                if not self._request(vq, elem):
                    self.detach(vq, elem)
                    break
            self.set_notification(vq, True)
            if self.queue_empty(vq):
                return

    def _field(self, data: bytes, off: int, n: int) -> int:
        return int.from_bytes(data[off:off + n], self._order())

    def _request(self, vq, elem) -> bool:
        """virtio_blk_handle_request; False after a virtio_error."""
        if not elem.out_sg or not elem.in_sg:
            self.virtio_error("virtio-blk missing headers")
            return False
        out = self.read_out(elem)
        if len(out) < OUTHDR_LEN:
            self.virtio_error("virtio-blk request outhdr too short")
            return False
        in_len = elem.in_size()
        status_addr = elem.in_sg[-1].addr + elem.in_sg[-1].len - 1
        data_in = in_len - 1
        rtype = self._field(out, 0, 4)
        sector = self._field(out, 8, 8)
        payload = out[OUTHDR_LEN:]
        masked = rtype & ~(T_OUT | T_BARRIER)
        if masked == T_IN:
            if rtype & T_OUT:
                status = self._write(sector, payload)
            else:
                status = self._read(elem, sector, data_in)
        elif masked == T_SCSI_CMD:
            status = self._scsi(elem)
        elif masked == T_FLUSH:
            status = S_OK if self.image.flush() else S_IOERR
        elif masked == T_GET_ID:
            serial = self.conf.serial.encode()
            n = min(len(serial) + 1, data_in, ID_BYTES)
            self.write_in(elem, _feeder(serial + b"\0"), n)
            status = S_OK
        elif masked in (T_DISCARD & ~T_OUT, T_WRITE_ZEROES & ~T_OUT):
            if not rtype & T_OUT or len(payload) > DWZ_LEN:
                status = S_UNSUPP
            elif len(payload) < DWZ_LEN:
                self.virtio_error("virtio-blk discard/write_zeroes header too short")
                return False
            else:
                status = self._discard_write_zeroes(payload, rtype & ~T_BARRIER == T_WRITE_ZEROES)
        else:
            status = S_UNSUPP
        self.dma_write(status_addr, bytes([status]))
        self.push(vq, elem, in_len)
        self.notify(vq)
        return True

    def _scsi(self, elem) -> int:
        """virtio_blk_handle_scsi_req: SCSI passthrough is gone, the request fails.

        With the buffers a SCSI command needs (command block after the header;
        sense, scsi inhdr and status on the device-writable side) the scsi
        inhdr's errors field gets 255 and the status is UNSUPP, else IOERR.
        """
        if len(elem.out_sg) < 2 or len(elem.in_sg) < 3:
            return S_IOERR
        self.dma_write(elem.in_sg[-2].addr, (255).to_bytes(4, self._order()))
        return S_UNSUPP

    def _range_ok(self, sector: int, size: int) -> bool:
        """virtio_blk_sect_range_ok."""
        nb = size // SECTOR
        if nb > REQUEST_MAX_SECTORS or sector & self.sector_mask:
            return False
        if size % self.conf.logical_block_size:
            return False
        total = self.image.size // SECTOR
        return sector <= total and nb <= total - sector

    def _read(self, elem, sector: int, size: int) -> int:
        if not self._range_ok(sector, size):
            return S_IOERR
        base = sector * SECTOR
        pos = [0]

        def source(n: int) -> bytes:
            data = self.image.read(base + pos[0], n)
            pos[0] += n
            return data
        self.write_in(elem, source, size)
        return S_OK

    def _write(self, sector: int, payload: bytes) -> int:
        if not self._range_ok(sector, len(payload)):
            return S_IOERR
        # a read-only drive fails the write (-EPERM); werror=enospc reports it
        return S_OK if self.image.write(sector * SECTOR, payload) else S_IOERR

    def _discard_write_zeroes(self, hdr: bytes, write_zeroes: bool) -> int:
        c = self.conf
        sector = self._field(hdr, 0, 8)
        num = self._field(hdr, 8, 4)
        flags = self._field(hdr, 12, 4)
        limit = c.max_write_zeroes_sectors if write_zeroes else c.max_discard_sectors
        if num > limit:
            return S_IOERR
        nbytes = num * SECTOR
        if not self._range_ok(sector, nbytes):
            return S_IOERR
        if flags & ~WRITE_ZEROES_FLAG_UNMAP:
            return S_UNSUPP
        if write_zeroes:
            for off in range(0, nbytes, _CHUNK):
                if not self.image.write(sector * SECTOR + off, bytes(min(_CHUNK, nbytes - off))):
                    return S_IOERR
            return S_OK
        if flags & WRITE_ZEROES_FLAG_UNMAP:
            return S_UNSUPP
        # -drive discard=ignore (QEMU's default): the backend drops the discard
        return S_OK


def _feeder(data: bytes):
    pos = [0]

    def source(n: int) -> bytes:
        chunk = data[pos[0]:pos[0] + n]
        pos[0] += n
        return chunk.ljust(n, b"\0")
    return source
