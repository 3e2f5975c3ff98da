"""Architected virtio 1.x constants (include/standard-headers/linux/virtio_*.h,
hw/virtio/virtio-pci.h): ids, status and feature bits, ring flags, the
vendor capabilities and the legacy and modern register offsets.
"""
from __future__ import annotations

VIRTIO_VENDOR = 0x1AF4
LEGACY_DEVICE_BASE = 0x1000      # transitional ids: 0x1000 + (type-specific)
MODERN_DEVICE_BASE = 0x1040      # modern-only id: 0x1040 + virtio device id
PCI_SUBDEVICE_ID_QEMU = 0x1100

S_ACKNOWLEDGE, S_DRIVER, S_DRIVER_OK = 1, 2, 4
S_FEATURES_OK, S_NEEDS_RESET = 8, 0x40

F_NOTIFY_ON_EMPTY = 24
F_ANY_LAYOUT = 27
F_RING_INDIRECT_DESC = 28
F_RING_EVENT_IDX = 29
F_BAD_FEATURE = 30
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33
F_RING_RESET = 40

DESC_F_NEXT, DESC_F_WRITE, DESC_F_INDIRECT = 1, 2, 4
AVAIL_F_NO_INTERRUPT = 1
USED_F_NO_NOTIFY = 1

QUEUE_MAX = 1024                 # VIRTIO_QUEUE_MAX
QUEUE_MAX_SIZE = 1024            # VIRTQUEUE_MAX_SIZE
NO_VECTOR = 0xFFFF

# cfg_type of the vendor capabilities
CAP_COMMON, CAP_NOTIFY, CAP_ISR, CAP_DEVICE, CAP_PCI_CFG = 1, 2, 3, 4, 5
CAP_LEN = 16
NOTIFY_CAP_LEN = 20
PCI_CFG_CAP_LEN = 20

# legacy I/O registers
L_HOST_FEATURES, L_GUEST_FEATURES, L_QUEUE_PFN = 0, 4, 8
L_QUEUE_NUM, L_QUEUE_SEL, L_QUEUE_NOTIFY = 12, 14, 16
L_STATUS, L_ISR, L_CONFIG_VECTOR, L_QUEUE_VECTOR = 18, 19, 20, 22
L_QUEUE_ADDR_SHIFT = 12
L_VRING_ALIGN = 4096

# modern common configuration
C_DFSELECT, C_DF, C_GFSELECT, C_GF = 0x00, 0x04, 0x08, 0x0C
C_MSIX, C_NUMQ, C_STATUS, C_CFGGENERATION = 0x10, 0x12, 0x14, 0x15
C_Q_SELECT, C_Q_SIZE, C_Q_MSIX, C_Q_ENABLE, C_Q_NOFF = 0x16, 0x18, 0x1A, 0x1C, 0x1E
C_Q_DESCLO, C_Q_DESCHI, C_Q_AVAILLO, C_Q_AVAILHI = 0x20, 0x24, 0x28, 0x2C
C_Q_USEDLO, C_Q_USEDHI, C_Q_RESET = 0x30, 0x34, 0x3A
