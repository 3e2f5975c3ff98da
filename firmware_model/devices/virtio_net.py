"""virtio-net-pci as QEMU 7.2 presents it without a peer (hw/net/virtio-net.c).

Queues: receiveq0, transmitq0 and the control queue (present even with
ctrl_vq=off, which only withdraws the feature bit).
Device configuration: MAC and status (plus max_virtqueue_pairs and MTU when
host_mtu is given), stored in the device's byte order like virtio_stw_p.
Without a peer QEMU strips every offload feature and drops each transmitted
frame: the TX path consumes the buffers and returns them with length 0; the
frames stay in ``tx_frames`` (nothing leaves the process).  The receive path
stays idle, as with a peer that never sends.
"""
from __future__ import annotations

from collections import deque

from .virtio import (
    F_VERSION_1, S_DRIVER_OK, TransportOptions, VirtioPciDevice,
)

# feature bits (include/standard-headers/linux/virtio_net.h)
NET_F_CSUM, NET_F_GUEST_CSUM, NET_F_CTRL_GUEST_OFFLOADS, NET_F_MTU = 0, 1, 2, 3
NET_F_MAC, NET_F_GSO = 5, 6
NET_F_MRG_RXBUF, NET_F_STATUS, NET_F_CTRL_VQ, NET_F_CTRL_RX = 15, 16, 17, 18
NET_F_CTRL_VLAN, NET_F_CTRL_RX_EXTRA, NET_F_GUEST_ANNOUNCE = 19, 20, 21
NET_F_CTRL_MAC_ADDR = 23
NET_S_LINK_UP = 1

# (property, feature bit) QEMU sets by default and keeps without a peer
FEATURE_PROPS = (
    ("gso", NET_F_GSO), ("mrg_rxbuf", NET_F_MRG_RXBUF), ("status", NET_F_STATUS),
    ("ctrl_vq", NET_F_CTRL_VQ), ("ctrl_rx", NET_F_CTRL_RX), ("ctrl_vlan", NET_F_CTRL_VLAN),
    ("ctrl_rx_extra", NET_F_CTRL_RX_EXTRA), ("ctrl_mac_addr", NET_F_CTRL_MAC_ADDR),
    ("ctrl_guest_offloads", NET_F_CTRL_GUEST_OFFLOADS),
    ("guest_announce", NET_F_GUEST_ANNOUNCE),
)

CTRL_OK, CTRL_ERR = 0, 1
CTRL_RX, CTRL_MAC, CTRL_VLAN, CTRL_ANNOUNCE = 0, 1, 2, 3
CTRL_MAC_ADDR_SET, CTRL_ANNOUNCE_ACK = 1, 0
TX_BURST = 256
TX_QUEUE_DEFAULT_SIZE = 256
NET_BUFSIZE = 4096 + 65536
TX_FRAMES_KEPT = 64


class VirtioNetPci(VirtioPciDevice):
    kind = "virtio-net-pci"
    virtio_id = 1
    legacy_device_id = 0x1000
    class_code = 0x0200            # PCI_CLASS_NETWORK_ETHERNET
    device_legacy_features = 1 << NET_F_GSO

    def __init__(self, options: TransportOptions, mac: bytes, features: int,
                 rx_queue_size: int = 256, tx_queue_size: int = 256,
                 host_mtu: int | None = None, tx_burst: int = TX_BURST):
        self.conf_mac = bytes(mac)
        self.mac = bytes(mac)
        self.link_status = NET_S_LINK_UP
        self.host_mtu = host_mtu
        self.tx_burst = tx_burst
        if host_mtu is not None:
            features |= 1 << NET_F_MTU
        features |= 1 << NET_F_MAC
        # virtio_net_set_config_size: up to the last field an offered feature needs
        self.config_len = 12 if host_mtu is not None else 8 if features >> NET_F_STATUS & 1 else 6
        self.tx_waiting = False
        self.tx_frames: deque[bytes] = deque(maxlen=TX_FRAMES_KEPT)
        self.guest_hdr_len = 10
        # without a (vhost-user) peer the TX queue stays at its default size; the
        # control queue exists whether or not VIRTIO_NET_F_CTRL_VQ is offered
        sizes = [rx_queue_size, min(tx_queue_size, TX_QUEUE_DEFAULT_SIZE), 64]
        super().__init__(options, features, sizes)

    def _queue_handlers(self):
        return [self._handle_rx, self._handle_tx, self._handle_ctrl]

    # -- configuration ----------------------------------------------------------
    def get_config(self) -> bytes:
        order = self._order()
        cfg = self.mac + self.link_status.to_bytes(2, order)
        if self.host_mtu is not None:
            cfg += (1).to_bytes(2, order) + self.host_mtu.to_bytes(2, order)
        return cfg[:self.config_len]

    def set_config(self, data: bytes) -> None:
        # only a legacy driver without CTRL_MAC_ADDR may change the MAC this way
        if (not self.has_feature(NET_F_CTRL_MAC_ADDR) and not self.has_feature(F_VERSION_1)
                and data[:6] != self.mac):
            self.mac = bytes(data[:6])

    def set_features_hook(self, features: int) -> None:
        mrg = features >> NET_F_MRG_RXBUF & 1
        self.guest_hdr_len = 12 if mrg or features >> F_VERSION_1 & 1 else 10

    def device_reset(self) -> None:
        self.mac = self.conf_mac
        self.tx_waiting = False

    def bad_features(self) -> int:
        return 1 << NET_F_MAC

    def set_status_hook(self, status: int) -> None:
        # virtio_net_set_status: a waiting transmit runs once the queue is started
        if self.tx_waiting and status & S_DRIVER_OK and self.link_status & NET_S_LINK_UP:
            self._tx_bh()

    # -- queues -------------------------------------------------------------------
    def _handle_rx(self, vq) -> None:
        pass                       # qemu_flush_queued_packets: no peer, nothing queued

    def _handle_tx(self, vq) -> None:
        """virtio_net_handle_tx_bh, with the bottom half run at once."""
        if not self.link_status & NET_S_LINK_UP:
            return
        if self.tx_waiting:
            return
        self.tx_waiting = True
        self.set_notification(vq, False)
        self._tx_bh()

    def _tx_bh(self) -> None:
        vq = self.vqs[1]
        while True:
            self.tx_waiting = False
            if not self.status & S_DRIVER_OK:
                # QEMU keeps the kick: DRIVER_OK arms the host notifiers and the
                # queue is kicked again (see VirtioPciDevice._start_ioeventfd)
                return
            ret = self._flush_tx(vq)
            if ret < 0:
                return
            if ret >= self.tx_burst:
                self.tx_waiting = True
                continue
            self.set_notification(vq, True)
            ret = self._flush_tx(vq)
            if ret <= 0:
                return
            self.set_notification(vq, False)
            self.tx_waiting = True

    def _flush_tx(self, vq) -> int:
        """virtio_net_flush_tx: every frame is dropped for want of a peer."""
        if not self.status & S_DRIVER_OK:
            return 0
        sent = 0
        while True:
            elem = self.pop(vq)
            if elem is None:
                break
            if not elem.out_sg:
                self.virtio_error("virtio-net header not in first element")
                self.detach(vq, elem)
                return -1
            total = elem.out_size()
            if total < self.guest_hdr_len:
                # QEMU 7.2 asserts in iov_copy here (host header length 0 without
                # a peer) and the process aborts; the model reports a device error
                self.virtio_error("virtio-net header incorrect")
                self.detach(vq, elem)
                return -1
            # qemu_sendv_packet_async drops a packet above NET_BUFSIZE unread
            if total - self.guest_hdr_len <= NET_BUFSIZE:
                self.tx_frames.append(self.read_out(elem)[self.guest_hdr_len:])
            self.push(vq, elem, 0)
            self.notify(vq)
            sent += 1
            if sent >= self.tx_burst:
                break
        return sent

    def _handle_ctrl(self, vq) -> None:
        """virtio_net_handle_ctrl, for the commands a driver without MQ/offloads uses."""
        while True:
            elem = self.pop(vq)
            if elem is None:
                return
            if elem.in_size() < 1 or elem.out_size() < 2:
                self.virtio_error("virtio-net ctrl missing headers")
                self.detach(vq, elem)
                return
            out = self.read_out(elem)
            cls, cmd, data = out[0], out[1], out[2:]
            status = CTRL_ERR
            if cls == CTRL_RX and cmd <= 5 and len(data) >= 1:
                status = CTRL_OK
            elif cls == CTRL_MAC and cmd == CTRL_MAC_ADDR_SET and len(data) == 6:
                self.mac = bytes(data)
                status = CTRL_OK
            elif cls == CTRL_VLAN and cmd in (0, 1) and len(data) >= 2:
                status = CTRL_OK if int.from_bytes(data[:2], self._order()) < 4096 else CTRL_ERR
            elif cls == CTRL_ANNOUNCE and cmd == CTRL_ANNOUNCE_ACK:
                status = CTRL_OK
            n = self.write_in(elem, lambda k: bytes([status])[:k], 1)
            self.push(vq, elem, n)
            self.notify(vq)
