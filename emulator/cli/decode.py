"""``zpci-emu decode FILE``: list the zPCI instructions of a raw blob or an ELF."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from emulator.decode import ADDR_LIMIT, DecodeResult, decode_buffer
from emulator.elfio import CodeRegion, executable_regions, is_elf
from emulator.errors import UserError, one_line, quote, usage_error
from emulator.io_safe import read_input
from firmware_model.insns import TABLE, Format

# Operand fields each format has, in the order the text listing prints them.
FORMAT_FIELDS = {
    Format.RRE: ("r1", "r2"),
    Format.RRF_C: ("r1", "r2", "m3", "m4"),
    Format.RSY_A: ("r1", "r3", "b2", "d2"),
    Format.RXY_A: ("r1", "x2", "b2", "d2"),
}
JSON_FIELDS = ("r1", "r2", "r3", "m3", "m4", "x2", "b2", "d2")


def register(sub) -> None:
    p = sub.add_parser(
        "decode", help="list the zPCI instructions of a raw blob or an s390x ELF",
        description="Walk FILE by instruction length and list every zPCI instruction: "
                    "address, bytes, mnemonic, operand fields. An ELF (detected by its "
                    "magic) is decoded section by section at its own addresses; a compressed "
                    "s390x kernel image (vmlinuz) is unpacked and its text decoded at the "
                    "kernel's addresses.")
    p.add_argument("file", metavar="FILE", help="raw instruction blob or s390x ELF")
    p.add_argument("--base", metavar="ADDR", default=None, type=parse_addr,
                   help="guest address of a raw blob's first byte (default 0; 0x... for hex)")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--elf", action="store_true", help="FILE must be an ELF")
    kind.add_argument("--raw", action="store_true", help="FILE is a raw blob even if it looks like an ELF or a kernel image")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--stats", action="store_true",
                   help="print the instruction total and the count per mnemonic instead of the list")
    p.set_defaults(func=run)


def parse_addr(text: str) -> int:
    """An address as the user writes it: decimal or 0x-prefixed hex, 0 <= a < 2**64."""
    try:
        value = int(text.replace("_", ""), 0)
    except ValueError:
        raise usage_error(f"not an address: {quote(text)} (use decimal or 0x-prefixed hex)",
                          where="--base") from None
    if not 0 <= value < ADDR_LIMIT:
        raise usage_error(f"{quote(text)} is outside the 64-bit address space", where="--base")
    return value


def load_regions(args) -> list[CodeRegion]:
    path = Path(args.file)
    elf = args.elf or (not args.raw and is_elf(path))
    if elf:
        if args.base is not None:
            raise usage_error("an ELF is decoded at its own addresses; drop --base or use --raw",
                              where="--base")
        return executable_regions(path)
    if not args.raw:
        from emulator import kernel_image
        kernel = kernel_image.regions(path)
        if kernel is not None:
            if args.base is not None:
                raise usage_error("a kernel image is decoded at the kernel's own addresses; "
                                  "drop --base or use --raw", where="--base")
            return kernel
    base = args.base if args.base is not None else 0
    data = read_input(path)
    if base + len(data) > ADDR_LIMIT:
        raise UserError(f"{len(data)} bytes at {base:#x} run past the 64-bit address space",
                        where="--base")
    return [CodeRegion("raw", base, data)]


def run(args) -> int:
    results = [(r, decode_buffer(r.data, r.addr)) for r in load_regions(args)]
    out = sys.stdout
    if args.stats:
        print_stats(results, args.json, out)
    else:
        for region, res in results:
            print_listing(region, res, args.json, out)
    for region, res in results:
        if res.truncated:
            print(one_line(f"zpci-emu: {args.file}: note: {region.name} ends inside an "
                           f"instruction at {res.trunc_addr:#x} ({res.trunc_bytes} bytes present)"),
                  file=sys.stderr)
    return 0


def print_listing(region: CodeRegion, res: DecodeResult, as_json: bool, out) -> None:
    data = region.data
    for i in range(len(res)):
        d = res[i]
        off = d.addr - region.addr
        raw = data[off:off + d.ilen].hex()
        ins = TABLE[d.index]
        if as_json:
            obj = {"addr": d.addr, "len": d.ilen, "mnemonic": ins.mnemonic, "bytes": raw}
            obj.update((k, getattr(d, k)) for k in JSON_FIELDS)
            out.write(json.dumps(obj) + "\n")
        else:
            fields = " ".join(f"{k}={getattr(d, k)}" for k in FORMAT_FIELDS[ins.format])
            out.write(f"{d.addr:#018x}  {raw:<12}  {ins.mnemonic:<8} {fields}\n")


def print_stats(results, as_json: bool, out) -> None:
    total = sum(res.total for _, res in results)
    counts = {ins.mnemonic: sum(res.counts[ins.index] for _, res in results) for ins in TABLE}
    truncated = [res.trunc_addr for _, res in results if res.truncated]
    if as_json:
        out.write(json.dumps({"total": total, "zpci": sum(counts.values()), "counts": counts,
                              "truncated": truncated}) + "\n")
        return
    out.write(f"instructions {total}\n")
    out.write(f"zpci         {sum(counts.values())}\n")
    for mnemonic, n in counts.items():
        out.write(f"  {mnemonic:<10} {n}\n")
