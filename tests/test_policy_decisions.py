"""Decisions against an independent encoding of docs/decisions.md.

The expected route and reason come from EXPECTED below, written from the
document, not from firmware_model.policy: each policy x instruction class is
an ordered list of (condition, route, reason) rows and the first row whose
condition holds decides.
"""
from hypothesis import given, strategies as st

from firmware_model import insns
from firmware_model.host import Errno, Host, ZpciOp
from firmware_model.outcome import ICPT_INSTRUCTION, Route
from firmware_model.policy import POLICY_NAMES, Decider, FnView, IoatPath, decide

ENABLE, SHM, INSTANCE, INDEX = 0x80000000, 0x00FF0000, 0x7F000000, 0x0000FFFF

# --- the independent table ---------------------------------------------------
# A world is a dict: fh, lsi, fn (None or dict gisa/owner/ioat), vm, gisa.

def _shm(w): return w["fh"] & SHM != 0
def _no_lsi(w): return not w["lsi"]
def _disabled(w): return w["fh"] & ENABLE == 0
def _unknown(w): return w["fn"] is None
def _no_gisa(w): return w["fn"]["gisa"] == 0
def _other_gisa(w): return w["fn"]["gisa"] != w["gisa"]
def _not_owner(w): return w["fn"]["owner"] != w["vm"]
def _no_ioat(w): return w["fn"]["ioat"] == "none"
def _ioat_user(w): return w["fn"]["ioat"] == "userspace"
def _always(w): return True

U, F, K = "userspace", "firmware", "kvm"
ALWAYS_USERSPACE = [(_always, U, "policy")]
FIRMWARE_LS = [(_shm, U, "shm"), (_no_lsi, U, "no-lsi"), (_disabled, U, "fh-disabled"),
               (_unknown, U, "fh-unknown"), (_no_gisa, U, "not-interp"),
               (_other_gisa, U, "gisa-mismatch"), (_always, F, "interpreted")]
KVM_RPCIT = [(_shm, U, "shm"), (_unknown, U, "fh-unknown"), (_not_owner, U, "not-owner"),
             (_no_ioat, U, "no-ioat"), (_ioat_user, U, "ioat-userspace"),
             (_always, K, "ioat-registered")]
FIRMWARE_RPCIT = FIRMWARE_LS[:-1] + [(_no_ioat, U, "no-ioat"), (_ioat_user, U, "ioat-userspace"),
                                     (_always, F, "ioat-registered")]
LS = {"PCILG", "PCISTG", "PCISTB"}

EXPECTED = {
    ("intercept-all", "LS"): ALWAYS_USERSPACE,
    ("intercept-all", "RPCIT"): ALWAYS_USERSPACE,
    ("intercept-all", "other"): ALWAYS_USERSPACE,
    ("linux-6.0", "LS"): FIRMWARE_LS,
    ("linux-6.0", "RPCIT"): ALWAYS_USERSPACE,
    ("linux-6.0", "other"): ALWAYS_USERSPACE,
    ("ioat-assist", "LS"): FIRMWARE_LS,
    ("ioat-assist", "RPCIT"): KVM_RPCIT,
    ("ioat-assist", "other"): ALWAYS_USERSPACE,
    ("firmware-rpcit", "LS"): FIRMWARE_LS,
    ("firmware-rpcit", "RPCIT"): FIRMWARE_RPCIT,
    ("firmware-rpcit", "other"): ALWAYS_USERSPACE,
}


def expected(policy, mnemonic, world):
    cls = "LS" if mnemonic in LS else "RPCIT" if mnemonic == "RPCIT" else "other"
    for cond, route, reason in EXPECTED[(policy, cls)]:
        if cond(world):
            return route, reason
    raise AssertionError("table has no default row")


def test_table_covers_every_policy():
    assert {p for p, _ in EXPECTED} == set(POLICY_NAMES)


# --- random worlds -------------------------------------------------------------

VM, GISA, OTHER_VM, OTHER_GISA = 1, 0xF00100, 2, 0xF00200

fn_records = st.fixed_dictionaries({
    "gisa": st.sampled_from([0, GISA, OTHER_GISA]),
    "owner": st.sampled_from([None, VM, OTHER_VM]),
    "ioat": st.sampled_from(["none", "userspace", "kvm"]),
})


@st.composite
def worlds(draw):
    base = draw(st.integers(0, INDEX)) | (draw(st.integers(0, 0x7F)) << 24)
    fn = draw(st.none() | fn_records)
    fh = base | ENABLE
    how = draw(st.sampled_from(["exact", "stale-instance", "disabled", "shm", "random"]))
    if how == "stale-instance":
        fh ^= draw(st.integers(1, 0x7F)) << 24       # the function then is not found
        fn = None
    elif how == "disabled":
        fh &= ~ENABLE
        fn = None                                     # host handles always carry the enable bit
    elif how == "shm":
        fh |= draw(st.sampled_from([0x00010000, 0x00020000, 0x00FF0000, 0x00400000]))
        fn = None if draw(st.booleans()) else fn
    elif how == "random":
        fh = draw(st.integers(0, 0xFFFFFFFF))
    return {"fh": fh, "lsi": draw(st.booleans()), "fn": fn, "vm": VM, "gisa": GISA}


def _view(rec):
    if rec is None:
        return None
    return FnView(rec["gisa"], rec["owner"], IoatPath(rec["ioat"]))


@given(worlds(), st.sampled_from(POLICY_NAMES), st.sampled_from([i.mnemonic for i in insns.TABLE]),
       st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF))
def test_decide_matches_table(world, policy, mnemonic, ipa, ipb):
    index = insns.BY_MNEMONIC[mnemonic].index
    d = decide(policy, index, world["fh"], world["lsi"], _view(world["fn"]), world["vm"],
               world["gisa"], ipa, ipb)
    route, reason = expected(policy, mnemonic, world)
    assert (d.route.value, d.reason) == (route, reason)
    if route == "firmware":
        assert d.intercept is None
    else:
        assert (d.intercept.icptcode, d.intercept.ipa, d.intercept.ipb) == (ICPT_INSTRUCTION, ipa, ipb)


@given(worlds(), st.sampled_from([i.mnemonic for i in insns.TABLE]), st.integers(0, 3))
def test_decider_gives_every_policy_the_table_decision(world, mnemonic, ipa):
    index = insns.BY_MNEMONIC[mnemonic].index
    dec = Decider("ioat-assist")
    for _ in range(2):      # second round comes from the cache
        got = dec.decisions(index, world["fh"], world["lsi"], _view(world["fn"]), world["vm"],
                            world["gisa"], ipa, 0).by_policy
        assert set(got) == set(POLICY_NAMES)
        for p in POLICY_NAMES:
            assert (got[p].route.value, got[p].reason) == expected(p, mnemonic, world)


# --- the same, with the inputs produced by host calls ----------------------------

ops = st.lists(st.tuples(
    st.sampled_from(["open", "close", "reg_ioat_kvm", "dereg_ioat_kvm", "reg_ioat_vfio",
                     "unplug", "destroy"]),
    st.integers(0, 1), st.integers(0, 2)), max_size=12)


@given(ops, st.integers(0, 2), st.sampled_from(["exact", "disabled", "stale"]),
       st.sampled_from([i.mnemonic for i in insns.TABLE]))
def test_decisions_follow_host_state(calls, target, handle_kind, mnemonic):
    host = Host()
    vms = [host.create_vm(), host.create_vm()]
    fns = [host.plug(0x10 + i, 0x01000000 * (i + 1) | i) for i in range(3)]
    for what, v, f in calls:
        vm, hf = vms[v], fns[f]
        if what == "open":
            host.vfio_open(vm, hf)
        elif what == "close":
            host.vfio_close(vm, hf)
        elif what == "reg_ioat_kvm":
            host.zpci_op(vm, hf.fh, ZpciOp.REG_IOAT, iota=0x8000, pba=0x1000, pal=0xFFFFF)
        elif what == "dereg_ioat_kvm":
            host.zpci_op(vm, hf.fh, ZpciOp.DEREG_IOAT)
        elif what == "reg_ioat_vfio":
            host.vfio_register_ioat(vm, hf, 0x8000, 0x1000, 0xFFFFF)
        elif what == "unplug":
            host.hot_unplug(hf)
        else:
            host.destroy_vm(vm)
    vm, hf = vms[0], fns[target]
    fh = {"exact": hf.fh, "disabled": hf.fh & ~ENABLE, "stale": hf.fh ^ 0x40000000}[handle_kind]
    # the world as the document describes it, read off the host's records
    rec = None
    if handle_kind == "exact" and hf.plugged:
        rec = {"gisa": hf.gisa, "owner": hf.owner,
               "ioat": "none" if hf.ioat is None else hf.ioat.path.value}
    world = {"fh": fh, "lsi": vm.use_zpci_interp, "fn": rec, "vm": vm.id, "gisa": vm.gisa}
    index = insns.BY_MNEMONIC[mnemonic].index
    for p in POLICY_NAMES:
        d = decide(p, index, fh, vm.lsi, host.view(fh), vm.id, vm.gisa)
        assert (d.route.value, d.reason) == expected(p, mnemonic, world)
        # the ownership leg on its own: never served outside userspace for a non-owner
        if d.route is not Route.USERSPACE:
            assert hf.owner == vm.id and hf.gisa == vm.gisa and vm.alive


def test_known_rows():
    """A few rows spelled out, so a reader sees the table at work."""
    pcilg, rpcit = insns.BY_MNEMONIC["PCILG"].index, insns.BY_MNEMONIC["RPCIT"].index
    own = FnView(GISA, VM, IoatPath.KVM)
    fh = 0x80000001
    assert decide("linux-6.0", pcilg, fh, True, own, VM, GISA).route is Route.FIRMWARE
    assert decide("linux-6.0", pcilg, fh | 0x00020000, True, own, VM, GISA).reason == "shm"
    assert decide("linux-6.0", rpcit, fh, True, own, VM, GISA).route is Route.USERSPACE
    assert decide("ioat-assist", rpcit, fh, False, own, VM, GISA).route is Route.KVM
    assert decide("firmware-rpcit", rpcit, fh, True, own, VM, GISA).route is Route.FIRMWARE
    assert decide("firmware-rpcit", rpcit, fh, False, own, VM, GISA).reason == "no-lsi"
    foreign = FnView(OTHER_GISA, OTHER_VM, IoatPath.KVM)
    assert decide("ioat-assist", rpcit, fh, True, foreign, VM, GISA).reason == "not-owner"
    assert decide("linux-6.0", pcilg, fh, True, foreign, VM, GISA).reason == "gisa-mismatch"
    assert decide("intercept-all", pcilg, fh, True, own, VM, GISA).reason == "policy"


def test_host_errors_are_values():
    host = Host()
    a, b = host.create_vm(), host.create_vm()
    hf = host.plug(1, 0x01000001)
    assert host.vfio_open(a, hf) is Errno.OK
    assert host.vfio_open(b, hf) is Errno.EBUSY
    assert host.zpci_op(b, hf.fh, ZpciOp.REG_AEN) is Errno.ENODEV
    assert host.zpci_op(a, hf.fh, ZpciOp.REG_AEN, flags=2) is Errno.EINVAL
    assert host.zpci_op(a, hf.fh, 7) is Errno.EINVAL
    assert host.zpci_op(a, hf.fh, ZpciOp.REG_AEN, flags=1) is Errno.OK
    assert hf.aen is not None and not hf.aen.assist
    assert host.vfio_close(b, hf) is Errno.EBADF
    assert host.vfio_close(a, hf) is Errno.OK
    assert hf.aen is None and hf.gisa == 0 and hf.owner is None
    assert host.zpci_op(a, hf.fh, ZpciOp.DEREG_AEN) is Errno.ENODEV


# --- every combination of the discrete inputs -----------------------------------

def _all_worlds():
    recs = [None] + [{"gisa": gi, "owner": o, "ioat": io}
                     for gi in (0, GISA, OTHER_GISA) for o in (None, VM, OTHER_VM)
                     for io in ("none", "userspace", "kvm")]
    handles = [0x80000005, 0x00000005, 0x80020005, 0x00020005, 0x80010005, 0x80FF0005]
    for fh in handles:
        for lsi in (False, True):
            for rec in recs:
                if rec is not None and not fh & ENABLE:
                    continue          # host handles carry the enable bit: a disabled one names nothing
                yield {"fh": fh, "lsi": lsi, "fn": rec, "vm": VM, "gisa": GISA}


def test_decide_matches_table_exhaustively():
    n = 0
    for world in _all_worlds():
        view = _view(world["fn"])
        for ins in insns.TABLE:
            for p in POLICY_NAMES:
                d = decide(p, ins.index, world["fh"], world["lsi"], view, VM, GISA)
                assert (d.route.value, d.reason) == expected(p, ins.mnemonic, world), (p, ins, world)
                n += 1
    assert n > 10000
