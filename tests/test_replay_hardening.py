"""Replay against hostile or large traces: no files opened for a header, one-line
header errors, progress on a terminal only."""
import builtins
import io
import os

import pytest

from _helpers import run_cli
from emulator.errors import UserError
from emulator.replay import config_from_header, progress, replay
from emulator.replay.machines import without_drives
from emulator.trace.format import FunctionInfo, SourceKind, StreamKind, TraceHeader
from emulator.trace.writer import TraceWriter
from test_replay_scenario import record_ops

MEM = 1 << 24


def _blk_trace(path, drive):
    """A boot trace whose command line and function list name ``drive`` as the disk image."""
    detail = (f"zpci-emu boot -kernel guest.elf -m 16M -drive file={drive},if=none,id=d0,format=raw "
              "-device zpci,uid=1,fid=1,target=b0 -device virtio-blk-pci,id=b0,drive=d0")
    fn = FunctionInfo(1, 1, "virtio-blk-pci", fhs=(0x20000,),
                      props=(("drive", "d0"), ("x-drive-file", str(drive))))
    with TraceWriter(path, TraceHeader(SourceKind.BOOT, StreamKind.FULL, MEM, (fn,), "blk", detail),
                     compress=False):
        pass
    return path


def test_fifo_named_as_drive_does_not_hang_replay(tmp_path):
    fifo = tmp_path / "disk.fifo"
    os.mkfifo(fifo)
    t = _blk_trace(tmp_path / "fifo.zpt", fifo)
    res = run_cli("replay", t, timeout=120)                # opening the FIFO would block forever
    assert res.returncode == 0, res.stderr
    assert "virtio-blk" not in res.stderr


def test_replay_opens_no_file_a_header_names(tmp_path, monkeypatch):
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 16))
    t = _blk_trace(tmp_path / "file.zpt", disk)
    opened = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *a, **k):
        opened.append(os.fspath(file) if not isinstance(file, int) else file)
        return real_open(file, *a, **k)

    def spy_os_open(file, *a, **k):
        opened.append(os.fspath(file))
        return real_os_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    (r,) = replay([t], progress=False)
    assert r.events == 0
    assert str(disk) not in opened
    assert str(t) in opened                                 # the spies did see the trace itself


def test_recorded_command_line_loses_only_its_drives():
    argv = ["-kernel", "g.elf", "-drive", "file=/x,if=none,id=d0", "--drive=file=/y,id=d1",
            "-device", "virtio-blk-pci,id=b0,drive=d0,serial=a,,b", "-m", "16M"]
    assert without_drives(argv) == ["-kernel", "g.elf", "-device", "virtio-blk-pci,id=b0,serial=a,,b",
                                     "-m", "16M"]


def test_header_config_keeps_the_recorded_devices_without_images(tmp_path):
    t = _blk_trace(tmp_path / "cfg.zpt", tmp_path / "gone.raw")
    from emulator.trace.reader import TraceReader
    with TraceReader(t) as rd:
        cfg = config_from_header(rd.header)
    (fn,) = cfg.functions
    assert fn.kind == "virtio-blk-pci" and cfg.memory == 16 << 20
    assert not any(k == "drive" or k.startswith("x-drive-") for k, _ in fn.props)


@pytest.mark.parametrize("props, what", [
    ((("vectors", "99999"),), "vectors"),
    ((("max-bytes", "-5"),), "max-bytes"),
])
def test_out_of_range_device_property_is_one_header_line(tmp_path, props, what):
    t = tmp_path / "bad.zpt"
    fn = FunctionInfo(1, 1, "virtio-rng-pci", fhs=(0x20000,), props=props)
    with TraceWriter(t, TraceHeader(SourceKind.SYNTHETIC, StreamKind.FULL, MEM, (fn,)), compress=False):
        pass
    with pytest.raises(UserError) as ei:
        replay([t], progress=False)
    assert ei.value.where == f"{t}: header" and what in ei.value.message
    res = run_cli("replay", t)
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"zpci-emu: {t}: header: ")
    assert what in res.stderr and "Traceback" not in res.stderr


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal(tmp_path, monkeypatch):
    t = tmp_path / "ops.zpt"
    n = record_ops(t, ["load", "store", "rpcit", "sic"] * 600)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)          # draw at every update
    monkeypatch.setattr(progress, "CACHED_STRIDE", 0x3F)    # updates within a small trace
    monkeypatch.setattr(progress, "FULL_STRIDE", 0x3F)
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    replay([t], progress=True)
    assert pipe.getvalue() == ""                            # not a terminal: nothing
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    for check in (False, True):
        tty.seek(0)
        tty.truncate()
        (r,) = replay([t], check=check, on_mismatch=lambda m: None)
        assert r.events == n
        out = tty.getvalue()
        frames = [f for f in out.split("\r") if f.strip()]
        assert frames and all(f.startswith("ops.zpt: ") and "events" in f for f in frames)
        # per stride, never per event
        assert len(frames) <= n // 64 + 1
        assert out.endswith("\r") and out.rsplit("\r", 2)[-2].strip() == ""   # line erased


def test_cli_in_a_pipe_prints_no_progress(tmp_path):
    t = tmp_path / "ops.zpt"
    record_ops(t, ["load", "store"] * 3000)
    res = run_cli("replay", "--check", t)
    assert res.returncode == 0 and res.stderr == ""


def test_report_shows_progress_on_a_terminal_only(tmp_path, monkeypatch):
    from emulator.report import CostModel, run_report
    t = tmp_path / "ops.zpt"
    record_ops(t, ["load", "store", "rpcit", "sic"] * 600)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    monkeypatch.setattr(progress, "CACHED_STRIDE", 0x3F)
    monkeypatch.setattr(progress, "FULL_STRIDE", 0x3F)
    for stream, shows in ((io.StringIO(), False), (_Tty(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        run_report([str(t)], None, CostModel(), printer=lambda s: None)
        assert ("ops.zpt: " in stream.getvalue()) is shows
