"""zPCI instruction sites in guest code, found with our own decoder.

The sweep restarts at every function symbol (as with a System.map), so an
instruction-length desync after data in the text cannot carry over into
the next function.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from emulator.decode import iter_zpci
from firmware_model.insns import TABLE


@dataclass(frozen=True)
class Site:
    addr: int
    mnemonic: str
    ilen: int
    bytes: str
    r1: int
    r2: int
    r3: int
    m3: int
    m4: int
    x2: int
    b2: int
    d2: int
    func: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def _symbolize(addr: int, starts: list[tuple[int, str]]) -> str | None:
    import bisect
    i = bisect.bisect_right(starts, (addr, "\uffff")) - 1
    if i < 0:
        return None
    a, name = starts[i]
    return f"{name}+{addr - a:#x}"


def scan_regions(regions, symbols=()) -> list[Site]:
    """Sites in ``regions`` [(addr, bytes)], restarting the sweep at each of
    ``symbols`` [(addr, name)] that lies inside a region."""
    starts = sorted(set(symbols))
    out: dict[int, Site] = {}
    for base, data in regions:
        end = base + len(data)
        cuts = sorted({base} | {a for a, _ in starts if base <= a < end})
        for k, a in enumerate(cuts):
            b = cuts[k + 1] if k + 1 < len(cuts) else end
            chunk = data[a - base:b - base]
            for d in iter_zpci(chunk, a):
                ins = TABLE[d.index]
                code = chunk[d.addr - a:d.addr - a + d.ilen]
                out[d.addr] = Site(addr=d.addr, mnemonic=ins.mnemonic, ilen=d.ilen,
                                   bytes=code.hex(), r1=d.r1, r2=d.r2, r3=d.r3, m3=d.m3, m4=d.m4, x2=d.x2,
                                   b2=d.b2, d2=d.d2, func=_symbolize(d.addr, starts))
    return [out[a] for a in sorted(out)]


def scan_elf(path: str | Path) -> list[Site]:
    """Sites in the executable sections of an s390x ELF (bare-metal guests)."""
    from elftools.elf.elffile import ELFFile

    from emulator.elfio import executable_regions

    regions = [(r.addr, r.data) for r in executable_regions(path)]
    symbols = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        tab = elf.get_section_by_name(".symtab")
        if tab is not None:
            for s in tab.iter_symbols():
                if s["st_info"]["type"] == "STT_FUNC" and s.name:
                    symbols.append((s["st_value"], s.name))
    return scan_regions(regions, symbols)


def scan_kernel(img: bytes, syms, base: int) -> list[Site]:
    """Sites in a kernel image's text ranges, restarting at every T/t symbol."""
    from emulator.capture.kernel import text_ranges

    regions = [(a, img[a - base:b - base]) for a, b in text_ranges(syms)]
    symbols = [(s.addr, s.name) for s in syms if s.type in "Tt"]
    return scan_regions(regions, symbols)
