"""Decider's cache: one shared DecisionSet per instruction and tuple of reasons."""
from firmware_model import insns
from firmware_model.outcome import Route
from firmware_model.policy import Decider, FnView, IoatPath, Reason

PCILG = insns.BY_MNEMONIC["PCILG"].index
RPCIT = insns.BY_MNEMONIC["RPCIT"].index
CLP = insns.BY_MNEMONIC["CLP"].index
VM, GISA = 1, 0xF00100


def test_equal_reasons_share_one_decision_set():
    dec = Decider("ioat-assist")
    a = dec.decisions(PCILG, 0x80000001, True, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9D2, 0)
    # another handle, another (equal) view, another IOAT path: the load/store reason is the same
    b = dec.decisions(PCILG, 0x80000002, True, FnView(GISA, VM, IoatPath.NONE), VM, GISA, 0xB9D2, 0)
    assert a is b and a.by_policy["linux-6.0"].reason == Reason.INTERPRETED.value
    # same reasons, other instruction encoding: its own set (the intercept carries IPA/IPB)
    c = dec.decisions(PCILG, 0x80000001, True, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9D2, 1 << 16)
    assert c is not a and c.by_policy["intercept-all"].intercept.ipb == 1 << 16
    # a reason differs: another set
    d = dec.decisions(PCILG, 0x80000001, False, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9D2, 0)
    assert d is not a and d.by_policy["linux-6.0"].reason == "no-lsi"
    assert {s.key.index for s in (a, c, d)} == {PCILG}


def test_rpcit_sets_differ_by_each_partys_reason():
    dec = Decider("firmware-rpcit")
    kvm = dec.decisions(RPCIT, 0x80000001, True, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9D3, 0)
    assert kvm.by_policy["ioat-assist"].route is Route.KVM
    assert kvm.by_policy["firmware-rpcit"].route is Route.FIRMWARE
    assert kvm.by_policy["firmware-rpcit"].intercept is None
    # LSI matters to the firmware's check only
    nolsi = dec.decisions(RPCIT, 0x80000001, False, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9D3, 0)
    assert nolsi is not kvm
    assert nolsi.by_policy["ioat-assist"].route is Route.KVM
    assert (nolsi.by_policy["firmware-rpcit"].route, nolsi.by_policy["firmware-rpcit"].reason) == (
        Route.USERSPACE, "no-lsi")
    user = dec.decisions(RPCIT, 0x80000001, True, FnView(GISA, VM, IoatPath.USERSPACE), VM, GISA,
                         0xB9D3, 0)
    assert {p: d.reason for p, d in user.by_policy.items()} == {
        "intercept-all": "policy", "linux-6.0": "policy", "ioat-assist": "ioat-userspace",
        "firmware-rpcit": "ioat-userspace"}
    # handle-free instructions: the handle and the view do not matter
    assert dec.decisions(CLP, 0, False, None, VM, GISA, 0xB9A0, 0x00200000) is dec.decisions(
        CLP, 0x80000001, True, FnView(GISA, VM, IoatPath.KVM), VM, GISA, 0xB9A0, 0x00200000)
