"""The qemu-system-s390x part of the ``zpci-emu boot`` command line.

A script that runs ``qemu-system-s390x ARGS`` must be able to run
``zpci-emu boot ARGS`` instead, so the single-dash options are QEMU's.  argparse
cannot parse those (``-kernel`` looks like ``-k ernel`` to it), hence this
small parser.  It yields a ``firmware_model.config.MachineConfig`` whose
functions are in the order QEMU plugs their zpci devices, i.e. CLP LIST order.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from emulator.errors import UserError
from emulator.io_safe import open_input

# the policy `zpci-emu boot` runs without --policy: what landed upstream
DEFAULT_POLICY = "linux-6.0"
from firmware_model.config import FunctionSpec, MachineConfig

USAGE_EXIT = 2

# QEMU's default RAM for the s390-ccw-virtio machine (MachineClass default).
DEFAULT_MEMORY = 128 << 20

# Options of QEMU's that take a value and change nothing the guest sees here:
# logging, the monitor, display and host-side plumbing.  -cpu and -machine are
# checked (parse_cpu, parse_machine); -global, -object and -netdev are applied.
IGNORED_WITH_VALUE = {
    "-chardev": "host end of a console (the SCLP console goes to stdout)",
    "-serial": "host end of a console",
    "-monitor": "the QEMU monitor",
    "-mon": "the QEMU monitor",
    "-qmp": "the QMP monitor",
    "-display": "display back-end (there is no display)",
    "-vga": "display adapter (s390x has none)",
    "-accel": "accelerator (unicorn runs the guest)",
    "-name": "guest name (only STSI shows it, which is not emulated: the run stops there)",
    "-uuid": "guest UUID (only STSI shows it, which is not emulated: the run stops there)",
    "-d": "QEMU's log items",
    "-D": "QEMU's log file",
    "-boot": "boot order (-kernel is always what runs)",
    "-rtc": "host clock options",
    "-action": "what QEMU does on a panic or shutdown (zpci-emu stops with exit status 1)",
    "-L": "QEMU's firmware directory (-kernel needs no firmware)",
    "-bios": "IPL firmware (-kernel needs none)",
}
IGNORED_FLAGS = {
    "-nographic": "no display; the console goes to stdout as it does here",
    "-nodefaults": "no default devices (without it the default SCLP console prints)",
    "-no-reboot": "the run ends at the guest's first stop anyway",
    "-no-shutdown": "the run ends at the guest's first stop anyway",
    "-S": "start paused (the run starts at once)",
    "-enable-kvm": "accelerator (unicorn runs the guest)",
    "-no-user-config": "QEMU's configuration files",
}
# Devices that only concern the console or the machine; QEMU accepts them.
CONSOLE_DEVICES = {"sclpconsole", "sclplmconsole"}
ZPCI_PROPS = {"uid", "fid", "target", "id"}

# -machine: the machine type and the properties that leave the guest unchanged
MACHINE_TYPES = ("s390-ccw-virtio", "s390-ccw-virtio-7.2")
MACHINE_IGNORED_PROPS = ("accel", "graphics", "dump-guest-core", "mem-merge", "suppress-vmdesc",
                         "usb", "phandle-start", "dt-compatible", "dtb", "dumpdtb")
ZPCI_MAX_UID = 0xFFFF
ZPCI_MAX_FID = 0xFFFFFFFF


@dataclass(frozen=True)
class DriveSpec:
    """A ``-drive`` that a device's ``drive=`` property can name (a block backend)."""
    id: str
    file: str
    readonly: bool = False
    snapshot: bool = False
    write_cache: bool = True        # cache=writeback/none/unsafe; writethrough/directsync: off
    text: str = ""

    def device_props(self) -> tuple[tuple[str, str], ...]:
        """What the device model needs of the backend (see firmware_model.devices)."""
        props = [("x-drive-file", self.file)]
        if self.readonly:
            props.append(("x-drive-readonly", "on"))
        if self.snapshot:
            props.append(("x-drive-snapshot", "on"))
        if not self.write_cache:
            props.append(("x-drive-wce", "off"))
        return tuple(props)


# -drive options: the ones with an effect, and those that change nothing a guest sees here
_DRIVE_CACHE = {"writeback": True, "none": True, "unsafe": True,
                "writethrough": False, "directsync": False}
_DRIVE_IGNORED = {"aio", "discard", "detect-zeroes", "werror", "rerror", "media", "node-name",
                  "auto-read-only", "force-share", "copy-on-read", "throttling.iops-total",
                  "throttling.bps-total", "cache.direct", "cache.no-flush", "locking"}
_DRIVE_FIELDS = ("file", "if", "id", "format", "readonly", "snapshot", "cache")
_QCOW_MAGIC = b"QFI\xfb"


def parse_drive(text: str) -> DriveSpec:
    """``-drive file=PATH,if=none,id=ID,format=raw[,readonly=on][,cache=...][,snapshot=on]``."""
    where = f"-drive {text}"
    fields: dict[str, str] = {}
    kind, props = split_device("x," + text) if text else ("x", [])
    for key, value in props:
        if key not in _DRIVE_FIELDS and key not in _DRIVE_IGNORED:
            raise _usage_error(f"unsupported drive option '{key}' (supported: "
                               f"{', '.join(_DRIVE_FIELDS)}; ignored: "
                               f"{', '.join(sorted(_DRIVE_IGNORED))})", where=where)
        fields[key] = value
    iface = fields.get("if", "ide")
    if iface != "none":
        raise _usage_error(f"if={iface}: only if=none drives, attached with "
                           f"-device virtio-blk-pci,drive=ID, are emulated", where=where)
    drive_id = fields.get("id")
    if not drive_id:
        raise _usage_error("id: a drive with if=none needs an id for drive=", where=where)
    path = fields.get("file")
    if not path:
        raise _usage_error("file: no image file given", where=where)
    fmt = fields.get("format")
    if fmt is not None and fmt != "raw":
        raise _usage_error(f"format={fmt}: only raw images are emulated", where=where)
    flags = {}
    for key in ("readonly", "snapshot"):
        value = fields.get(key, "off").lower()
        if value not in ("on", "off", "yes", "no", "true", "false"):
            raise _usage_error(f"{key}={value}: expects on or off", where=where)
        flags[key] = value in ("on", "yes", "true")
    cache = fields.get("cache", "writeback")
    if cache not in _DRIVE_CACHE:
        raise _usage_error(f"cache={cache}: expects one of {', '.join(_DRIVE_CACHE)}", where=where)
    try:
        with open_input(path) as f:       # a regular file: a FIFO or device is refused
            head = f.read(4)
    except UserError as exc:
        raise _usage_error(f"file={path}: could not open: {exc.message}", where=where) from None
    if fmt is None and head == _QCOW_MAGIC:
        raise _usage_error(f"file={path}: a qcow2 image; only raw images are emulated",
                           where=where)
    if not flags["readonly"] and not flags["snapshot"] and not os.access(path, os.W_OK):
        raise _usage_error(f"file={path}: not writable (add readonly=on)", where=where)
    return DriveSpec(id=drive_id, file=path, readonly=flags["readonly"],
                     snapshot=flags["snapshot"], write_cache=_DRIVE_CACHE[cache], text=text)


# -object types that back a device, and their properties
RNG_OBJECTS = {"rng-builtin": (), "rng-random": ("filename",)}
RNG_RANDOM_DEFAULT_FILE = "/dev/urandom"      # QEMU 7.2's rng-random default
# -netdev types accepted; no backend is ever connected to a host network
NETDEV_TYPES = ("user",)


@dataclass(frozen=True)
class RngBackend:
    """An ``-object rng-builtin|rng-random,id=ID[,filename=F]`` a ``rng=`` property names."""
    id: str
    type: str
    filename: str | None = None
    text: str = ""


@dataclass(frozen=True)
class Netdev:
    """A ``-netdev user,id=ID,...``: a peer a ``netdev=`` property names, never connected."""
    id: str
    type: str
    text: str = ""


def parse_object(text: str) -> RngBackend:
    """``-object rng-builtin,id=R`` or ``-object rng-random,id=R[,filename=F]``."""
    where = f"-object {text}"
    kind, props = split_device(text) if text else ("", [])
    if kind not in RNG_OBJECTS:
        raise _usage_error(f"object type '{kind}' is not modelled (accepted: "
                           f"{', '.join(RNG_OBJECTS)}, the entropy sources of virtio-rng-pci)",
                           where=where)
    fields = dict(props)
    for key in fields:
        if key != "id" and key not in RNG_OBJECTS[kind]:
            raise _usage_error(f"{kind} has no property '{key}' here (properties: "
                               f"{', '.join(('id',) + RNG_OBJECTS[kind])})", where=where)
    if not fields.get("id"):
        raise _usage_error("Parameter 'id' is missing", where=where)
    filename = None
    if kind == "rng-random":
        filename = fields.get("filename", RNG_RANDOM_DEFAULT_FILE)
        try:
            # QEMU opens the source when the object is created; so does this
            os.close(os.open(filename, os.O_RDONLY | os.O_NONBLOCK))
        except OSError as exc:
            raise _usage_error(f"Could not open '{filename}': {exc.strerror or exc}",
                               where=where) from None
    return RngBackend(id=fields["id"], type=kind, filename=filename, text=text)


def parse_netdev(text: str) -> Netdev:
    """``-netdev user,id=N[,...]``: accepted, never connected (its options change nothing here)."""
    where = f"-netdev {text}"
    kind, props = split_device(text) if text else ("", [])
    if kind not in NETDEV_TYPES:
        raise _usage_error(f"netdev type '{kind}' is not accepted (accepted: "
                           f"{', '.join(NETDEV_TYPES)}; no backend is connected to a network "
                           f"here)", where=where)
    net_id = dict(props).get("id")
    if not net_id:
        raise _usage_error("Parameter 'id' is missing", where=where)
    return Netdev(id=net_id, type=kind, text=text)


@dataclass(frozen=True)
class GlobalProp:
    """``-global DRIVER.PROP=VALUE`` (or ``driver=D,property=P,value=V``): a default for PROP
    of every device that is a DRIVER; the device's own properties override it."""
    driver: str
    prop: str
    value: str
    text: str


# Properties of a virtio-*-pci proxy that its virtio-*-device lacks; every other
# property of the proxy is an alias of the virtio device's (qdev_alias_all_properties).
PROXY_ONLY_PROPS = frozenset({"id", "disable-legacy", "disable-modern", "page-per-vq",
                              "vectors", "ioeventfd", "rombar", "romfile"})
# Properties that name a backend: set with -drive/-object/-netdev and the -device, never by -global
_BACKEND_PROPS = ("drive", "rng", "netdev")


def global_types() -> dict[str, tuple[str, ...]]:
    """QOM type name -> the -device kinds whose objects are instances of it.

    A virtio-*-pci device is two objects: the PCI proxy (an instance of
    ``virtio-X-pci``, ``virtio-X-pci-base``, ``virtio-pci`` and
    ``pci-device``) and its virtio device (``virtio-X-device``,
    ``virtio-device``).  QEMU's ``device`` type is not listed: it names every
    device of the machine, most of which are not modelled.
    """
    from firmware_model.devices import DEVICE_KINDS
    types: dict[str, list[str]] = {"zpci": ["zpci"]}
    for kind in DEVICE_KINDS:
        if not (kind.startswith("virtio-") and kind.endswith("-pci")):
            continue            # the test-only memdev is no QEMU device
        for t in (*_proxy_types(kind), *_vdev_types(kind)):
            types.setdefault(t, []).append(kind)
    return {t: tuple(kinds) for t, kinds in types.items()}


def _proxy_types(kind: str) -> tuple[str, ...]:
    return (kind, f"{kind}-base", "virtio-pci", "pci-device")


def _vdev_types(kind: str) -> tuple[str, ...]:
    return (kind.removesuffix("-pci") + "-device", "virtio-device")


def _global_props(driver: str, kind: str) -> tuple[str, ...]:
    """The modelled properties a global for ``driver`` can set on a ``kind`` device."""
    from firmware_model.devices import DEVICE_KINDS
    if kind == "zpci":
        names: tuple[str, ...] = tuple(sorted(ZPCI_PROPS - {"id"}))
    elif driver in _vdev_types(kind):
        names = tuple(n for n in DEVICE_KINDS[kind].prop_names() if n not in PROXY_ONLY_PROPS)
    else:
        names = tuple(n for n in DEVICE_KINDS[kind].prop_names() if n != "id")
    return tuple(n for n in names if n not in _BACKEND_PROPS and not n.startswith("x-drive-"))


def parse_global(text: str) -> GlobalProp:
    """QEMU's two -global spellings; a driver no modelled device is an instance of is refused."""
    where = f"-global {text}"
    m = re.fullmatch(r"([^.=]+)\.([^=]+)=(.*)", text, re.S)
    if m:
        driver, prop, value = m.groups()
    else:
        fields = dict(split_device("x," + text)[1]) if text else {}
        if not all(k in fields for k in ("driver", "property", "value")):
            raise _usage_error("options 'driver', 'property', and 'value' are required",
                               where=where)
        driver, prop, value = fields["driver"], fields["property"], fields["value"]
    types = global_types()
    if driver not in types:
        raise _usage_error(f"no modelled device is a '{driver}', so what this global changes "
                           f"is not modelled (globals apply to: {', '.join(sorted(types))})",
                           where=where)
    return GlobalProp(driver=driver, prop=prop, value=value, text=text)


def _apply_globals(kind: str, props: list[tuple[str, str]], globals_: list[GlobalProp]
                   ) -> list[tuple[str, str]]:
    """The globals for a ``kind`` device in front of its own properties (which override them)."""
    first = []
    for g in globals_:
        if kind not in global_types().get(g.driver, ()):
            continue
        allowed = _global_props(g.driver, kind)
        if g.prop not in allowed:
            raise _usage_error(f"can't apply to {kind}: property '{g.prop}' is "
                               f"not modelled there (modelled: {', '.join(allowed)})",
                               where=f"-global {g.text}")
        first.append((g.prop, g.value))
    return first + list(props)


# Random sources whose bytes no guest can tell from the model's own seeded PRNG
_UNPREDICTABLE_SOURCES = ("/dev/urandom", "/dev/random")


def _model_has(kind: str, prop: str) -> bool:
    from firmware_model.devices import DEVICE_KINDS
    spec = DEVICE_KINDS.get(kind)
    return spec is not None and prop in spec.prop_names()


def _wire_backends(kind: str, props: list[tuple[str, str]], text: str, out: "BootArgs",
                   peers: dict[str, str]) -> list[tuple[str, str]]:
    """A device's ``rng=``/``netdev=`` checked as QEMU checks them and handed to the model.

    The model gets ``rng=ID`` for an rng-random backend and ``netdev=ID``
    when its device kind has those properties; ``BootArgs.device_context``
    holds what they name.  rng-builtin is the model's default backend, so
    its ``rng=`` is dropped.  A model without the properties has no backend
    to take: a net device without a peer is what every netdev is here (never
    connected), and an rng device draws from its seeded PRNG, which a guest
    cannot tell from an unpredictable source; any other file is refused
    rather than silently not read.
    """
    where = f"-device {text}"
    wired = []
    for key, value in props:
        if key == "netdev" and kind == "virtio-net-pci":
            if value not in out.netdevs:
                raise _usage_error(f"Property 'virtio-net-device.netdev' can't find value "
                                   f"'{value}'", where=where)
            if value in peers:
                raise _usage_error(f"Property 'virtio-net-device.netdev' can't take value "
                                   f"'{value}', it's in use", where=where)
            peers[value] = text
            if _model_has(kind, "netdev"):
                wired.append((key, value))
        elif key == "rng" and kind == "virtio-rng-pci":
            backend = out.rngs.get(value)
            if backend is None:
                raise _usage_error(f"Device '{value}' not found", where=where)
            if backend.filename is None:
                continue        # rng-builtin: the model's own default backend
            if _model_has(kind, "rng"):
                wired.append((key, value))      # found in device_context()["rng_backends"]
            elif backend.filename not in _UNPREDICTABLE_SOURCES:
                raise _usage_error(f"rng={value}: the device model cannot read "
                                   f"{backend.filename} (only rng-builtin and "
                                   f"{' or '.join(_UNPREDICTABLE_SOURCES)} are modelled)",
                                   where=where)
        else:
            wired.append((key, value))
    return wired


def _resolve_devices(devices: list[str], out: "BootArgs", globals_: list[GlobalProp]
                     ) -> list[str]:
    """Each -device string as the model builds it: globals first, backends wired."""
    peers: dict[str, str] = {}
    resolved = []
    for text in devices:
        kind, props = split_device(text)
        if kind in CONSOLE_DEVICES:
            resolved.append(text)
            continue
        wired = _wire_backends(kind, _apply_globals(kind, props, globals_), text, out, peers)
        resolved.append(text if wired == props else _device_text(kind, wired))
    for net_id in out.netdevs:
        if net_id not in peers:
            out.warnings.append(f"netdev {net_id} has no peer")
    return resolved


def _device_text(kind: str, props) -> str:
    """A -device string again, with QemuOpts' comma escape."""
    return ",".join([kind] + [f"{k}={v.replace(',', ',,')}" for k, v in props])


@dataclass
class BootArgs:
    """Everything ``zpci-emu boot`` was asked to do."""
    kernel: str | None = None
    config: MachineConfig = field(default_factory=MachineConfig)
    append: str = ""
    initrd: str | None = None        # -initrd FILE, loaded as QEMU's s390x IPL does
    console: bool = True             # an SCLP ASCII console is attached
    smp: int = 1
    policy: str | None = None
    max_insns: int | None = None
    max_console: int | None = None
    stats: str | None = None
    trace: str | None = None
    help: bool = False
    device_strings: list[str] = field(default_factory=list)
    drives: dict[str, DriveSpec] = field(default_factory=dict)
    rngs: dict[str, RngBackend] = field(default_factory=dict)
    netdevs: dict[str, Netdev] = field(default_factory=dict)
    globals: list[GlobalProp] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def device_context(self) -> dict:
        """What the device models look ``rng=`` and ``netdev=`` up in (make_device's
        ``context``): the rng-random files, opened, and the -netdev ids."""
        ctx: dict = {"netdevs": set(self.netdevs)}
        files = {k: b.filename for k, b in self.rngs.items() if b.filename is not None}
        if files and _model_has("virtio-rng-pci", "rng"):
            from firmware_model.devices.virtio_rng import FileRng
            ctx["rng_backends"] = {k: FileRng(f) for k, f in files.items()}
        return ctx


def _usage_error(message: str, where: str | None = None) -> UserError:
    return UserError(message, where=where, exit_code=USAGE_EXIT)


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kKmMgGtT]?)[bB]?$")
_UNITS = {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory(text: str) -> int:
    """QEMU's ``-m [size=]N[KMGT]``: a bare number is MiB; RAM is whole MiB."""
    value = text
    for part in text.split(","):
        if part.startswith("size="):
            value = part[5:]
            break
        if "=" in part:
            continue
        value = part
        break
    m = _SIZE.match(value.strip())
    if not m:
        raise _usage_error(f"invalid RAM size {text!r}", where="-m")
    # Decimal, not float or int: a long digit string must neither overflow to
    # infinity nor hit int()'s digit limit
    size = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
    if size <= 0:
        raise _usage_error(f"invalid RAM size {text!r}", where="-m")
    if size > (1 << 40):
        raise _usage_error(f"RAM size {text!r} is larger than this emulator maps", where="-m")
    if size % (1 << 20):
        raise _usage_error(f"RAM size {text!r} is not a multiple of 1 MiB", where="-m")
    return int(size)


def split_device(text: str) -> tuple[str, list[tuple[str, str]]]:
    """``kind,prop=value,...`` (QEMU's QemuOpts syntax, ``,,`` escapes a comma)."""
    parts: list[str] = []
    cur = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == ",":
            if i + 1 < len(text) and text[i + 1] == ",":
                cur.append(",")
                i += 2
                continue
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    kind = None
    props: list[tuple[str, str]] = []
    for n, part in enumerate(parts):
        if n == 0 and "=" not in part:
            kind = part
            continue
        if "=" not in part:
            # QemuOpts reads a bare word as "word=on"
            props.append((part, "on"))
            continue
        key, value = part.split("=", 1)
        if key == "driver" and kind is None:
            kind = value
        else:
            props.append((key, value))
    if not kind:
        raise _usage_error("no device kind", where=f"-device {text}")
    return kind, props


def _parse_int(value: str, what: str, device: str, maximum: int, minimum: int = 0) -> int:
    try:
        n = int(value, 0)
    except ValueError:
        raise _usage_error(f"{what} {value!r} is not a number", where=f"-device {device}") from None
    if not minimum <= n <= maximum:
        raise _usage_error(f"{what} {value} out of range {minimum}..{maximum:#x}",
                           where=f"-device {device}")
    return n


@dataclass
class _Pending:
    fid: int | None
    uid: int | None
    target: str | None
    kind: str | None = None
    props: tuple = ()
    device: str = ""


def build_functions(devices: list[str], drives: dict[str, DriveSpec] | None = None,
                    zpci_defaults: list[tuple[str, str]] = ()
                    ) -> tuple[tuple[FunctionSpec, ...], bool]:
    """FunctionSpecs in zpci plug order, as QEMU's s390 PCI host bridge makes them.

    A zpci device joins the list when it is plugged; a PCI device without one
    gets QEMU's automatic zpci device (fid and uid chosen by the bus) at its own
    position.  Returns the functions and whether an SCLP console device was
    given.  A ``drive=ID`` property must name one of ``drives``; the device
    gets the drive's backend as its x-drive-* properties.  ``zpci_defaults``
    (from -global zpci.PROP=V) give an automatic zpci device its fid and uid.
    """
    drives = drives or {}
    used_drives: dict[str, str] = {}
    order: list[_Pending] = []
    by_target: dict[str, _Pending] = {}
    pci_ids: set[str] = set()
    console = False
    auto = 0
    for text in devices:
        kind, props = split_device(text)
        if kind in CONSOLE_DEVICES:
            console = True
            continue
        if kind == "zpci":
            fields = {}
            for key, value in props:
                if key not in ZPCI_PROPS:
                    raise _usage_error(
                        f"zpci has no property {key!r} (zpci properties: "
                        f"{', '.join(sorted(ZPCI_PROPS))})", where=f"-device {text}")
                fields[key] = value
            target = fields.get("target")
            if not target:
                raise _usage_error("target must be defined", where=f"-device {text}")
            if target in by_target or target in pci_ids:
                raise _usage_error(f"target {target} already has an associated zpci device",
                                   where=f"-device {text}")
            uid = fields.get("uid")
            fid = fields.get("fid")
            p = _Pending(
                fid=None if fid is None else _parse_int(fid, "fid", text, ZPCI_MAX_FID),
                uid=None if uid is None else _parse_int(uid, "uid", text, ZPCI_MAX_UID),
                target=target)
            # uid 0 is QEMU's "undefined": generated like an absent one
            if p.uid == 0:
                p.uid = None
            p.device = text
            order.append(p)
            by_target[target] = p
            continue
        dev_id = None
        rest = []
        for key, value in props:
            if key == "id":
                dev_id = value
            elif key.startswith("x-drive-"):
                raise _usage_error(f"property '{key}' is set by -drive, not on -device",
                                   where=f"-device {text}")
            else:
                rest.append((key, value))
            if key == "drive":
                drive = drives.get(value)
                if drive is None:
                    known = ", ".join(sorted(drives)) or "none"
                    raise _usage_error(f"drive={value}: no -drive with id={value} "
                                       f"(drives: {known})", where=f"-device {text}")
                if value in used_drives:
                    raise _usage_error(f"drive={value}: already in use by "
                                       f"-device {used_drives[value]}", where=f"-device {text}")
                used_drives[value] = text
                rest.extend(drive.device_props())
        if dev_id is None:
            # QEMU names an anonymous PCI device after its slot; any unique name will do
            dev_id = f"auto_{auto:02x}"
            auto += 1
        if dev_id in pci_ids:
            raise _usage_error(f"duplicate device id {dev_id!r}", where=f"-device {text}")
        pci_ids.add(dev_id)
        p = by_target.get(dev_id)
        if p is None:
            auto_ids = dict(zpci_defaults)
            p = _Pending(fid=_maybe_int(auto_ids.get("fid"), "fid", text, ZPCI_MAX_FID),
                         uid=_maybe_int(auto_ids.get("uid"), "uid", text, ZPCI_MAX_UID) or None,
                         target=dev_id, device=text)
            order.append(p)
            by_target[dev_id] = p
        p.kind = kind
        p.props = tuple(rest)
    ids = _check_ids(order)
    if all(p.kind is not None for p in order):
        specs = tuple(FunctionSpec(kind=p.kind, props=p.props, fid=p.fid, uid=p.uid,
                                   target=p.target) for p in order)
        return specs, console
    # A zpci device whose target never appears stays RESERVED in QEMU: never
    # listed, but it took a fid, a uid and a handle index when it was plugged.
    # Its spec (kind None) keeps the index; the fids and uids QEMU gave are
    # spelled out, since the bus allocates only among the functions it has.
    specs = tuple(FunctionSpec(kind=p.kind, props=p.props, fid=fid, uid=uid, target=p.target)
                  for p, (uid, fid) in zip(order, ids))
    return specs, console


def _maybe_int(value: str | None, what: str, device: str, maximum: int) -> int | None:
    return None if value is None else _parse_int(value, what, device, maximum)


def _check_ids(order: list[_Pending]) -> list[tuple[int, int]]:
    """QEMU's uid/fid rules in plug order, so a clash names its -device string.

    A zpci device without uid (or fid) takes the lowest free one when it is
    plugged (uids from 1, fids from 0); a given one must still be free then.
    Returns the (uid, fid) each got.
    """
    uids: set[int] = set()
    fids: set[int] = set()
    given = []
    for p in order:
        uid = p.uid
        if uid is None:
            uid = next((u for u in range(1, ZPCI_MAX_UID + 1) if u not in uids), None)
            if uid is None:
                raise _usage_error("no free uid could be found", where=f"-device {p.device}")
        elif uid in uids:
            raise _usage_error(f"uid {uid} already in use", where=f"-device {p.device}")
        fid = p.fid
        if fid is None:
            fid = next(f for f in range(len(fids) + 1) if f not in fids)
        elif fid in fids:
            raise _usage_error(f"fid {fid} already in use", where=f"-device {p.device}")
        uids.add(uid)
        fids.add(fid)
        given.append((uid, fid))
    return given


# the instruction counter of cbits/trap.c is a uint64_t
MAX_INSNS_LIMIT = (1 << 64) - 1

OWN_WITH_VALUE = {"--policy": "policy", "--max-insns": "max_insns",
                  "--max-console": "max_console", "--stats": "stats", "--trace": "trace"}
# the ones whose value is a count (a uint64_t in C)
OWN_COUNTS = {"max_insns", "max_console"}


# The QEMU options that mean here what they mean to qemu-system-s390x:
# option -> (its value, what it does here); the --help text lists them.
QEMU_OPTIONS = {
    "-kernel": ("IMAGE", "the guest: an s390x ELF, or a raw kernel image (vmlinuz), "
                         "loaded as QEMU loads it"),
    "-initrd": ("FILE", "initial ramdisk, loaded where QEMU's s390x IPL puts it"),
    "-append": ("TEXT", "kernel command line, stored where QEMU stores it"),
    "-m": ("SIZE", f"guest RAM, [size=]N[KMGT] (default {DEFAULT_MEMORY >> 20} MiB)"),
    "-smp": ("1", "one CPU (more is refused)"),
    "-device": ("KIND,PROP=V,...", "zpci, sclpconsole, sclplmconsole or a device model below"),
    "-drive": ("file=IMG,if=none,id=D,format=raw[,readonly=on][,cache=..][,snapshot=on]",
               "a raw image for -device virtio-blk-pci,drive=D"),
    "-object": ("rng-builtin,id=R | rng-random,id=R[,filename=F]",
                "an entropy source for -device virtio-rng-pci,rng=R"),
    "-netdev": ("user,id=N[,...]", "a peer for -device virtio-net-pci,netdev=N; NEVER connected "
                                   "to a host network: transmitted frames go nowhere and nothing "
                                   "is ever received"),
    "-global": ("DRIVER.PROP=VALUE", "a default for PROP of every device that is a DRIVER "
                                     "(virtio-pci, virtio-device, zpci, ...); a property that "
                                     "is not modelled is refused"),
    "-machine": ("[s390-ccw-virtio][,PROP=V]", "the s390-ccw-virtio 7.2 machine; properties "
                                               "that would change the guest are refused"),
    "-M": ("MACHINE", "the same as -machine"),
    "-cpu": ("qemu", "the CPU is QEMU 7.2's 'qemu' model whatever is asked (warning otherwise)"),
}


def parse_machine(text: str) -> None:
    """-machine: only the default s390-ccw-virtio (7.2) and properties without a guest effect.

    Older machine types carry compatibility properties that change devices,
    and kernel=, append=, memory=, loadparm=, ... change the guest; those are
    refused rather than ignored.
    """
    where = f"-machine {text}"
    if "=" in text.split(",", 1)[0]:
        mtype, props = None, split_device("x," + text)[1]
    else:
        mtype, props = split_device(text)
    mtype = dict(props).get("type", mtype)
    if mtype is not None and mtype not in MACHINE_TYPES:
        raise _usage_error(f"machine type '{mtype}' is not modelled (only "
                           f"{' = '.join(MACHINE_TYPES)}: older types change device defaults)",
                           where=where)
    for key, _ in props:
        if key != "type" and key not in MACHINE_IGNORED_PROPS:
            raise _usage_error(f"machine property '{key}' is not modelled (accepted, without "
                               f"effect here: {', '.join(MACHINE_IGNORED_PROPS)}; -kernel, "
                               f"-append, -m and -smp set the others)", where=where)


def _add_backend(table: dict, backend, option: str) -> None:
    if backend.id in table:
        raise _usage_error(f"Duplicate ID '{backend.id}' for {option}",
                           where=f"-{option} {backend.text}")
    table[backend.id] = backend


def parse(argv: list[str]) -> BootArgs:
    """Parse the whole ``zpci-emu boot`` argument list."""
    out = BootArgs()
    memory = DEFAULT_MEMORY
    nodefaults = False
    devices: list[str] = []
    i = 0

    def value(opt: str) -> str:
        nonlocal i
        if i + 1 >= len(argv):
            raise _usage_error(f"option {opt} needs a value")
        i += 1
        return argv[i]

    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help", "-help"):
            out.help = True
        elif "=" in arg and arg.split("=", 1)[0] in OWN_WITH_VALUE:
            key, val = arg.split("=", 1)
            _set_own(out, key, val)
        elif arg in OWN_WITH_VALUE:
            _set_own(out, arg, value(arg))
        elif arg.startswith("--") and arg[1:] in QEMU_OPTIONS:
            # QEMU accepts its options with two dashes as well
            argv = argv[:i] + [arg[1:]] + argv[i + 1:]
            continue
        elif arg == "-kernel":
            out.kernel = value(arg)
        elif arg == "-m":
            memory = parse_memory(value(arg))
        elif arg == "-device":
            devices.append(value(arg))
        elif arg == "-drive":
            drive = parse_drive(value(arg))
            if drive.id in out.drives:
                raise _usage_error(f"id={drive.id}: duplicate drive id", where=f"-drive {drive.text}")
            out.drives[drive.id] = drive
        elif arg == "-object":
            _add_backend(out.rngs, parse_object(value(arg)), "object")
        elif arg == "-netdev":
            _add_backend(out.netdevs, parse_netdev(value(arg)), "netdev")
        elif arg == "-global":
            out.globals.append(parse_global(value(arg)))
        elif arg in ("-machine", "-M"):
            parse_machine(value(arg))
        elif arg == "-append":
            out.append = value(arg)
        elif arg == "-initrd":
            out.initrd = value(arg)
        elif arg == "-smp":
            text = value(arg)
            first = text.split(",")[0]
            first = first[5:] if first.startswith("cpus=") else first
            try:
                out.smp = int(first)
            except ValueError:
                raise _usage_error(f"invalid -smp {text!r}") from None
            if out.smp != 1:
                raise _usage_error("only one CPU is emulated (-smp 1)", where="-smp")
        elif arg == "-cpu":
            text = value(arg)
            if text != "qemu":
                out.warnings.append(f"-cpu {text}: the CPU always reports QEMU 7.2's "
                                    "'qemu' model here (STIDP, STFL, STFLE)")
        elif arg in IGNORED_WITH_VALUE:
            value(arg)
        elif arg in IGNORED_FLAGS:
            if arg == "-nodefaults":
                nodefaults = True
        elif arg.startswith("-"):
            raise _usage_error(f"unsupported option {arg} (supported: {', '.join(QEMU_OPTIONS)}, "
                               f"{', '.join(OWN_WITH_VALUE)}; ignored: "
                               f"{', '.join(sorted([*IGNORED_FLAGS, *IGNORED_WITH_VALUE]))})")
        else:
            raise _usage_error(f"unexpected argument {arg!r}")
        i += 1
    if out.help:
        return out
    if out.kernel is None:
        raise _usage_error("no -kernel PROG.elf given")
    devices = _resolve_devices(devices, out, out.globals)
    zpci_defaults = _apply_globals("zpci", [], out.globals)
    functions, console_dev = build_functions(devices, out.drives, zpci_defaults)
    # Without -nodefaults, -nographic puts the default console on the SCLP;
    # with it, only an explicit sclpconsole device prints anything.
    out.console = console_dev or not nodefaults
    out.device_strings = [_with_drive(text, out.drives) for text in devices]
    out.config = MachineConfig(memory=memory, functions=functions)
    return out


def _with_drive(text: str, drives: dict[str, DriveSpec]) -> str:
    """A -device string that names a drive, with the drive's backend spelled out.

    The boot command builds each device from its string alone (one-line
    errors per -device), so the string carries what the drive id stands for.
    """
    kind, props = split_device(text)
    drive = next((drives[v] for k, v in props if k == "drive" and v in drives), None)
    if drive is None:
        return text
    return _device_text(kind, [*props, *drive.device_props()])


def _set_own(out: BootArgs, key: str, val: str) -> None:
    attr = OWN_WITH_VALUE[key]
    if getattr(out, attr) is not None:      # the last would win silently
        raise _usage_error(f"{key} given more than once")
    if attr in OWN_COUNTS:
        try:
            # Decimal, not float: "1e400" must be too large, not infinity
            n = Decimal(val) if re.fullmatch(r"[0-9.eE+]+", val) else int(val, 0)
        except (ValueError, InvalidOperation):
            raise _usage_error(f"{key} wants a number, not {val!r}") from None
        if n > MAX_INSNS_LIMIT:
            raise _usage_error(f"{key} {val} is more than {MAX_INSNS_LIMIT}")
        if n != int(n):                     # a count: 1.5 would silently be 1
            raise _usage_error(f"{key} wants a whole number, not {val!r}")
        n = int(n)
        if n <= 0:
            raise _usage_error(f"{key} must be positive")
        setattr(out, attr, n)
    else:
        setattr(out, attr, val)


def usage() -> str:
    """``zpci-emu boot --help``: built from the tables the parser and the model use."""
    from emulator.cpu.machine import DEFAULT_MAX_CONSOLE, DEFAULT_MAX_INSNS
    from firmware_model.devices import DEVICE_KINDS
    from firmware_model.policy import POLICY_NAMES

    lines = [
        "usage: zpci-emu boot -kernel PROG.elf [QEMU options] [--policy NAME] [--max-insns N]",
        "                     [--max-console N] [--stats FILE] [--trace FILE]",
        "",
        "Runs a bare-metal s390x guest the way qemu-system-s390x -kernel does; the guest's",
        "SCLP console goes to stdout.  Exit status: 0 when the guest quiesces (disabled wait",
        "at an address ending in 0xfff), 1 for any other stop, 2 for bad usage.",
        "",
        "QEMU options with their QEMU meaning (also spelled with two dashes):",
    ]
    lines += _option_lines(QEMU_OPTIONS.items(), lambda v: f"{v[0]}: {v[1]}")
    lines += ["", "Device models (-device KIND,PROP=V,...; a property that is not modelled is refused):"]
    lines += _option_lines(((k, d.help) for k, d in DEVICE_KINDS.items() if k != "memdev"), str)
    lines += ["", "QEMU options accepted without effect here:"]
    lines += _option_lines([*IGNORED_WITH_VALUE.items(), *IGNORED_FLAGS.items()], str)
    lines += [
        "",
        "zpci-emu options:",
        f"  --policy NAME    interpretation policy: {', '.join(POLICY_NAMES)} "
        f"(default: {DEFAULT_POLICY})",
        f"  --max-insns N    stop after N guest instructions (default: {DEFAULT_MAX_INSNS})",
        f"  --max-console N  stop once the guest wrote N bytes to its console "
        f"(default: {DEFAULT_MAX_CONSOLE})",
        "  --stats FILE     write instruction counts and every policy's outcomes as JSON",
        "  --trace FILE     record the run in the trace format (traces/FORMAT.md; a kernel's:",
        "                   its zPCI events only, as capture --engine native records them)",
        "",
    ]
    return "\n".join(lines)


def _option_lines(items, describe) -> list[str]:
    import textwrap
    out = []
    for name, what in items:
        out += textwrap.wrap(f"{name}  {describe(what)}", width=92, initial_indent="  ",
                             subsequent_indent="      ")
    return out
