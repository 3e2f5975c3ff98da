"""Machine: construction, accounting of every policy in one run, the passthrough host records."""
import json

import pytest

from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.host import Errno
from firmware_model.machine import Machine
from firmware_model.passthrough import IommuDma, passthrough_handle
from firmware_model.outcome import ICPT_INSTRUCTION, Route
from firmware_model.policy import POLICY_NAMES, IoatPath

import test_props_world as w


def booted(policy="linux-6.0", assume="passthrough", ioat=True):
    m = w.machine(policy, assume)
    g = w.new_guest()
    for a in [("clp", "list", 0), ("clp", "enable", 0), ("clp", "enable", 1)]:
        w.perform(m, g, a)
    if ioat:
        w.perform(m, g, ("mpcifc", "enabled", 0, 4, 0, "good"))
    return m, g


def test_rejects_unknown_policy_and_assumption():
    with pytest.raises(ValueError, match="policy"):
        Machine(w.CONFIG, policy="everything-in-firmware")
    with pytest.raises(ValueError, match="assumption"):
        Machine(w.CONFIG, assume="magic")


def test_passthrough_host_records():
    m, g = booted()
    assert m.vm.use_zpci_interp
    hfs = [e.hf for e in m._hf.values()]
    assert [hf.owner for hf in hfs] == [m.vm.id, m.vm.id]
    assert all(hf.gisa == m.vm.gisa for hf in hfs)
    # the guest keeps QEMU's handles; the host's are the same without the SHM marker
    assert [fn.fh for fn in m.bus.functions] == [0x80020000, 0x80020001]
    assert [hf.fh for hf in hfs] == [0x80000000, 0x80000001]
    # the guest's MPCIFC REG IOAT reached KVM, as QEMU would pass it on under the IOAT assist
    assert hfs[0].ioat is not None and hfs[0].ioat.path is IoatPath.KVM
    assert (hfs[0].ioat.pba, hfs[0].ioat.iota) == (w.SDMA, w.RTT | 0x804)
    assert hfs[1].ioat is None
    # disabling in the guest leaves no enabled host handle to present
    w.perform(m, g, ("clp", "disable", 1))
    assert hfs[1].fh == 0x00000001 and 0x80020001 not in m._by_fh


def test_passthrough_handle_is_one_to_one():
    for fh in (0x80020005, 0x00020005, 0x80000005, 0x80010005, 0x80FF0005):
        assert passthrough_handle(passthrough_handle(fh)) == fh
    assert passthrough_handle(0x80020005) == 0x80000005
    assert passthrough_handle(0x80000005) & 0x00FF0000      # never names a host function


def test_every_policy_is_accounted_in_one_run():
    m, g = booted("ioat-assist")
    m.reset_stats()
    for a in [("pcilg", "enabled", 0, 15, 4, 0, 2)] * 3 + [("rpcit", "enabled", 0, 0, 0x2000, 2),
                                                           ("stpcifc", "enabled", 0, 0)]:
        w.perform(m, g, a)
    s = m.stats()
    json.dumps(s)                                 # JSON-able
    pol = s["policies"]
    assert pol["intercept-all"]["instructions"] == {
        "PCILG": {"userspace": 3}, "RPCIT": {"userspace": 1}, "STPCIFC": {"userspace": 1}}
    assert pol["intercept-all"]["exit_instruction"] == 5 == pol["intercept-all"]["exit_userspace"]
    assert pol["linux-6.0"]["instructions"]["PCILG"] == {"firmware": 3}
    assert pol["linux-6.0"]["exit_instruction"] == 2 and pol["linux-6.0"]["exit_userspace"] == 2
    assert pol["ioat-assist"]["instructions"]["RPCIT"] == {"kvm": 1}
    assert pol["ioat-assist"]["exit_instruction"] == 2 and pol["ioat-assist"]["exit_userspace"] == 1
    assert pol["firmware-rpcit"]["instructions"]["RPCIT"] == {"firmware": 1}
    assert pol["firmware-rpcit"]["exit_instruction"] == 1
    assert pol["linux-6.0"]["reasons"] == {"interpreted": 3, "policy": 2}
    assert s["functions"]["0x0"]["linux-6.0"] == {"firmware": 3, "userspace": 1}
    # what actually ran: the active policy's paths
    assert s["active"]["router"]["firmware"] == 3 and s["active"]["router"]["kvm_handled"] == 1
    assert s["active"]["kvm"]["instruction_rpcit"] == 1
    assert s["host"]["functions"]["0x0"]["domain_maps"] == 2
    assert s["vm"]["instructions"] == 5
    m.reset_stats()
    s = m.stats()
    assert s["vm"]["instructions"] == 0 and s["active"]["router"]["firmware"] == 0


def test_outcome_carries_intercept_and_all_decisions():
    m, g = booted("linux-6.0")
    d = w.load_store(g, "PCILG", 0x80020000, 15, 4, 0, 0)
    out = m.execute(d, g)
    assert out.decision.route is Route.FIRMWARE and out.decision.intercept is None
    assert set(out.decisions) == set(POLICY_NAMES)
    icpt = out.decisions["intercept-all"].intercept
    assert (icpt.icptcode, icpt.ipa, icpt.ipb) == (ICPT_INSTRUCTION, 0xB9D2, 0x00120000)
    again = m.execute(d, g)
    assert again.completion == out.completion and again.decisions is out.decisions


def test_as_given_keeps_every_function_emulated():
    m, g = booted("firmware-rpcit", assume="as-given")
    assert not m.host.functions and not m.vm.use_zpci_interp
    out = w.perform(m, g, ("pcilg", "enabled", 0, 15, 4, 0, 2))
    assert out[-1] == "userspace" and out[2] == 0
    assert m.stats()["policies"]["linux-6.0"]["reasons"]["shm"] >= 1


def test_kernel_declines_a_dma_budget_it_does_not_keep():
    m, g = booted("ioat-assist")
    ref, rg = booted("intercept-all")
    for mach in (m, ref):
        mach.bus.functions[0].dma_avail = 1      # a vfio DMA limit: userspace accounts it
    a = ("rpcit", "enabled", 0, 0, 0x3000, 2)
    got, want = w.perform(m, g, a), w.perform(ref, rg, a)
    assert got[:-1] == want[:-1] and got[2] == 1 and (g.gpr(1) >> 24) & 0xFF == 16
    out = m.execute(w.rpcit(g, 0x80020000, w.SDMA, 0x1000), g)
    assert out.decision.route is Route.USERSPACE and out.decision.reason == "declined"
    assert out.decisions["ioat-assist"].route is Route.KVM
    assert m.stats()["active"]["router"]["declined"] == 2


def test_host_release_after_vfio_close_stops_interpretation():
    m, g = booted("linux-6.0")
    hf, fn = (m._hf[0].hf, m._hf[0].fn)
    assert m.host.vfio_close(m.vm, hf) is Errno.OK
    assert hf.gisa == 0 and hf.ioat is None and not hf.domain.entries
    out = w.perform(m, g, ("pcilg", "enabled", 0, 15, 4, 0, 2))
    assert out[-1] == "userspace" and out[2] == 0      # same guest result, now intercepted
    assert m.stats()["policies"]["linux-6.0"]["reasons"]["not-interp"] == 1


def test_config_devices_come_from_the_registry():
    m = Machine(MachineConfig(functions=(FunctionSpec("virtio-rng-pci"), FunctionSpec("memdev"))))
    assert [fn.device.kind for fn in m.bus.functions] == ["virtio-rng-pci", "memdev"]
    assert [fn.fid for fn in m.bus.functions] == [0, 1]
    # translated DMA passes the host domain; virtio without iommu_platform bypasses zPCI
    # translation in QEMU (DirectDma) and keeps doing so
    assert [type(fn.device.dma).__name__ for fn in m.bus.functions] == ["DirectDma", "IommuDma"]
    m = Machine(MachineConfig(functions=(FunctionSpec(
        "virtio-rng-pci", (("disable-legacy", "on"), ("iommu_platform", "on"))),)))
    assert isinstance(m.bus.functions[0].device.dma, IommuDma)


def test_huge_rpcit_ranges_end_and_agree():
    """A 2^40-byte refresh over mostly invalid region entries: every path finishes and agrees."""
    results = {}
    for policy in ("intercept-all", "ioat-assist", "firmware-rpcit"):
        m, g = booted(policy)
        w.perform(m, g, ("rpcit", "enabled", 0, 0, 0x4000, 2))      # something cached first
        g.mem[w.PT:w.PT + 8] = (0x400).to_bytes(8, "big")              # page 0 now invalid
        out = m.execute(w.rpcit(g, 0x80020000, w.SDMA, 1 << 40), g)
        results[policy] = (out.completion, w.machine_state(m, g))
        assert w.domain_matches_iotlb(m)
        if policy != "intercept-all":
            assert out.decision.route is not Route.USERSPACE
    assert results["ioat-assist"] == results["intercept-all"] == results["firmware-rpcit"]
    fn_state = results["intercept-all"][1][3][0]
    assert w.SDMA not in dict((k, 0) for k, *_ in fn_state[6])           # unmapped by the refresh


def test_cffi_records_from_the_native_decoder_drive_execute():
    from emulator import decode
    from firmware_model import insns
    code = insns.encode("PCILG", r1=1, r2=2) + insns.encode("RPCIT", r1=1, r2=2)
    res = decode.decode_buffer(code, 0x1000)
    assert res.nzpci == 2
    recs = [res.records[i] for i in range(2)]
    m, g = booted("ioat-assist")
    mine = w.load_store(g, "PCILG", 0x80020000, 15, 4, 0, 0)
    assert (recs[0].ipa, recs[0].ipb) == (mine.ipa, mine.ipb)
    out = m.execute(recs[0], g)
    assert out.decision.route is Route.FIRMWARE and out.completion.cc == 0
    assert g.gpr(1) == 0xF41A0510
    w.rpcit(g, 0x80020000, w.SDMA, 0x1000)
    out = m.execute(recs[1], g)
    assert out.decision.route is Route.KVM and out.completion.cc == 0


def test_reregistration_is_a_fresh_registration():
    m, g = booted("linux-6.0")
    hf = m._hf[0].hf
    w.perform(m, g, ("rpcit", "enabled", 0, 0, 0x2000, 2))
    gen = hf.ioat.gen
    assert len(hf.domain.entries) == 2
    w.perform(m, g, ("mpcifc", "enabled", 0, 6, 0, "good"))       # REREG_IOAT, same FIB
    assert hf.ioat.gen != gen and not hf.domain.entries and not m.bus.functions[0].iotlb
    assert w.domain_matches_iotlb(m)


def test_platform_operations_keep_the_host_in_step():
    m, g = booted("ioat-assist")
    w.perform(m, g, ("rpcit", "enabled", 0, 0, 0x2000, 2))
    hf = m._hf[0].hf
    assert hf.ioat is not None and hf.domain.entries
    assert m.sclp_deconfigure(m.bus.functions[0].fid) == 0x0020
    assert hf.ioat is None and not hf.domain.entries
    m.reset()
    # function 1 was enabled: reset disables it, and the host handle follows
    assert 0x80020001 not in m._by_fh and m._hf[1].hf.fh == 0x00000001
