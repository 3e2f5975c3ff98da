"""Line-by-line normaliser for comparing guest console output of QEMU and zpci-emu.

The differential tests demand identical output except where docs/deviations.md
documents that QEMU 7.2 deviates from the architecture and the firmware model
deliberately does not copy it.  Each such deviation is one ``Rule`` here: it
names the deviation, the lines it applies to (a regular expression on the
line, anchored at its start) and how QEMU's line is rewritten into what the
architecture gives.  Rules only rewrite QEMU's side; the emulator's output is
compared as it is.  No line is ever dropped, so a count mismatch or any line
no rule explains still fails the comparison.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Rule:
    name: str                         # the deviation, as docs/deviations.md titles it
    pattern: re.Pattern               # which QEMU lines it concerns
    rewrite: Callable[[re.Match], str]


def _swap_val(m: re.Match) -> str:
    val = bytes.fromhex(m.group("val"))
    return m.group("head") + val[::-1].hex() + m.group("tail")


RULES: tuple[Rule, ...] = (
    # QEMU 7.2 pcistb_service_call loads each doubleword big-endian and then
    # dispatches it to the device in host byte order (no MO_BE), so on a
    # little-endian host every doubleword PCISTB stored reads back reversed
    # with PCILG.  Architecturally (and in the model) PCISTB stores bytes in
    # the order PCISTG does.  The guests print those read-backs as
    # "R PCILG_..._AFTER_STB ... val=<16 hex digits>".
    Rule("PCISTB data byte order on a little-endian host",
         re.compile(r"^(?P<head>R PCILG_\w*AFTER_STB cc=0 .* val=)(?P<val>[0-9a-f]{16})"
                    r"(?P<tail>.*)$"),
         _swap_val),
)


def normalise_qemu(text: str, rules: tuple[Rule, ...] = RULES) -> tuple[str, dict]:
    """QEMU's console text with every documented deviation undone.

    Returns the text and how many lines each rule rewrote (so tests can show
    that a rule did, or did not, fire).
    """
    counts = {r.name: 0 for r in rules}
    out = []
    for line in text.split("\n"):
        for rule in rules:
            m = rule.pattern.match(line)
            if m:
                line = rule.rewrite(m)
                counts[rule.name] += 1
                break
        out.append(line)
    return "\n".join(out), counts


def diff_lines(expected: str, got: str, limit: int = 20) -> list[str]:
    """The first differing lines, numbered, for assertion messages."""
    a, b = expected.split("\n"), got.split("\n")
    out = []
    for i in range(max(len(a), len(b))):
        x = a[i] if i < len(a) else "<missing>"
        y = b[i] if i < len(b) else "<missing>"
        if x != y:
            out.append(f"line {i + 1}: qemu {x!r} | zpci-emu {y!r}")
            if len(out) >= limit:
                break
    return out
