"""The machines a trace's header describes: one per policy, devices answering from the recording."""
from __future__ import annotations

from typing import NamedTuple

from emulator.errors import UserError
from emulator.replay.standins import ReplayDevice, ReplayGuest
from emulator.trace.format import TraceHeader
from firmware_model.config import FunctionSpec, MachineConfig

# --assume: the CLI's names for Machine's ``assume`` argument.
ASSUME = {"passthrough": "passthrough", "as-recorded": "as-given"}


def config_from_header(h: TraceHeader) -> MachineConfig:
    """The machine the trace ran on.

    A boot trace's ``detail`` is its command line, which names the devices
    exactly as the recording machine built them, so it is preferred; the
    function list serves every other source (and a command line that no
    longer parses).
    """
    prefix = "zpci-emu boot "
    if h.source.value == "boot" and h.detail.startswith(prefix):
        try:
            import shlex
            from emulator import qemu_args
            cfg = qemu_args.parse(without_drives(shlex.split(h.detail[len(prefix):]))).config
        except Exception:          # noqa: BLE001 - any parse problem: use the function list
            cfg = None
        if cfg is not None and [f.fid for f in cfg.functions] == [f.fid for f in h.functions] \
                and (not h.memory or cfg.memory == h.memory):
            return cfg
    return MachineConfig(memory=h.memory or (1 << 30), functions=tuple(
        FunctionSpec(kind=f.kind, props=f.props, fid=f.fid, uid=f.uid) for f in h.functions))


_DRIVE_OPTIONS = ("-drive", "--drive")


def without_drives(argv: list[str]) -> list[str]:
    """A recorded command line without its ``-drive`` options and ``drive=`` properties.

    Parsing a ``-drive`` opens its file; a trace must not make replay open
    anything (a FIFO named there would hang it), and replay needs no image.
    """
    from emulator.qemu_args import split_device
    out: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg in _DRIVE_OPTIONS:
            next(args, None)
        elif arg.split("=", 1)[0] in _DRIVE_OPTIONS:
            pass
        elif arg in ("-device", "--device"):
            text = next(args, None)
            if text is None:
                out.append(arg)
                continue
            kind, props = split_device(text)
            out += [arg, ",".join([kind] + [f"{k}={v}".replace(",", ",,") for k, v in props
                                            if k != "drive"])]
        else:
            out.append(arg)
    return out


# The image a replayed block device reads: always a blank one, whatever the
# recording names (a Linux capture records the device's properties, not
# QEMU's -drive; a boot trace names a file replay must not open).  Its size
# only shows in the capacity a live replay would load; a capture's loads
# answer from the recording.
REPLAY_BLANK_IMAGE = 1 << 20


def _block_props(props: tuple, context: dict) -> tuple:
    """Device properties for a replay with any drive replaced by a blank in-memory image."""
    from firmware_model.devices.virtio_blk import BlockImage
    p = dict(props)
    drives = context.setdefault("drives", {})
    name = f"replay-blank-{len(drives)}"
    drives[name] = BlockImage.blank(REPLAY_BLANK_IMAGE, readonly=p.get("x-drive-readonly") == "on")
    return tuple((k, v) for k, v in props if k != "drive" and not k.startswith("x-drive-")) \
        + (("drive", name),)


def _device_factory(stand_ins: list, live: bool, ids: dict):
    """Device models for a replay: the registry's, wrapped so loads answer from the recording.

    A kind the registry does not model gets the memory-backed stand-in with
    virtio-pci's BAR layout (without the legacy BAR 0 when disable-legacy is
    on) and the PCI ids the recording listed, and is named in ``stand_ins``:
    decisions do not depend on the device, but a --check of its BAR accesses
    compares against the stand-in's access rules.  Every bundled trace has a
    model (virtio-blk-pci included, see ``_block_props``).
    """
    from firmware_model.devices import DEVICE_KINDS, make_device

    def make(kind: str, props: tuple, context: dict | None = None):
        if kind in DEVICE_KINDS:
            context = {} if context is None else context
            if kind == "virtio-blk-pci" or any(k == "drive" or k.startswith("x-drive-")
                                               for k, _ in props):
                props = _block_props(props, context)
            # one context per bus, so default MACs count up as QEMU's do
            inner = make_device(kind, props, context=context)   # bad properties: the caller's one-line error
        else:
            from firmware_model.devices.memdev import MemDevice
            stand_ins.append(kind)
            if kind.startswith("virtio"):
                shape = MemDevice.virtio_rng_shaped()
                bars = dict(shape.bars)
                if ("disable-legacy", "on") in tuple(props):
                    bars.pop(0, None)
                ven, dev = ids.get(kind, (shape.vendor_id, shape.device_id))
                inner = MemDevice(ven, dev, bars)
            else:
                inner = MemDevice()
        return ReplayDevice(inner, live and kind not in stand_ins)
    return make


class ReplayMachine(NamedTuple):
    """One policy's Machine and the replay devices on its bus (to set what a load returns)."""
    machine: object
    devices: list
    guest: object          # the ReplayGuest every event is rebuilt in; the machine's storage


def make_machine(config: MachineConfig, policy: str, assume: str, where: str, stand_ins=None,
                 live: bool = False, ids: dict | None = None,
                 memsize: int | None = None) -> ReplayMachine:
    """One policy's Machine on a bus of replay devices."""
    from firmware_model.function import ZpciBus
    from firmware_model.machine import Machine
    stand_ins = [] if stand_ins is None else stand_ins
    try:
        bus = ZpciBus.from_config(config, _device_factory(stand_ins, live, ids or {}))
        m = Machine(config, policy, assume, bus=bus)
    except (KeyError, ValueError, TypeError, OverflowError) as exc:
        # a device property out of range, an unknown kind, a duplicate fid
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise UserError(f"{msg}", where=f"{where}: header") from None
    guest = ReplayGuest(None, config.memory if memsize is None else memsize)
    m.attach(guest)
    return ReplayMachine(m, [fn.device for fn in bus.functions], guest)
