"""Capture a bare-metal guest ELF (traces/guests) under QEMU: seconds, no download."""
from __future__ import annotations

from pathlib import Path

from emulator.capture import runner
from emulator.capture.sites import scan_elf
from emulator.errors import UserError
from emulator.capture.qemu import base_args, programs

DEFAULT_DEVICES = ["-device", "zpci,uid=1,fid=1,target=r0", "-device", "virtio-rng-pci,id=r0"]
MEMORY_MB = 256


def devices_for(elf: Path) -> list[str]:
    """Device arguments of the guest program (programs.json), else one virtio-rng."""
    try:
        progs = programs()
    except UserError:               # no usable programs list: a guest of one's own
        progs = {}
    return list(progs.get(elf.stem, DEFAULT_DEVICES))


def qemu_args(elf: Path, devices: list[str] | None = None) -> list[str]:
    return [*base_args(str(MEMORY_MB)),
            *(devices if devices is not None else devices_for(elf)), "-kernel", str(elf)]


def capture(elf: Path, out: Path, *, jsonl: Path | None = None, timeout: float = 120,
            devices: list[str] | None = None, log=print, dma_tables: bool = True,
            progress=None) -> dict:
    runner.need_tool("qemu-system-s390x", "qemu-system-misc")
    runner.need_tool("gdb-multiarch", "gdb-multiarch")
    elf = Path(elf)
    if not elf.exists():
        raise UserError("no such file", where=str(elf))
    sites = scan_elf(elf)
    if not sites:
        raise UserError("no zPCI instruction in the executable sections", where=str(elf))
    out = Path(out)
    if jsonl is None:
        from emulator.capture.linux import default_jsonl
        jsonl = default_jsonl(out)
    jsonl = Path(jsonl)
    log(f"{elf.name}: {len(sites)} zPCI sites")
    res = runner.run(qemu_args(elf, devices), sites, jsonl, timeout=timeout,
                     memory=MEMORY_MB << 20, dma_tables=dma_tables, progress=progress)
    if res.qemu_rc != 0:
        tail = " | ".join(l for _, l in res.console[-2:])
        raise UserError(f"guest did not exit cleanly (qemu status {res.qemu_rc}): {tail}",
                        where=str(elf))
    from emulator.trace.importer import import_jsonl
    n = import_jsonl(jsonl, out, memory=MEMORY_MB << 20, workload=elf.stem)
    return {"events": n, "seconds": res.seconds, "jsonl": str(jsonl),
            "console": [l for _, l in res.console]}


def capture_native(elf: Path, out: Path, devices: list[str] | None = None) -> dict:
    """``capture --elf --engine native``: the guest under ``zpci-emu boot`` with
    the devices the QEMU capture gives it; the trace is ``boot --trace``'s
    (the full instruction stream, every store the instructions made)."""
    import io
    import shlex
    import time

    from emulator import qemu_args as qa
    from emulator.cpu import boot

    elf = Path(elf)
    argv = qemu_args(elf, devices)
    console = io.BytesIO()
    t0 = time.monotonic()
    res = boot.run(qa.parse(argv + ["--trace", str(out)]), out=console,
                   argv_text="zpci-emu boot " + shlex.join(argv))
    seconds = time.monotonic() - t0
    if res.exit_code != 0:
        raise UserError(f"guest did not exit cleanly: {res.message}", where=str(elf))
    return {"events": res.stats["zpci_instructions"], "seconds": seconds,
            "console": console.getvalue().decode("utf-8", "replace").splitlines()}
