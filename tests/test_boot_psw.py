"""PSWs with odd or invalid addresses and masks, and LPSW, against QEMU 7.2 line by line.

benchmarks/guests/pswprobe.c prints one line per case: branches (BR, BASR,
BC) to an odd address, odd or invalid SVC-new and external-new PSWs, LPSWE of
PSWs with invalid mask bits, STOSM setting bit 0, LPSW (31-bit, 24-bit, odd address, bit 12
clear) and ends with LPSW of a disabled-wait PSW.  Where QEMU 7.2 does not do
what the architecture says, the model follows the architecture
(docs/deviations.md, "Odd instruction addresses after a branch or an
interruption", "Invalid PSWs loaded by an interruption, LPSW or LPSWE",
"LPSW in QEMU 7.2"): QEMU's line is checked to be what that section says
first, then rewritten to the architecture's, and the whole transcript must
then be equal.
"""
import pytest

from _helpers import emulate, guest_build
from conftest import needs_cross, needs_qemu
from emulator.capture.qemu import run_qemu

SOURCES = ["pswprobe_start.S", "pswprobe.c"]

# QEMU 7.2's line -> the architecture's (and the model's).
# Odd address: QEMU runs the zeros there (operation exception, ILC 2), the
# architecture gives a specification exception, ILC 2, same old PSW.
ODD = {
    f"{tag} pgm=00020001 {rest}": f"{tag} pgm=00020006 {rest}"
    for tag, rest in (
        ("BR_ODD", "old_mask=0000000180000000 old_addr_delta=0003"),
        ("BASR_ODD", "old_mask=0000200180000000 old_addr_delta=0005 link_delta=0002"),
        ("BC_ODD", "old_mask=0000200180000000 old_addr_delta=0007"),
        ("SVC_NEW_ODD", "old_mask=0000000180000000 old_addr_delta=0003 svc_old_delta=0002"),
        ("EXT_NEW_ODD", "old_mask=0000000180000000 old_addr_delta=0003 ext_old_delta=0004 "
                        "ext_code=2401"),
    )
}
# Invalid mask: QEMU takes the PSW as valid and runs the zeros at its address;
# the architecture gives an early specification exception, ILC 0, the old PSW
# being the invalid one as loaded.
INVALID = {
    f"{tag} pgm=00020001 old_mask={mask} old_addr_delta=0002":
        f"{tag} pgm=00000006 old_mask={mask} old_addr_delta=0000"
    for tag, mask in (
        ("SVC_NEW_BIT0", "8000000180000000"), ("SVC_NEW_BIT12", "0008000180000000"),
        ("SVC_NEW_EA_ONLY", "0000000100000000"), ("LPSWE_BIT0", "8000000180000000"),
        ("LPSWE_BIT12", "0008000180000000"), ("LPSWE_EA_ONLY", "0000000100000000"),
    )
}
# STOSM 0x80 (then STNSM 0x7f, then 4 zero bytes): QEMU keeps bit 0 in the
# PSW and runs on to the zeros; the architecture completes the STOSM and
# gives an early specification exception, ILC 2, the old PSW with bit 0.
STOSM = {
    "STOSM_BIT0 pgm=00020001 old_mask=0000200180000000 old_addr_delta=000a":
        "STOSM_BIT0 pgm=00040006 old_mask=8000200180000000 old_addr_delta=0004",
}
# LPSW: QEMU 7.2 makes the mask word bits 0-31 of the PSW and the whole
# second word its address, so bit 32 (BA) never reaches the mask (31-bit
# becomes 24-bit mode), bit 12 stays in the mask, and bit 12 clear is not
# checked; the architecture converts the short PSW and checks bit 12 before
# loading (a suppressing specification exception, ILC 2).
LPSW = {
    "LPSW_31 cc=2 link_delta=00000000": "LPSW_31 cc=2 link_delta=80000000",
    "LPSW_ODD pgm=00020001 old_mask=0008000000000000 old_addr_delta=0003":
        "LPSW_ODD pgm=00020006 old_mask=0000000080000000 old_addr_delta=0003",
    "LPSW_NO_BIT12 cc=2 link_delta=00000000":
        "LPSW_NO_BIT12 pgm=00040006 old_mask=0000100180000000 old_addr_delta=0004",
}
SAME = ["LPSW_24 cc=1 link_delta=00000000", "PSWPROBE done"]


def normalise(qemu_out: bytes) -> bytes:
    """QEMU 7.2's transcript with each deviating line as the architecture has it."""
    lines = qemu_out.decode("ascii").split("\n")
    for table in (ODD, INVALID, STOSM, LPSW):
        for q, arch in table.items():
            assert lines.count(q) == 1, f"QEMU no longer prints {q!r}"
            lines[lines.index(q)] = arch
    return "\n".join(lines).encode("ascii")


@pytest.fixture(scope="module")
def pswprobe(tmp_path_factory):
    return guest_build.build(tmp_path_factory.mktemp("pswprobe"), "pswprobe", SOURCES)


@needs_cross
@needs_qemu
def test_psw_cases_match_qemu_once_normalised(pswprobe):
    q = run_qemu(pswprobe, [], timeout=60)
    assert q.exit_code == 0 and not q.timed_out      # LPSW's disabled wait quiesces QEMU too
    result, out = emulate(pswprobe)
    assert result.exit_code == 0, result.message
    assert out == normalise(q.stdout)
    for line in SAME:
        assert line.encode() + b"\n" in out


@needs_cross
def test_psw_cases_as_the_architecture_has_them(pswprobe):
    """Without QEMU: every line is the architecture's, and LPSW ended the run."""
    result, out = emulate(pswprobe)
    assert result.exit_code == 0, result.message
    expected = [*ODD.values(), *INVALID.values(), *STOSM.values(), *LPSW.values(), *SAME]
    got = out.decode().splitlines()
    assert sorted(got) == sorted(expected)
    # 5 odd addresses, 7 invalid PSWs, LPSW's odd address and bit 12; nothing
    # ran at an odd address or an invalid PSW's (no operation exception)
    assert result.stats["program_interruptions"] == {"0x06": 14}
    assert result.stats["privileged"]["LPSW"] == 5       # 4 cases and the final wait


@needs_cross
@needs_qemu
def test_lpsw_disabled_wait_elsewhere(tmp_path):
    """LPSW of a disabled wait not at ...fff: QEMU 7.2 exits 0 (its default panic
    action); zpci-emu reports the wait and exits 1, as for LPSWE (README)."""
    elf = guest_build.build(tmp_path, "pswprobe", SOURCES, {"WAIT_ADDR": "0x1234"})
    q = run_qemu(elf, [], timeout=60)
    assert q.exit_code == 0 and not q.timed_out and q.stdout.endswith(b"PSWPROBE done\n")
    result, out = emulate(elf)
    assert out.endswith(b"PSWPROBE done\n")
    assert result.exit_code == 1
    assert result.message == ("guest entered a disabled wait: PSW 0002000000000000 "
                              "0000000000001234")
