"""Interpretation is transparent: every policy leaves the guest exactly as intercept-all does.

Random sequences of zPCI instructions (valid and invalid: bad lengths, bad
address spaces, odd registers, disabled and stale handles, error states,
DMA tables with invalid, protected and zero entries, problem state) and of
device DMA run on one machine per policy; after every step the condition
code, program exception and registers, and at the end memory, function and
device state, events and interrupts must equal intercept-all's.
"""
from hypothesis import event, given, settings, strategies as st

from firmware_model.policy import POLICY_NAMES

import test_props_world as w
from test_policy_decisions import expected

HANDLE_REG = {"PCILG": "r2", "PCISTG": "r2", "PCISTB": "r1", "RPCIT": "r1"}


def checked(m):
    """Wrap m.execute: every policy's decision must be the table's for the host records."""
    inner = m.execute

    def execute(d, g):
        mn = d.insn.mnemonic
        fh = g.gpr(getattr(d, HANDLE_REG.get(mn, "r1"))) >> 32
        pfh = fh ^ w.EMUL if fh & 0x00FF0000 in (0, w.EMUL) else fh      # decisions.md: the swap
        rec = None
        for hf in m.host.functions:
            if hf.plugged and hf.fh == pfh:
                rec = {"gisa": hf.gisa, "owner": hf.owner,
                       "ioat": "none" if hf.ioat is None else hf.ioat.path.value}
        world = {"fh": pfh, "lsi": m.vm.use_zpci_interp, "fn": rec, "vm": m.vm.id,
                 "gisa": m.vm.gisa}
        out = inner(d, g)
        for p, dec in out.decisions.items():
            assert (dec.route.value, dec.reason) == expected(p, mn, world), (p, mn, world)
        return out

    m.execute = execute
    return m

SETUP = [("clp", "list", 0), ("clp", "enable", 0), ("clp", "enable", 1)]
IOAT = [("mpcifc", "enabled", 0, 4, 0, "good")]
OTHERS = [p for p in POLICY_NAMES if p != "intercept-all"]


def run(policy, actions, assume="passthrough", config=None):
    m = w.machine(policy, assume, config)
    if assume == "passthrough":
        checked(m)
    g = w.new_guest()
    trace = []
    for a in actions:
        trace.append(w.perform(m, g, a))
        # the host domain never holds a translation the device may not use, nor lacks one
        assert assume != "passthrough" or w.domain_matches_iotlb(m), (policy, a)
    return m, g, trace


def observed(trace):
    # the route differs by design; everything else is guest-visible
    return [t[:-1] if t[0] == "insn" else t for t in trace]


@settings(max_examples=w.scaled(500))
@given(st.sampled_from([True, True, True, False]), st.lists(w.action, min_size=10, max_size=40))
def test_every_policy_is_transparent(with_ioat, actions):
    check_transparent(with_ioat, actions)


@settings(max_examples=w.scaled(150))
@given(st.sampled_from([True, True, False]), st.lists(w.action, min_size=10, max_size=40))
def test_every_policy_is_transparent_with_a_virtio_device(with_ioat, actions):
    check_transparent(with_ioat, actions, w.CONFIG_VIRTIO)


def check_transparent(with_ioat, actions, config=None):
    actions = SETUP + (IOAT if with_ioat else []) + actions
    ref_m, ref_g, ref_trace = run("intercept-all", actions, config=config)
    ref_state = w.machine_state(ref_m, ref_g)
    for policy in OTHERS:
        m, g, trace = run(policy, actions, config=config)
        assert observed(trace) == observed(ref_trace), policy
        assert w.machine_state(m, g) == ref_state, policy
        assert w.domain_matches_iotlb(m), policy
        for t in trace:
            if t[0] == "insn" and t[-1] != "userspace":
                event(f"{policy}: {t[1]} via {t[-1]} cc={t[2]} pgm={t[3]}")


@settings(max_examples=w.scaled(60))
@given(st.lists(w.action, min_size=1, max_size=20))
def test_as_given_is_intercept_all_and_userspace_only(actions):
    actions = SETUP + IOAT + actions
    ref_m, ref_g, ref_trace = run("intercept-all", actions)
    for policy in OTHERS:
        m, g, trace = run(policy, actions, assume="as-given")
        assert observed(trace) == observed(ref_trace)
        assert w.machine_state(m, g) == w.machine_state(ref_m, ref_g)
        assert all(t[-1] == "userspace" for t in trace if t[0] == "insn")


# A fixed scenario: the paths under test really are taken (so transparency above is not
# vacuous), and the guest still sees the same thing.
SCENARIO = SETUP + IOAT + [
    ("pcilg", "enabled", 0, 15, 4, 0, 2),          # config read
    ("pcistg", "enabled", 0, 4, 4, 0x14, 0x11),     # BAR4 store
    ("pcistb", "enabled", 0, 1, 32, 0, w.BLOCK),    # block store to BAR1
    ("rpcit", "enabled", 0, 0, 0x4000, 2),          # map 4 pages, one protected
    ("dma", 0, 2, True),                            # device writes through the translation
    ("dma", 0, 3, True),                            # protected page: error state
    ("pcilg", "enabled", 0, 15, 4, 0, 2),           # blocked
    ("mpcifc", "enabled", 0, 7, 0, "good"),         # reset error
    ("rpcit", "enabled", 0, 20, 0x1000, 2),         # out of range: error state
    ("pcilg", "stale", 0, 15, 4, 0, 2),
]


def test_scenario_routes_and_results():
    ref_m, ref_g, ref_trace = run("intercept-all", SCENARIO)
    routes = {}
    for policy in POLICY_NAMES:
        m, g, trace = run(policy, SCENARIO)
        assert observed(trace) == observed(ref_trace)
        assert w.machine_state(m, g) == w.machine_state(ref_m, ref_g)
        routes[policy] = [t[1] + ":" + t[-1] for t in trace if t[0] == "insn"]
    insns = routes["intercept-all"]
    assert all(r.endswith(":userspace") for r in insns)
    assert "PCILG:firmware" in routes["linux-6.0"] and "PCISTB:firmware" in routes["linux-6.0"]
    assert "RPCIT:userspace" in routes["linux-6.0"]
    assert "RPCIT:kvm" in routes["ioat-assist"]
    assert "RPCIT:firmware" in routes["firmware-rpcit"]
    # the stale handle is never interpreted
    assert routes["linux-6.0"][-1] == "PCILG:userspace"
    # what the guest saw, spelled out for the key steps
    cc = [t[2] for t in ref_trace if t[0] == "insn"]
    pcilg_blocked = cc[SCENARIO.index(("pcilg", "enabled", 0, 15, 4, 0, 2), 7) - 0]
    assert cc[3] == 0 and cc[4] == 0 and cc[5] == 0 and cc[6] == 0      # cfg, BAR4, STB, RPCIT
    assert pcilg_blocked in (0, 1)
    dma = [t for t in ref_trace if t[0] == "dma"]
    assert dma[0][1] == "None" and "protected" in dma[1][1].lower()
    assert cc[-3:] == [0, 1, 3]        # reset error cc0, out-of-range RPCIT cc1, stale handle cc3


def test_rpcit_past_a_clean_period_still_drops_translations_ahead():
    """A huge RPCIT whose tables are all invalid unmaps a page mapped 2^42 bytes ahead.

    The region-third table repeats every 2^42 bytes; after a period that maps
    nothing the rest of the range can only unmap, and every path must still
    unmap what lies ahead (QEMU walks on) and answer in bounded time.
    """
    import struct
    import time
    fh = w.handle("enabled", 0)
    far = w.SDMA + (1 << 42)
    results = {}
    for policy in POLICY_NAMES:
        m = w.machine(policy)
        if policy != "intercept-all":
            checked(m)
        g = w.new_guest()
        for a in SETUP:
            w.perform(m, g, a)
        w.fib(g, pal=w.SDMA + (1 << 56) - 1)
        assert m.execute(w.mpcifc(g, fh, 4), g).completion.cc == 0
        assert m.execute(w.rpcit(g, fh, far, 0x1000), g).completion.cc == 0
        fn = m.bus.functions[0]
        assert sorted(fn.iotlb) == [far]
        struct.pack_into(">Q", g.mem, w.RTT + 8 * ((w.SDMA >> 31) & 0x7FF), w.RTE_INVALID)
        t = time.perf_counter()
        out = m.execute(w.rpcit(g, fh, w.SDMA, 1 << 55), g)
        assert time.perf_counter() - t < 2.0, policy
        assert (out.completion.cc, out.completion.pgm) == (0, None), policy
        assert out.decision.route.value == {"ioat-assist": "kvm", "firmware-rpcit": "firmware"}.get(
            policy, "userspace"), policy
        assert fn.iotlb == {}, policy
        assert w.domain_matches_iotlb(m), policy
        # the device can no longer reach the frame through the dropped translation
        assert fn.device.dma.read(far, 8).__class__.__name__ == "DmaError", policy
        results[policy] = w.machine_state(m, g)
    for p in OTHERS:
        assert results[p] == results["intercept-all"], p


class _TablesElsewhere:
    """A vCPU's view of ``g`` under a DAT that maps the DMA tables' addresses
    to other storage (reading zeros) and everything else one to one."""

    TABLES = (w.RTT, w.PT + 0x800)

    def __init__(self, g):
        self.absolute = g

    @property
    def gprs(self):
        return self.absolute.gprs

    @property
    def mem(self):
        return self.absolute.mem

    @property
    def problem_state(self):
        return self.absolute.problem_state

    @problem_state.setter
    def problem_state(self, value):
        self.absolute.problem_state = value

    def gpr(self, r):
        return self.absolute.gpr(r)

    def set_gpr(self, r, v):
        self.absolute.set_gpr(r, v)

    def read(self, addr, size):
        lo, hi = self.TABLES
        if addr < hi and addr + size > lo:
            return bytes(size)
        return self.absolute.read(addr, size)

    def write(self, addr, data):
        return self.absolute.write(addr, data)


def test_every_policy_walks_the_dma_tables_in_absolute_storage():
    """RPCIT's walk, KVM's and the firmware's shadowing alike read the tables
    the IOTA anchors in absolute storage, not through the CPU's translation."""
    ref_m, ref_g, ref_trace = run("intercept-all", SCENARIO)
    for policy in POLICY_NAMES:
        m = w.machine(policy)
        g = w.new_guest()
        m.attach(g)
        view = _TablesElsewhere(g)
        trace = [w.perform(m, view, a) for a in SCENARIO]
        assert observed(trace) == observed(ref_trace), policy
        assert w.machine_state(m, g) == w.machine_state(ref_m, ref_g), policy
