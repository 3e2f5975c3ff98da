"""Record every zPCI instruction a guest executes; runs INSIDE gdb-multiarch.

    ZPCI_CAPTURE_CONFIG=cfg.json gdb-multiarch -nx -batch -x gdb_recorder.py

Standard library only (gdb's embedded Python has no project packages).  The
config (written by ``emulator.capture.runner``) names the gdbstub, the sites
(address, mnemonic, length, operand fields from our decoder), an optional
mark breakpoint and the output JSONL file.

At each site: read the 16 GRs and the PSW from the raw ``g`` packet, read
the memory operand, for RPCIT walk the DMA tables registered for the
function (the IOTA comes from the MPCIFC register-IOAT FIBs seen earlier),
single-step with the raw ``s`` packet (retrying when QEMU returns without
executing), read the registers and the written memory again, write one
JSON line, continue.  Pitfalls handled as linux-guest-traces.md describes:
``set endian big`` (no ELF loaded), raw packets instead of ``stepi``.

Mark breakpoint: the Linux workloads announce phases with
``kill -0 <magic + n>``; at the entry of the kill syscall (``r2`` = pt_regs)
the recorder reads the syscall's first two arguments from the saved GRs and
emits ``{"kind": "mark", "label": labels[n]}`` when they match.
"""
import json
import os
import struct
import sys
import time

import gdb  # noqa: E402  (provided by gdb)

CFG = json.load(open(os.environ["ZPCI_CAPTURE_CONFIG"]))
MEMORY = CFG.get("memory") or 0      # guest memory size: DMA tables lie below it
DMA_TABLES = CFG.get("dma_tables", True)   # off: RPCIT recorded as the doc's recipe does
MAX_STEP_TRIES = 8
FIB_LEN = 80                  # QEMU 7.2 ZpciFib (fmb_addr at +64, gd at +76)
IIB_LEN = 16
CLP_MAX = 8192
# DMA translation (region-third table designation, as Linux and QEMU use it)
ENTRY_INVALID = 0x20          # region-third and segment table entries
PTE_INVALID = 0x400
RT_ORIGIN = ~0x3FFF
ST_ORIGIN = ~0x3FFF
PT_ORIGIN = ~0x7FF
PAGE = 0x1000
MAX_DMA_ENTRIES = 1 << 16     # one RPCIT's walk; more -> recorded as truncated


def ex(cmd):
    return gdb.execute(cmd, to_string=True)


def packet(p):
    r = ex("maint packet " + p)
    i = r.find('received: "')
    return r[i + 11:r.rindex('"')] if i >= 0 else ""


def regs():
    """pswm, pswa, r0..r15 from the 'g' packet (18 big-endian doublewords first)."""
    h = packet("g")
    v = [int(h[i * 16:(i + 1) * 16], 16) for i in range(18)]
    return v[0], v[1], v[2:18]


def read(addr, size):
    if size <= 0:
        return b""
    try:
        return bytes(gdb.selected_inferior().read_memory(addr & 0xFFFFFFFFFFFFFFFF, size))
    except gdb.MemoryError:
        return None


class PhysMode:
    """QEMU's gdbstub extension: memory accesses by absolute address."""

    ok = None

    def __enter__(self):
        if PhysMode.ok is None:
            PhysMode.ok = packet("Qqemu.PhyMemMode:1") == "OK"
        elif PhysMode.ok:
            packet("Qqemu.PhyMemMode:1")
        return self

    def __exit__(self, *a):
        if PhysMode.ok:
            packet("Qqemu.PhyMemMode:0")


def ea_of(site, gr):
    base = gr[site["b2"]] if site["b2"] else 0
    index = gr[site["x2"]] if site.get("x2") else 0
    return (base + index + site["d2"]) & 0xFFFFFFFFFFFFFFFF


def operand(site, gr):
    """(operands dict, address, length) of the memory operand, or None."""
    mn = site["mnemonic"]
    ops = {k: site[k] for k in ("r1", "r2", "r3", "x2", "b2", "d2") if site.get(k) is not None}
    if mn == "CLP":
        blk = gr[site["r2"]]
        head = read(blk, 2)
        if head is None:
            return ops, None, 0
        req = struct.unpack(">H", head)[0]
        rsp = read(blk + req, 2)
        n = req + (struct.unpack(">H", rsp)[0] if rsp else 0)
        return ops, blk, min(n, CLP_MAX)
    if mn in ("MPCIFC", "STPCIFC"):
        return ops, ea_of(site, gr), FIB_LEN
    if mn == "SIC":
        return ops, ea_of(site, gr), IIB_LEN
    if mn in ("PCISTB", "PCISTBI"):
        return ops, ea_of(site, gr), min(gr[site["r1"]] & 0x1FFF, 4096)
    return ops, None, 0


WRITES_MEMORY = ("CLP", "STPCIFC")


class DmaState:
    """IOAT registrations per function handle (without the enable bit)."""

    def __init__(self):
        self.iota = {}

    def observe_mpcifc(self, r1val, fib, cc):
        if fib is None or cc != 0:
            return
        fh, oc = (r1val >> 32) & 0x7FFFFFFF, r1val & 0xFF
        if oc == 4:          # register I/O address translation parameters
            pba, pal, iota = struct.unpack_from(">QQQ", fib, 16)
            self.iota[fh] = (iota, pba, pal)
        elif oc == 5:        # deregister
            self.iota.pop(fh, None)

    def walk(self, fh, start, length):
        """Table entries a QEMU-style walk of [start, start+length) reads."""
        reg = self.iota.get(fh & 0x7FFFFFFF)
        if reg is None:
            return None, "no IOAT registered"
        iota, pba, pal = reg
        end = min(start + length, pal + 1)
        start = max(start, pba)
        seen = {}
        tables = {}

        def entry(table, idx, size):
            key = (table, size)
            if MEMORY and table + size * 8 > MEMORY:
                return None            # outside guest memory: QEMU's walk fails here too
            if key not in tables:
                data = read(table, size * 8)
                tables[key] = data
            data = tables[key]
            if data is None:
                return None
            v = struct.unpack_from(">Q", data, idx * 8)[0]
            seen[table + idx * 8] = v
            return v

        rto = iota & RT_ORIGIN
        a = start & ~(PAGE - 1)
        note = None
        with PhysMode():
            while a < end:
                if len(seen) > MAX_DMA_ENTRIES:
                    note = "walk truncated"
                    break
                rte = entry(rto, (a >> 31) & 0x7FF, 2048)
                if rte is None:
                    note = "table outside guest memory or unreadable"
                    break
                if rte & ENTRY_INVALID or rte == 0:
                    a = (a | ((1 << 31) - 1)) + 1
                    continue
                ste = entry(rte & ST_ORIGIN, (a >> 20) & 0x7FF, 2048)
                if ste is None:
                    note = "table outside guest memory or unreadable"
                    break
                if ste & ENTRY_INVALID or ste == 0:
                    a = (a | ((1 << 20) - 1)) + 1
                    continue
                pte = entry(ste & PT_ORIGIN, (a >> 12) & 0xFF, 256)
                if pte is None:
                    note = "table outside guest memory or unreadable"
                    break
                a += PAGE
        return [{"addr": "%x" % k, "value": "%x" % v} for k, v in sorted(seen.items())], note


def main():
    out = open(CFG["out"], "w")
    sites = {s["addr"]: s for s in CFG["sites"]}
    mark = CFG.get("mark")
    max_events = CFG.get("max_events") or 0
    ex("set pagination off")
    ex("set confirm off")
    ex("set architecture s390:64-bit")
    ex("set endian big")
    ex("set remotetimeout 60")
    ex("target remote " + CFG["target"])
    for a in sites:
        ex("break *0x%x" % a)
    if mark:
        ex("break *0x%x" % mark["addr"])
    dma = DmaState()
    t0 = time.time()
    n = 0
    retries = 0
    while True:
        try:
            ex("continue")
        except gdb.error:
            break                      # the target went away: QEMU exited
        try:
            pswm, pswa, gr = regs()
        except (gdb.error, ValueError):
            break
        if mark and pswa == mark["addr"]:
            # kill(pid, sig): pid in pt_regs.orig_gpr2 (gprs[2] already holds
            # -ENOSYS at syscall entry), sig in pt_regs.gprs[3]
            p = read(gr[2] + mark["pid_offset"], 8)
            q = read(gr[2] + mark["sig_offset"], 8)
            if p and q:
                pid, sig = struct.unpack(">Q", p)[0], struct.unpack(">Q", q)[0]
                k = pid - mark["magic"]
                if sig == 0 and 0 <= k < len(mark["labels"]):
                    out.write(json.dumps({"kind": "mark", "label": mark["labels"][k],
                                          "next_seq": n, "t": round(time.time() - t0, 3)}) + "\n")
                    out.flush()
                elif CFG.get("debug_marks"):
                    out.write(json.dumps({"kind": "mark_miss", "r2": "%x" % gr[2],
                                          "regs": (read(gr[2], 0xC8) or b"").hex()}) + "\n")
            continue
        site = sites.get(pswa)
        if site is None:
            continue
        ops, blk, blen = operand(site, gr)
        mb = read(blk, blen) if blk is not None else None
        tables, note = None, None
        if site["mnemonic"] == "RPCIT" and DMA_TABLES:
            fh = gr[site["r1"]] >> 32
            start, length = gr[site["r2"]], gr[site["r2"] | 1]
            tables, note = dma.walk(fh, start, length)
        tries = 0
        for tries in range(1, MAX_STEP_TRIES + 1):
            packet("s")
            ex("maint flush register-cache")
            pswm2, pswa2, gr2 = regs()
            if pswa2 != pswa or pswm2 != pswm:
                break
        retries += tries - 1
        rec = {"seq": n, "t": round(time.time() - t0, 3), "step_tries": tries,
               "insn": site["mnemonic"], "addr": "%x" % pswa, "bytes": site["bytes"],
               "func": site.get("func"),
               "gr_before": ["%x" % v for v in gr], "gr_after": ["%x" % v for v in gr2],
               "pswm_before": "%016x" % pswm, "pswm_after": "%016x" % pswm2,
               "pswa_after": "%x" % pswa2, "cc": (pswm2 >> 44) & 3, "operands": ops,
               "mem_before": None, "mem_after": None}
        if mb is not None:
            ops["blk"] = "%x" % blk
            ops["blk_len"] = "%x" % len(mb)
            rec["mem_before"] = mb.hex()
            if site["mnemonic"] in WRITES_MEMORY:
                ma = read(blk, len(mb))
                rec["mem_after"] = ma.hex() if ma is not None else None
        if pswa2 != pswa + site["ilen"]:
            # Not after the instruction: a program interruption took the PSW
            # to the program-new PSW; its code is in the lowcore (real 0x8e).
            lc = read(0x8C, 4)
            newpsw = read(0x1D0, 16)
            if lc and newpsw and struct.unpack(">Q", newpsw[8:])[0] == pswa2:
                rec["pgm"] = struct.unpack(">H", lc[2:])[0]
        if tables is not None:
            rec["dma_tables"] = tables
        if note:
            rec["dma_note"] = note
        if site["mnemonic"] == "MPCIFC":
            dma.observe_mpcifc(gr[site["r1"]], mb, rec["cc"])
        out.write(json.dumps(rec) + "\n")
        n += 1
        if n % 64 == 0:
            out.flush()
        if max_events and n >= max_events:
            break
    out.write(json.dumps({"kind": "recorder_end", "events": n, "step_retries": retries,
                          "seconds": round(time.time() - t0, 3)}) + "\n")
    out.close()
    try:
        ex("kill")
    except gdb.error:
        pass


try:
    main()
except Exception as exc:  # report and exit non-zero; gdb -batch would carry on
    sys.stderr.write("gdb_recorder: %s: %s\n" % (type(exc).__name__, exc))
    gdb.execute("quit 3")
