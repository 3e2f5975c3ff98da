"""The zPCI bus: QEMU's fid/uid/index allocation, lookups, SCLP configure, dispatch."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from test_semantics_common import Probe

from firmware_model.arch import FH_SHM_VFIO, FnState, Pgm
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.devices.memdev import MemDevice
from firmware_model.function import ConfigError, ZpciBus
from firmware_model.guest import SimpleGuest
from firmware_model.insns import TABLE, Decoded
from firmware_model.userspace import UserspaceHandler


def test_from_config_plugs_in_order_with_auto_and_explicit_ids():
    made = []

    def factory(kind, props):
        made.append((kind, props))
        return MemDevice.from_props(props)

    cfg = MachineConfig(functions=(
        FunctionSpec("memdev", (("shape", "virtio-rng"),), fid=1, uid=1, target="a"),
        FunctionSpec("memdev"),
        FunctionSpec("memdev", uid=7),
        FunctionSpec("memdev", fid=0x10),
    ))
    bus = ZpciBus.from_config(cfg, factory)
    assert made[0] == ("memdev", (("shape", "virtio-rng"),)) and len(made) == 4
    assert [(f.fid, f.uid, f.fh) for f in bus.functions] == [
        (1, 1, 0x20000), (0, 2, 0x20001), (2, 7, 0x20002), (0x10, 3, 0x20003)]
    assert all(f.state is FnState.DISABLED for f in bus.functions)
    assert bus.functions[0].device.device_id == 0x1005


@pytest.mark.parametrize("first,second", [
    (dict(fid=3), dict(fid=3)), (dict(uid=3), dict(uid=3)),
    (dict(target="x"), dict(target="x")), (dict(fid=0), dict(fid=None, uid=0x10000))])
def test_conflicting_ids_are_refused_like_qemu(first, second):
    bus = ZpciBus()
    bus.plug(MemDevice(), **first)
    with pytest.raises(ConfigError):
        bus.plug(MemDevice(), **second)


def test_lookup_by_full_handle_and_shm_bits():
    bus = ZpciBus()
    a = bus.plug(MemDevice())
    b = bus.plug(MemDevice(), shm=FH_SHM_VFIO)
    assert b.fh == 0x00010001
    assert bus.find_by_fh(0x00010001) is b and bus.find_by_fh(0x00020001) is None
    assert bus.find_by_fh(0x00020000) is a and bus.find_by_fh(0x80020000) is None
    assert bus.find_by_idx(1) is b and bus.find_by_fid(1) is b and bus.find_by_uid(1) is a


@given(st.lists(st.one_of(st.none(), st.integers(0, 6)), min_size=1, max_size=6))
def test_auto_fid_is_lowest_free_at_plug_time(fids):
    bus = ZpciBus()
    used = set()
    for fid in fids:
        if fid in used:
            with pytest.raises(ConfigError):
                bus.plug(MemDevice(), fid=fid)
            continue
        fn = bus.plug(MemDevice(), fid=fid)
        want = fid if fid is not None else min(set(range(8)) - used)
        assert fn.fid == want
        used.add(want)


def test_sclp_configure_and_deconfigure():
    p = Probe()
    efh = p.enable()
    p.fn.ioat_enabled = p.fn.irq_registered = True
    assert p.bus.sclp_deconfigure(1) == 0x0020
    assert p.fn.state is FnState.STANDBY and not p.fn.ioat_enabled and not p.fn.irq_registered
    assert p.fn.fh == efh                           # QEMU leaves the handle alone
    assert p.bus.sclp_deconfigure(1) == 0x0120
    assert p.bus.sclp_configure(1) == 0x0020 and p.fn.state is FnState.DISABLED
    assert p.bus.sclp_configure(1) == 0x0120
    assert p.bus.sclp_configure(9) == 0x09F0
    p.fn.state = FnState.RESERVED
    assert p.bus.sclp_configure(1) == 0x05F0


def test_system_reset_disables_every_function():
    p = Probe()
    p.enable()
    p.bus.reset()
    assert p.fn.state is FnState.DISABLED and p.fn.fh == 0x20000


@pytest.mark.parametrize("insn", [i for i in TABLE if i.mio], ids=lambda i: i.mnemonic)
@pytest.mark.parametrize("problem", [False, True])
def test_mio_instructions_are_unknown_to_qemu(insn, problem):
    p = Probe()
    p.guest.problem_state = problem
    assert p.run(insn.mnemonic, r1=2, r2=4).pgm == Pgm.OPERATION


def test_every_row_has_a_handler_and_non_table_index_is_an_operation_exception():
    h = UserspaceHandler(ZpciBus())
    assert len(h.rows) == len(TABLE)
    assert h.execute(Decoded(index=0xFF), SimpleGuest(4096)).pgm == Pgm.OPERATION


# -- devices built from a MachineConfig -----------------------------------------

NICS = MachineConfig(functions=(FunctionSpec("virtio-net-pci"), FunctionSpec("virtio-rng-pci"),
                                FunctionSpec("virtio-net-pci")))


def test_from_config_numbers_default_macs_per_bus_as_one_qemu_process():
    bus = ZpciBus.from_config(NICS)                  # the registry's make_device
    macs = [f.device.mac.hex() for f in bus.functions if f.device.kind == "virtio-net-pci"]
    assert macs == ["525400123456", "525400123457"]
    again = ZpciBus.from_config(NICS)                # another machine counts from the start
    assert again.functions[0].device.mac.hex() == "525400123456"


def test_from_config_hands_one_context_to_a_factory_that_takes_it():
    seen = []

    def factory(kind, props, *, context):
        seen.append(context)
        context["n"] = context.get("n", 0) + 1
        return MemDevice()

    ZpciBus.from_config(NICS, factory)
    assert len(seen) == 3 and all(c is seen[0] for c in seen) and seen[0]["n"] == 3
    other = []
    ZpciBus.from_config(NICS, lambda kind, props, **kw: other.append(kw) or MemDevice())
    assert [set(kw) for kw in other] == [{"context"}] * 3 and other[0]["context"] is not seen[0]
