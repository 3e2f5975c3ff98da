"""Device models behind zPCI functions and their registry.

``make_device(kind, props)`` builds a model from a ``-device`` string's name
and properties (a dict or a tuple of (name, value) strings), with QEMU 7.2's
defaults and its rules for combining them.  ``DEVICE_KINDS`` lists every
supported device with its properties and defaults.  Bad input raises
``DeviceConfigError`` with one line naming the bad device or property and
what is supported.
"""
from __future__ import annotations

from ..device import PciDevice
from .props import (
    DeviceConfigError, DeviceKind, PropSpec, as_bool, as_int, as_mac, bad_prop, flag,
    on_off_auto, prop, props_dict,
)


_VIRTIO_PCI_PROPS = (
    PropSpec("id", "", "device id (the zpci device's target)"),
    PropSpec("disable-legacy", "auto", "on: modern-only device (own device id, no legacy BAR0); "
             "auto is off on the zPCI bus"),
    PropSpec("disable-modern", "off", "on: legacy-only device (no BAR4, no virtio capabilities)"),
    PropSpec("iommu_platform", "off", "on: offer and require VIRTIO_F_ACCESS_PLATFORM; "
             "DMA goes through the zPCI translation"),
    PropSpec("page-per-vq", "off", "on: 4 KiB of notify region per queue"),
    PropSpec("queue_reset", "on", "offer VIRTIO_F_RING_RESET"),
    PropSpec("event_idx", "on", "offer VIRTIO_RING_F_EVENT_IDX"),
    PropSpec("indirect_desc", "on", "offer VIRTIO_RING_F_INDIRECT_DESC"),
    PropSpec("notify_on_empty", "on", "offer VIRTIO_F_NOTIFY_ON_EMPTY (legacy)"),
    PropSpec("any_layout", "on", "offer VIRTIO_F_ANY_LAYOUT (legacy)"),
    PropSpec("rombar", "1", "0: no ROM BAR"),
)

# virtio-net offload properties: checked, without effect (no vnet-header peer)
_NET_OFFLOADS = ("csum", "guest_csum", "guest_tso4", "guest_tso6", "guest_ecn",
                 "guest_ufo", "host_tso4", "host_tso6", "host_ecn", "host_ufo")

DEVICE_KINDS: dict[str, DeviceKind] = {
    "virtio-rng-pci": DeviceKind(
        "virtio-rng-pci", "virtio entropy device (builtin backend, seeded PRNG)",
        _VIRTIO_PCI_PROPS + (
            PropSpec("vectors", "2", "MSI-X vectors, 1..2048"),
            PropSpec("romfile", "", "option ROM file"),
            PropSpec("max-bytes", str((1 << 63) - 1), "bytes the guest may take per period"),
            PropSpec("period", "65536", "rate-limit period in ms (checked; no clock here, "
                                        "so the max-bytes quota never refills)"),
            PropSpec("rng", "", "id of the entropy backend (context['rng_backends']; "
                                "default: a PRNG seeded per device)"),
        )),
    "virtio-net-pci": DeviceKind(
        "virtio-net-pci", "virtio network device without a peer (TX dropped, RX idle)",
        _VIRTIO_PCI_PROPS + (
            PropSpec("vectors", "4", "MSI-X vectors, 1..2048"),
            PropSpec("romfile", "efi-virtio.rom", "option ROM file ('' for none)"),
            PropSpec("ioeventfd", "on", "host notifiers: DRIVER_OK kicks every queue"),
            PropSpec("mac", "52:54:00:12:34:56", "MAC address (default: QEMU's, +1 per NIC)"),
            PropSpec("rx_queue_size", "256", "power of 2, 256..1024"),
            PropSpec("tx_queue_size", "256", "power of 2, 256..1024"),
            PropSpec("host_mtu", "0", "MTU offered with VIRTIO_NET_F_MTU (0: none)"),
            PropSpec("x-txburst", "256", "frames per transmit pass"),
            PropSpec("netdev", "", "id of the -netdev peer (context['netdevs']); frames "
                                   "sent go nowhere and none arrive, as without one"),
        ) + tuple(PropSpec(n, "on", "feature bit") for n in (
            "gso", "mrg_rxbuf", "status", "ctrl_vq", "ctrl_rx", "ctrl_vlan", "ctrl_rx_extra",
            "ctrl_mac_addr", "ctrl_guest_offloads", "guest_announce"))
        + tuple(PropSpec(n, "on", "offload (no effect: stripped without a vnet-header peer)")
                for n in _NET_OFFLOADS)),
    "virtio-blk-pci": DeviceKind(
        "virtio-blk-pci", "virtio block device over a raw image (-drive ...,format=raw)",
        _VIRTIO_PCI_PROPS + (
            PropSpec("vectors", "auto", "MSI-X vectors, 1..2048 (auto: num-queues + 1)"),
            PropSpec("romfile", "", "option ROM file"),
            PropSpec("ioeventfd", "on", "host notifiers: DRIVER_OK kicks every queue"),
            PropSpec("drive", "", "id of the -drive (or of context['drives'] in tests)"),
            PropSpec("x-drive-file", "", "the raw image the drive names (zpci-emu boot sets it)"),
            PropSpec("x-drive-readonly", "off", "the drive is read-only (zpci-emu boot sets it)"),
            PropSpec("x-drive-snapshot", "off", "writes stay in memory (zpci-emu boot sets it)"),
            PropSpec("x-drive-wce", "on", "the drive's cache mode has a write cache "
                                          "(zpci-emu boot sets it from cache=)"),
            PropSpec("serial", "", "answer to VIRTIO_BLK_T_GET_ID (at most 20 bytes used)"),
            PropSpec("num-queues", "auto", "request queues, 1..1024 (auto: one per vCPU)"),
            PropSpec("queue-size", "256", "power of 2, 4..1024"),
            PropSpec("config-wce", "on", "offer VIRTIO_BLK_F_CONFIG_WCE"),
            PropSpec("discard", "on", "offer VIRTIO_BLK_F_DISCARD"),
            PropSpec("write-zeroes", "on", "offer VIRTIO_BLK_F_WRITE_ZEROES"),
            PropSpec("report-discard-granularity", "on", "off: discard alignment = block size"),
            PropSpec("max-discard-sectors", str(0x7FFFFFFF >> 9), "1..4194303"),
            PropSpec("max-write-zeroes-sectors", str(0x7FFFFFFF >> 9), "1..4194303"),
            PropSpec("seg-max-adjust", "on", "seg_max = queue-size - 2 (off: 126)"),
            PropSpec("x-enable-wce-if-config-wce", "on", "offer WCE whenever CONFIG_WCE is"),
            PropSpec("write-cache", "auto", "on/off overrides the drive's cache mode"),
            PropSpec("logical_block_size", "512", "power of 2, 512..2097152"),
            PropSpec("physical_block_size", "512", "power of 2, 512..2097152"),
            PropSpec("min_io_size", "0", "bytes, a multiple of logical_block_size"),
            PropSpec("opt_io_size", "0", "bytes, a multiple of logical_block_size"),
            PropSpec("discard_granularity", "-1", "bytes (-1: logical_block_size)"),
            PropSpec("cyls", "0", "geometry (0/0/0: guessed from the image)"),
            PropSpec("heads", "0", "geometry"),
            PropSpec("secs", "0", "geometry"),
            PropSpec("request-merging", "on", "no effect: requests complete one by one"),
            PropSpec("share-rw", "off", "no effect"),
            PropSpec("account-invalid", "auto", "no effect (statistics)"),
            PropSpec("account-failed", "auto", "no effect (statistics)"),
        )),
    "memdev": DeviceKind(
        "memdev", "memory-backed test device (BARs are plain bytes)",
        (PropSpec("shape", "", "virtio-rng: the virtio-rng-pci layout, no behaviour"),
         PropSpec("vendor", "0x1af4", "vendor id"),
         PropSpec("device", "0x10ff", "device id"))
        + tuple(PropSpec(f"bar{i}", "", "BAR size: a power of 2 up to 2^63, memory made "
                                        "on first write (0 or none: no BAR)")
                for i in range(6))),
}


def _supported_kinds() -> str:
    return ", ".join(DEVICE_KINDS)


def _transport(kind: DeviceKind, p: dict[str, str]):
    from .pci import rom_bar_size
    from .virtio import TransportOptions
    dl = prop(kind, p, "disable-legacy").lower()
    legacy = True if dl == "auto" else not as_bool(kind, "disable-legacy", dl)
    modern = not flag(kind, p, "disable-modern")
    iommu = flag(kind, p, "iommu_platform")
    if not legacy and not modern:
        raise bad_prop(kind, "disable-modern",
                        "device cannot work as neither modern nor legacy mode is enabled")
    if iommu and legacy:
        raise bad_prop(kind, "iommu_platform",
                        "VIRTIO_F_IOMMU_PLATFORM was supported by neither legacy nor "
                        "transitional device (add disable-legacy=on)")
    if iommu and not modern:
        raise bad_prop(kind, "iommu_platform", "iommu_platform=on needs a modern device")
    vectors = as_int(kind, "vectors", prop(kind, p, "vectors"), 0, 0xFFFFFFFF)
    if not 1 <= vectors <= 2048:
        # msix_init refuses more than 2048; zPCI refuses a function without MSI-X
        raise bad_prop(kind, "vectors", f"vectors={vectors}: MSI-X support is mandatory "
                                         f"in the S390 architecture (1..2048 vectors)")
    rombar = as_int(kind, "rombar", prop(kind, p, "rombar"), 0, 0xFFFFFFFF)
    rom_size = rom_bar_size(prop(kind, p, "romfile")) if rombar else 0
    ioeventfd = "ioeventfd" in kind.prop_names() and flag(kind, p, "ioeventfd")
    return TransportOptions(
        legacy=legacy, modern=modern, iommu_platform=iommu, vectors=vectors,
        page_per_vq=flag(kind, p, "page-per-vq"),
        ioeventfd=ioeventfd,
        queue_reset=flag(kind, p, "queue_reset"),
        event_idx=flag(kind, p, "event_idx"),
        indirect_desc=flag(kind, p, "indirect_desc"),
        notify_on_empty=flag(kind, p, "notify_on_empty"),
        any_layout=flag(kind, p, "any_layout"),
        rom_size=rom_size)


def _make_rng(kind: DeviceKind, p: dict[str, str], context: dict, seed: int | None):
    from .virtio_rng import VirtioRngPci
    opts = _transport(kind, p)
    max_bytes = as_int(kind, "max-bytes", prop(kind, p, "max-bytes"),
                     0, (1 << 63) - 1)
    as_int(kind, "period", prop(kind, p, "period"), 1, 0xFFFFFFFF)
    if seed is None:
        seed = context.get("rngs", 0)
    context["rngs"] = context.get("rngs", 0) + 1
    backend = None
    rng = p.get("rng", "")
    backends = context.get("rng_backends")
    if rng and backends is not None:
        backend = backends.get(rng)
        if backend is None:
            raise bad_prop(kind, "rng", f"Device '{rng}' not found (property 'rng')")
    return VirtioRngPci(opts, max_bytes=max_bytes, seed=seed, backend=backend)


def _check_netdev(kind: DeviceKind, p: dict[str, str], context: dict) -> None:
    """netdev=ID: a -netdev the caller listed, at most one NIC each (as QEMU)."""
    netdev = p.get("netdev", "")
    known = context.get("netdevs")
    if not netdev or known is None:
        return
    if netdev not in known:
        raise bad_prop(kind, "netdev", f"Property 'virtio-net-device.netdev' can't find "
                                       f"value '{netdev}'")
    used = context.setdefault("netdevs_in_use", set())
    if netdev in used:
        raise bad_prop(kind, "netdev", f"Property 'virtio-net-device.netdev' can't take "
                                       f"value '{netdev}', it's in use")
    used.add(netdev)


def _queue_size(kind: DeviceKind, p: dict[str, str], name: str) -> int:
    n = as_int(kind, name, prop(kind, p, name), 0, 0xFFFF)
    if n < 256 or n > 1024 or n & (n - 1):
        raise bad_prop(kind, name, f"Invalid {name} (= {n}), must be a power of 2 "
                                    f"between 256 and 1024.")
    return n


def _make_net(kind: DeviceKind, p: dict[str, str], context: dict, seed: int | None):
    from .virtio_net import FEATURE_PROPS, VirtioNetPci
    opts = _transport(kind, p)
    _check_netdev(kind, p, context)
    for name in _NET_OFFLOADS:
        flag(kind, p, name)
    features = 0
    for name, bit in FEATURE_PROPS:
        if flag(kind, p, name):
            features |= 1 << bit
    if "mac" in p:
        mac = as_mac(kind, p["mac"])
    else:
        # qemu_macaddr_default_if_unset: 52:54:00:12:34:56 + the next free index
        index = context.get("nics", 0)
        context["nics"] = index + 1
        mac = bytes((0x52, 0x54, 0x00, 0x12, 0x34, (0x56 + index) & 0xFF))
    mtu = as_int(kind, "host_mtu", prop(kind, p, "host_mtu"), 0, 0xFFFF)
    return VirtioNetPci(opts, mac, features,
                        rx_queue_size=_queue_size(kind, p, "rx_queue_size"),
                        tx_queue_size=_queue_size(kind, p, "tx_queue_size"),
                        host_mtu=mtu or None,
                        tx_burst=as_int(kind, "x-txburst", prop(kind, p, "x-txburst"), 1, 0x7FFFFFFF))


def _block_size(kind: DeviceKind, p: dict[str, str], name: str) -> int:
    n = as_int(kind, name, prop(kind, p, name), 0, 0xFFFFFFFF)
    if n & (n - 1) or not 512 <= n <= 2 << 20:
        raise bad_prop(kind, name, f"property '{name}' doesn't take value {n} "
                                    f"(a power of 2 from 512 to 2097152)")
    return n


def _make_blk(kind: DeviceKind, p: dict[str, str], context: dict, seed: int | None):
    from .virtio_blk import REQUEST_MAX_SECTORS, BlkConf, BlockImage, VirtioBlkPci
    drive = p.get("drive", "")
    if not drive:
        raise bad_prop(kind, "drive", "drive property not set")
    nq_text = prop(kind, p, "num-queues")
    # virtio_pci_optimal_num_queues: one queue per vCPU, and one vCPU is emulated
    nq = 1 if nq_text == "auto" else as_int(kind, "num-queues", nq_text, 0, 0xFFFF)
    if nq < 1 or nq > 1024:
        raise bad_prop(kind, "num-queues", f"num-queues property must be between 1 and 1024, "
                                            f"not {nq}")
    qs = as_int(kind, "queue-size", prop(kind, p, "queue-size"), 0, 0xFFFF)
    if qs <= 2:
        raise bad_prop(kind, "queue-size", f"invalid queue-size property ({qs}), must be > 2")
    if qs & (qs - 1) or qs > 1024:
        raise bad_prop(kind, "queue-size", f"invalid queue-size property ({qs}), "
                                            f"must be a power of 2 (max 1024)")
    if prop(kind, p, "vectors") == "auto":
        p = dict(p, vectors=str(nq + 1))
    opts = _transport(kind, p)
    lbs = _block_size(kind, p, "logical_block_size")
    pbs = _block_size(kind, p, "physical_block_size")
    if lbs > pbs:
        raise bad_prop(kind, "logical_block_size",
                        "logical_block_size > physical_block_size not supported")
    sizes = {}
    for name in ("min_io_size", "opt_io_size"):
        sizes[name] = as_int(kind, name, prop(kind, p, name), 0, 0xFFFFFFFF)
        if sizes[name] % lbs:
            raise bad_prop(kind, name, f"{name} must be a multiple of logical_block_size")
    if sizes["min_io_size"] // lbs > 0xFFFF:
        raise bad_prop(kind, "min_io_size", "min_io_size must not exceed 65535 logical blocks")
    gran = as_int(kind, "discard_granularity", prop(kind, p, "discard_granularity"), -1, 0xFFFFFFFF)
    if gran == 0xFFFFFFFF:
        gran = -1
    if gran != -1 and gran % lbs:
        raise bad_prop(kind, "discard_granularity",
                        "discard_granularity must be a multiple of logical_block_size")
    chs = [as_int(kind, n, prop(kind, p, n), 0, 0xFFFFFFFF) for n in ("cyls", "heads", "secs")]
    if any(chs):
        for name, value, top in zip(("cyls", "heads", "secs"), chs, (65535, 255, 255)):
            if not 1 <= value <= top:
                raise bad_prop(kind, name, f"{name} must be between 1 and {top}")
    flags = {n: flag(kind, p, n) for n in (
        "config-wce", "discard", "write-zeroes", "report-discard-granularity", "seg-max-adjust",
        "x-enable-wce-if-config-wce", "request-merging", "share-rw")}
    for name in ("account-invalid", "account-failed"):
        on_off_auto(kind, p, name)
    write_cache = on_off_auto(kind, p, "write-cache")
    limits = {}
    for name, feature in (("max-discard-sectors", "discard"),
                          ("max-write-zeroes-sectors", "write-zeroes")):
        limits[name] = as_int(kind, name, prop(kind, p, name), 0, 0xFFFFFFFF)
        if flags[feature] and not 1 <= limits[name] <= REQUEST_MAX_SECTORS:
            raise bad_prop(kind, name, f"invalid {name} property ({limits[name]}), must be "
                                        f"between 1 and {REQUEST_MAX_SECTORS}")
    conf = BlkConf(
        num_queues=nq, queue_size=qs, serial=prop(kind, p, "serial"),
        logical_block_size=lbs, physical_block_size=pbs,
        min_io_size=sizes["min_io_size"], opt_io_size=sizes["opt_io_size"],
        discard_granularity=gran, cyls=chs[0], heads=chs[1], secs=chs[2],
        seg_max_adjust=flags["seg-max-adjust"], config_wce=flags["config-wce"],
        discard=flags["discard"], write_zeroes=flags["write-zeroes"],
        report_discard_granularity=flags["report-discard-granularity"],
        max_discard_sectors=limits["max-discard-sectors"],
        max_write_zeroes_sectors=limits["max-write-zeroes-sectors"],
        enable_wce_if_config_wce=flags["x-enable-wce-if-config-wce"],
        write_cache=write_cache)
    image = context.get("drives", {}).get(drive)
    if image is None:
        path = prop(kind, p, "x-drive-file")
        if not path:
            raise bad_prop(kind, "drive", f"Property 'virtio-blk-device.drive' can't find "
                                           f"value '{drive}'")
        readonly = flag(kind, p, "x-drive-readonly")
        wce = flag(kind, p, "x-drive-wce")
        try:
            if flag(kind, p, "x-drive-snapshot"):
                image = BlockImage.snapshot(path, readonly=readonly, write_cache=wce)
            else:
                image = BlockImage(path=path, readonly=readonly, write_cache=wce)
        except OSError as e:
            raise bad_prop(kind, "drive", f"drive '{drive}': could not open '{path}': "
                                           f"{e.strerror or e}") from None
    return VirtioBlkPci(opts, image, conf)


def _make_memdev(kind: DeviceKind, p: dict[str, str], context: dict, seed: int | None):
    from .memdev import MAX_BAR_SIZE, BarSpec, MemDevice
    shape = p.get("shape", "")
    if shape == "virtio-rng":
        return MemDevice.virtio_rng_shaped()
    if shape:
        raise bad_prop(kind, "shape", f"property 'shape' expects 'virtio-rng' or nothing, "
                                      f"not '{shape}'")
    ids = [as_int(kind, name, prop(kind, p, name), 0, 0xFFFF) for name in ("vendor", "device")]
    bars = {}
    for i in range(6):
        name = f"bar{i}"
        if p.get(name, ""):
            size = as_int(kind, name, p[name], 0, (1 << 64) - 1)
            if size and (size & (size - 1) or size > MAX_BAR_SIZE):
                raise bad_prop(kind, name, f"property '{name}' expects a power of 2 "
                                           f"up to 2^63 (0: no BAR), not {size}")
            if size:
                bars[i] = BarSpec(size)
    return MemDevice(*ids, bars or None)


_FACTORIES = {"virtio-rng-pci": _make_rng, "virtio-net-pci": _make_net,
              "virtio-blk-pci": _make_blk, "memdev": _make_memdev}


def make_device(kind: str, props=(), *, context: dict | None = None,
                seed: int | None = None) -> PciDevice:
    """Build the device a ``-device kind,props...`` string describes.

    ``context`` is per machine state shared between the devices of one
    machine; pass the same dict for every device of a machine.  Keys:

    * ``rngs``, ``nics``: counters kept here (default PRNG seeds, QEMU's
      default MAC numbering);
    * ``drives``: drive id -> ``virtio_blk.BlockImage``, the block backends
      a ``drive=`` property names;
    * ``rng_backends``: object id -> entropy backend (a callable ``n ->
      bytes``, see ``virtio_rng``), what ``rng=`` names; without the key
      ``rng=`` is not looked up and the default backend serves;
    * ``netdevs``: the ids of the machine's ``-netdev``s, what ``netdev=``
      names (each at most once); without the key ``netdev=`` is not looked up.

    ``seed`` overrides a random device's PRNG seed.  Every property is
    checked here: a bad one raises ``DeviceConfigError`` (a ValueError)
    with one line naming it and what it accepts; nothing else is raised
    for any property value.
    """
    spec = DEVICE_KINDS.get(kind)
    if spec is None:
        raise DeviceConfigError(f"'{kind}' is not a supported device model name "
                                f"(supported: {_supported_kinds()})")
    p = props_dict(spec, props)
    return _FACTORIES[kind](spec, p, context if context is not None else {}, seed)


__all__ = ["DEVICE_KINDS", "DeviceConfigError", "DeviceKind", "PropSpec", "make_device"]
