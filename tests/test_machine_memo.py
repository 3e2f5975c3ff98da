"""Machine.execute's memos never outlive what they were decided on.

The per-function memo (with its direct firmware handler and its last
Outcome), the memo for handles that name no function, and the memo for
instructions whose decisions ignore the handle must each give what a fresh
decision gives: after host changes, LSI changes, alternating completions,
and when the firmware declines after all.
"""
from firmware_model.arch import Pgm
from firmware_model.outcome import Route

import test_props_world as w
from test_machine import booted
from test_policy_decisions import expected

PCILG_CFG = ("pcilg", "enabled", 0, 15, 4, 0, 2)


def _route_reason(out, policy):
    dec = out.decisions[policy]
    return dec.route.value, dec.reason


def test_memo_follows_the_host_view_and_lsi():
    m, g = booted("linux-6.0")
    d = w.load_store(g, "PCILG", 0x80020000, 15, 4, 0, 0)
    for _ in range(2):                                # the second comes from the memo
        out = m.execute(d, g)
        assert (out.decision.route, out.decision.reason) == (Route.FIRMWARE, "interpreted")
    # LSI off (as after VM teardown): the same handle and instruction now exit
    m.vm.use_zpci_interp = False
    out = m.execute(d, g)
    assert (out.decision.route, out.decision.reason) == (Route.USERSPACE, "no-lsi")
    assert out.completion.cc == 0                     # userspace served it: same guest result
    m.vm.use_zpci_interp = True
    assert m.execute(d, g).decision.route is Route.FIRMWARE
    # the host releases the function: a new view, a new decision
    hf = m._hf[0].hf
    m.host.vfio_close(m.vm, hf)
    out = m.execute(d, g)
    assert (out.decision.route, out.decision.reason) == (Route.USERSPACE, "not-interp")
    s = m.stats()["policies"]["linux-6.0"]
    assert s["reasons"] == {"interpreted": 3, "no-lsi": 1, "not-interp": 1, "policy": 4}
    assert s["instructions"]["PCILG"] == {"firmware": 3, "userspace": 2}


def test_memoised_outcome_follows_the_completion():
    m, g = booted("linux-6.0")
    ref, rg = booted("intercept-all")
    # one instruction (one memo), the request register alternating valid and invalid lengths
    for length in (4, 3, 4, 0, 4, 4, 8, 2):
        for mach, guest in ((m, g), (ref, rg)):
            w.load_store(guest, "PCILG", 0x80020000, 15, length, 0, 0)
        d = w.decoded("PCILG", r1=1, r2=2)
        out, want = m.execute(d, g), ref.execute(d, rg)
        assert out.decision.route is Route.FIRMWARE
        assert out.completion == want.completion, length
        assert g.gprs == rg.gprs
    assert out.completion.cc == 0 and m.execute(d, g).completion.cc == 0
    w.load_store(g, "PCILG", 0x80020000, 15, 3, 0, 0)
    assert m.execute(w.decoded("PCILG", r1=1, r2=2), g).completion.pgm == Pgm.OPERAND
    assert m.stats()["active"]["firmware"]["PCILG"] == 10


def test_firmware_declining_on_the_direct_path_goes_to_userspace():
    m, g = booted("linux-6.0")
    ref, rg = booted("intercept-all")
    calls = []

    def declines(d, guest, req, found):
        calls.append(req >> 32)
        return None

    fw = m._paths[Route.FIRMWARE]
    m._paths[Route.FIRMWARE] = tuple(declines if h is not None else None for h in fw)
    m._bodies = {}          # the replaced handlers have no body to run directly
    got, want = w.perform(m, g, PCILG_CFG), w.perform(ref, rg, PCILG_CFG)
    assert got[:-1] == want[:-1] and got[-1] == "userspace"
    assert calls == [0x80020000]
    out = m.execute(w.load_store(g, "PCILG", 0x80020000, 15, 4, 0, 0), g)
    assert (out.decision.route, out.decision.reason) == (Route.USERSPACE, "declined")
    assert out.decisions["linux-6.0"].route is Route.FIRMWARE     # what the policy decided
    s = m.stats()
    assert s["active"]["router"]["declined"] == 2 and s["active"]["router"]["firmware"] == 0
    assert s["active"]["router"]["exit_userspace"] == s["active"]["router"]["exit_instruction"]
    assert "PCILG" not in s["active"]["firmware"]


def test_unnamed_handle_memo_follows_the_host_view():
    m, g = booted("ioat-assist")
    w.perform(m, g, ("clp", "disable", 0))            # the guest's handle is now 0x00020000
    hf = m._hf[0].hf

    def rpcit_disabled():
        out = m.execute(w.rpcit(g, 0x00020000, w.SDMA, 0x1000), g)
        rec = None if hf.fh != 0x00000000 else {
            "gisa": hf.gisa, "owner": hf.owner,
            "ioat": "none" if hf.ioat is None else hf.ioat.path.value}
        world = {"fh": 0x00000000, "lsi": m.vm.use_zpci_interp, "fn": rec, "vm": m.vm.id,
                 "gisa": m.vm.gisa}
        for p in out.decisions:
            assert _route_reason(out, p) == expected(p, "RPCIT", world), p
        return out

    for _ in range(2):
        out = rpcit_disabled()
        assert _route_reason(out, "ioat-assist") == ("userspace", "no-ioat")
    m.host.vfio_close(m.vm, hf)                       # same handle, the host's record changed
    out = rpcit_disabled()
    assert _route_reason(out, "ioat-assist") == ("userspace", "not-owner")
    # a handle naming nothing at all, before and after LSI goes
    for lsi in (True, False, True):
        m.vm.use_zpci_interp = lsi
        out = m.execute(w.load_store(g, "PCILG", 0x80020077, 15, 4, 0, 0), g)
        assert _route_reason(out, "linux-6.0") == ("userspace", "fh-unknown" if lsi else "no-lsi")
        assert out.completion.cc == 3


def test_handle_free_instructions_keep_their_decisions_and_accounting():
    m, g = booted("firmware-rpcit")
    m.reset_stats()
    for _ in range(3):
        out = m.execute(w.stpcifc(g, 0x80020000), g)
        assert _route_reason(out, "firmware-rpcit") == ("userspace", "policy")
        assert out.completion.cc == 0
    out = m.execute(w.sic(g, 0, 3), g)
    assert out.decision.route is Route.USERSPACE
    s = m.stats()["policies"]["firmware-rpcit"]
    assert s["instructions"] == {"STPCIFC": {"userspace": 3}, "SIC": {"userspace": 1}}
    assert s["exit_userspace"] == 4
