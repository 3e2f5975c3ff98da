"""The firmware's PCISTB checks the block the way userspace (QEMU) does.

QEMU's pcistb_service_call asks one subregion to take the whole block
(the device's optional ``bar_block_valid``) before it reads the source
operand; the firmware path must give the same answer in the same order.
A block that runs from the MSI-X table into the PBA is the case where a
per-doubleword check would accept what QEMU refuses.
"""
from firmware_model.config import FunctionSpec, MachineConfig
from firmware_model.machine import Machine
from firmware_model.outcome import Route
from firmware_model.arch import Pgm

import test_props_world as w
from test_props_transparency import SETUP, observed, run

# virtio-rng-pci with 128 vectors: MSI-X table 0x000-0x7ff, PBA 0x800-0x80f (BAR 1)
CONFIG_128 = MachineConfig(memory=w.MEM, functions=(
    FunctionSpec("virtio-rng-pci", (("vectors", "128"),)),
    FunctionSpec("memdev", (("bar0", "0x1000"), ("bar2", "0x2000"))),
))

ACROSS = ("pcistb", "enabled", 0, 1, 16, 0x7F8, w.BLOCK)          # table's last dw + PBA's first
ACROSS_NO_SOURCE = ("pcistb", "enabled", 0, 1, 16, 0x7F8, w.MEM - 8)  # source past the end of storage
IN_TABLE = ("pcistb", "enabled", 0, 1, 16, 0x7F0, w.BLOCK)        # entry 127, within the table


def _insns(trace):
    return [t for t in trace if t[0] == "insn"]


def test_block_across_table_and_pba_is_refused_on_every_path():
    actions = SETUP + [ACROSS, ACROSS_NO_SOURCE, IN_TABLE]
    ref_m, ref_g, ref_trace = run("intercept-all", actions, config=CONFIG_128)
    dev = ref_m.bus.functions[0].device
    assert dev.bar_access_valid(1, 0x7F8, 8, True) and dev.bar_access_valid(1, 0x800, 8, True)
    assert not dev.bar_block_valid(1, 0x7F8, 16)
    ref = _insns(ref_trace)[-3:]
    # userspace: operand exception, also before it would fetch a source past storage
    assert [(t[2], t[3]) for t in ref] == [(None, Pgm.OPERAND), (None, Pgm.OPERAND), (0, None)]
    for policy in ("linux-6.0", "ioat-assist", "firmware-rpcit"):
        m, g, trace = run(policy, actions, config=CONFIG_128)
        got = _insns(trace)[-3:]
        # the firmware really served them, and the guest saw what userspace gave it
        assert [t[-1] for t in got] == ["firmware"] * 3, policy
        assert observed(trace) == observed(ref_trace), policy
        assert w.machine_state(m, g) == w.machine_state(ref_m, ref_g), policy
    # the refused blocks stored nothing: entry 127's second half holds the third block's data
    table = ref_m.bus.functions[0].device.msix.table
    assert bytes(table[0x7F8:0x800]) == bytes(ref_g.mem[w.BLOCK + 8:w.BLOCK + 16])


class _NoBlockCheck:
    """A device without the optional bar_block_valid: everything else delegated."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        if name == "bar_block_valid":
            raise AttributeError(name)
        return getattr(self._inner, name)


def _enabled_machine(policy="linux-6.0"):
    m = Machine(CONFIG_128, policy=policy)
    g = w.new_guest()
    for a in SETUP:
        w.perform(m, g, a)
    return m, g


def test_firmware_asks_the_block_check_once_before_the_source():
    m, g = _enabled_machine()
    dev = m.bus.functions[0].device
    calls = []
    inner = dev.bar_block_valid

    def spy(bar, offset, length):
        calls.append((bar, offset, length))
        return inner(bar, offset, length)

    dev.bar_block_valid = spy
    out = m.execute(w.pcistb(g, 0x80020000, 1, 16, 0x7F8, w.MEM - 8), g)
    assert out.decision.route is Route.FIRMWARE
    assert (out.completion.cc, out.completion.pgm) == (None, Pgm.OPERAND)
    assert calls == [(1, 0x7F8, 16)]


def test_without_a_block_check_stores_are_checked_after_the_source_as_userspace_does():
    # device.py / docs/deviations.md: a device without bar_block_valid has each store
    # checked as it happens, after the source was fetched; the firmware must give
    # what userspace gives (it once pre-checked with bar_access_valid instead).
    steps = [
        # each doubleword alone is acceptable, the source is past storage
        ((1, 16, 0x7F8, w.MEM - 8), (None, Pgm.ADDRESSING)),
        # a doubleword past the PBA, the source past storage: the fetch fails first
        ((1, 24, 0x800, w.MEM - 8), (None, Pgm.ADDRESSING)),
        # a doubleword past the PBA, the source readable: the store is refused
        ((1, 24, 0x800, w.BLOCK), (None, Pgm.OPERAND)),
        # a block each doubleword of which is taken is stored
        ((1, 16, 0x7F0, w.BLOCK), (0, None)),
    ]
    results = {}
    for policy in ("intercept-all", "linux-6.0"):
        m, g = _enabled_machine(policy)
        fn = m.bus.functions[0]
        fn.device = _NoBlockCheck(fn.device)
        assert not hasattr(fn.device, "bar_block_valid")
        got = []
        for (bar, length, offset, src), want in steps:
            out = m.execute(w.pcistb(g, 0x80020000, bar, length, offset, src), g)
            assert out.decision.route is (Route.USERSPACE if policy == "intercept-all"
                                          else Route.FIRMWARE)
            assert (out.completion.cc, out.completion.pgm) == want, (policy, offset, src)
            got.append((out.completion, g.gprs[:]))
        assert bytes(fn.device.msix.table[0x7F0:0x800]) == bytes(g.mem[w.BLOCK:w.BLOCK + 16])
        results[policy] = (got, w.machine_state(m, g))
    assert results["linux-6.0"] == results["intercept-all"]
