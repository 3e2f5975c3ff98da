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
from firmware_model.config import FunctionSpec, MachineConfig

USAGE_EXIT = 2

# QEMU's default RAM for the s390-ccw-virtio machine (MachineClass default).
DEFAULT_MEMORY = 128 << 20

# Options of QEMU's that take a value and change nothing we emulate.
IGNORED_WITH_VALUE = {
    "-machine", "-M", "-cpu", "-chardev", "-netdev", "-serial", "-monitor", "-display",
    "-accel", "-name", "-d", "-D", "-boot", "-rtc", "-global", "-object",
    "-vga", "-mon", "-qmp", "-action", "-uuid", "-L", "-bios",
}
IGNORED_FLAGS = {"-nographic", "-nodefaults", "-no-reboot", "-no-shutdown", "-S",
                 "-enable-kvm", "-no-user-config"}
# Devices that only concern the console or the machine; QEMU accepts them.
CONSOLE_DEVICES = {"sclpconsole", "sclplmconsole"}
ZPCI_PROPS = {"uid", "fid", "target", "id"}

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
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise _usage_error(f"file={path}: could not open: {exc.strerror or exc}",
                           where=where) from None
    if fmt is None and head == _QCOW_MAGIC:
        raise _usage_error(f"file={path}: a qcow2 image; only raw images are emulated",
                           where=where)
    if not flags["readonly"] and not flags["snapshot"] and not os.access(path, os.W_OK):
        raise _usage_error(f"file={path}: not writable (add readonly=on)", where=where)
    return DriveSpec(id=drive_id, file=path, readonly=flags["readonly"],
                     snapshot=flags["snapshot"], write_cache=_DRIVE_CACHE[cache], text=text)


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
    stats: str | None = None
    trace: str | None = None
    help: bool = False
    device_strings: list[str] = field(default_factory=list)
    drives: dict[str, DriveSpec] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


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


def build_functions(devices: list[str], drives: dict[str, DriveSpec] | None = None
                    ) -> tuple[tuple[FunctionSpec, ...], bool]:
    """FunctionSpecs in zpci plug order, as QEMU's s390 PCI host bridge makes them.

    A zpci device joins the list when it is plugged; a PCI device without one
    gets QEMU's automatic zpci device (fid and uid chosen by the bus) at its own
    position.  Returns the functions and whether an SCLP console device was
    given.  A ``drive=ID`` property must name one of ``drives``; the device
    gets the drive's backend as its x-drive-* properties.
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
            p = _Pending(fid=None, uid=None, target=dev_id, device=text)
            order.append(p)
            by_target[dev_id] = p
        p.kind = kind
        p.props = tuple(rest)
    _check_ids(order)
    # A zpci device whose target never appears stays RESERVED in QEMU: it is
    # never listed, so it is no function here.
    specs = tuple(FunctionSpec(kind=p.kind, props=p.props, fid=p.fid, uid=p.uid, target=p.target)
                  for p in order if p.kind is not None)
    return specs, console


def _check_ids(order: list[_Pending]) -> None:
    """QEMU's uid/fid rules in plug order, so a clash names its -device string.

    A zpci device without uid (or fid) takes the lowest free one when it is
    plugged (uids from 1, fids from 0); a given one must still be free then.
    """
    uids: set[int] = set()
    fids: set[int] = set()
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


# the instruction counter of cbits/trap.c is a uint64_t
MAX_INSNS_LIMIT = (1 << 64) - 1

OWN_WITH_VALUE = {"--policy": "policy", "--max-insns": "max_insns", "--stats": "stats",
                  "--trace": "trace"}


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
        elif arg.startswith("--") and arg[1:] in ("-kernel", "-m", "-device", "-drive", "-append",
                                                  "-smp", "-initrd"):
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
        elif arg in IGNORED_WITH_VALUE:
            text = value(arg)
            if arg == "-cpu" and text.split(",")[0] != "qemu":
                out.warnings.append(f"-cpu {text}: the CPU always reports QEMU 7.2's "
                                    "'qemu' model here (STIDP, STFL, STFLE)")
        elif arg in IGNORED_FLAGS:
            if arg == "-nodefaults":
                nodefaults = True
        elif arg.startswith("-"):
            raise _usage_error(f"unsupported option {arg} (supported: -kernel, -m, -device, -drive, "
                               f"-append, -initrd, -smp 1, {', '.join(OWN_WITH_VALUE)}; ignored: "
                               f"{', '.join(sorted(IGNORED_FLAGS | IGNORED_WITH_VALUE))})")
        else:
            raise _usage_error(f"unexpected argument {arg!r}")
        i += 1
    if out.help:
        return out
    if out.kernel is None:
        raise _usage_error("no -kernel PROG.elf given")
    functions, console_dev = build_functions(devices, out.drives)
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
    if attr == "max_insns":
        try:
            # Decimal, not float: "1e400" must be too large, not infinity
            n = Decimal(val) if re.fullmatch(r"[0-9.eE+]+", val) else int(val, 0)
        except (ValueError, InvalidOperation):
            raise _usage_error(f"{key} wants a number, not {val!r}") from None
        if n > MAX_INSNS_LIMIT:
            raise _usage_error(f"{key} {val} is more than {MAX_INSNS_LIMIT}")
        n = int(n)
        if n <= 0:
            raise _usage_error(f"{key} must be positive")
        out.max_insns = n
    else:
        setattr(out, attr, val)


USAGE = """\
usage: zpci-emu boot -kernel PROG.elf [-m SIZE] [-device zpci,uid=U,fid=F,target=ID]
                     [-device virtio-rng-pci,id=ID] [-device virtio-net-pci,id=ID]
                     [-drive file=IMG,if=none,id=D,format=raw[,readonly=on]
                      -device virtio-blk-pci,id=ID,drive=D] [-nographic]
                     [--policy NAME] [--max-insns N] [--stats FILE] [--trace FILE]

Runs a bare-metal s390x guest the way qemu-system-s390x -kernel does; the
guest's SCLP console goes to stdout.  QEMU options that change nothing here
(-nodefaults, -machine, -cpu, -chardev, -netdev, -no-reboot, ...) are accepted
and ignored.  Exit status: 0 when the guest quiesces (disabled wait at an
address ending in 0xfff), 1 for any other stop, 2 for bad usage.
"""
