"""zpci-emu decode on kernel images: a compressed s390x vmlinuz is unpacked and
only the kernel's text is decoded; other compressed or foreign images are
refused with one line instead of being decoded as noise.

The last test downloads Debian's s390x kernel package into the project's
private cache (~/.cache/zpci-emu; a download made earlier is reused) and is
marked ``debian_download``: it fails, never skips, when the Debian archive
cannot be reached and nothing was downloaded before.
"""
from __future__ import annotations

import json
import lzma

import pytest

from _helpers import run_cli
from test_capture import _kallsyms_image
from emulator import kernel_image
from emulator.capture.kernel import IMAGE_BASE
from firmware_model.insns import encode

BASE = IMAGE_BASE
# text: _stext at BASE .. _etext at BASE + 0x80, with two zPCI instructions
TEXT = (b"\x07\x00" * 4 + encode("CLP", r1=2, r2=4, m3=8) + b"\x07\x00" * 2
        + encode("PCILG", r1=6, r2=8) + b"\x07\x00" * 64)[:0x80]
# data after the text that holds zPCI opcodes by accident (must not be reported)
DATA = encode("RPCIT", r1=2, r2=4) * 8


def fake_vmlinuz(payload_magic: bytes = b"") -> bytes:
    """An s390 vmlinuz in miniature: IPL PSW, decompressor text, an XZ payload."""
    syms = [(BASE, "T", "_stext"), (BASE + 0x40, "t", "do_it"), (BASE + 0x80, "T", "_etext")]
    syms += [(BASE + 0x100 + 8 * i, "d", "v%d" % i) for i in range(1000)]
    image = TEXT + DATA + _kallsyms_image(syms, BASE)
    image += b"\0" * ((1 << 20) + 4096 - len(image))        # a kernel is more than 1 MiB
    head = bytes.fromhex("0008000080000200") + b"\x40" * 56 + kernel_image.S390_BOOT_MARK
    return head + b"\0" * 32 + (payload_magic or lzma.compress(image, format=lzma.FORMAT_XZ))


def decode_json(path, *extra):
    r = run_cli("decode", "--json", *extra, path)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_vmlinuz_is_unpacked_and_only_its_text_decoded(tmp_path):
    f = tmp_path / "vmlinuz"
    f.write_bytes(fake_vmlinuz())
    got = decode_json(f)
    assert [(d["addr"], d["mnemonic"]) for d in got] == [(BASE + 8, "CLP"), (BASE + 16, "PCILG")]
    # the same file as a raw blob: compressed noise, none of those sites
    raw = decode_json(f, "--raw")
    assert {d["addr"] for d in raw}.isdisjoint({BASE + 8, BASE + 16})
    r = run_cli("decode", "--base", "0x1000", f)
    assert r.returncode != 0 and len(r.stderr.splitlines()) == 1 and "--base" in r.stderr


@pytest.mark.parametrize("make,needle", [
    (lambda: fake_vmlinuz(payload_magic=b"\x28\xb5\x2f\xfd" + b"\0" * 64), "zstd"),
    (lambda: lzma.compress(b"\x07\x00" * 1000, format=lzma.FORMAT_XZ), "xz-compressed"),
    (lambda: b"\x1f\x8b\x08" + b"\0" * 100, "gzip-compressed"),
    (lambda: b"\0" * 0x202 + b"HdrS" + b"\0" * 100, "x86"),
])
def test_other_images_are_refused_with_one_line(tmp_path, make, needle):
    f = tmp_path / "img"
    f.write_bytes(make())
    r = run_cli("decode", f)
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and needle in r.stderr, r.stderr
    assert r.stderr.startswith(f"zpci-emu: {f}: ")


def test_raw_code_that_starts_like_an_ipl_record_stays_raw(tmp_path):
    # a bare-metal image with an IPL PSW but no kernel decompressor is raw code
    blob = bytes.fromhex("0008000080010000") + encode("SIC", r1=1, r3=2)
    f = tmp_path / "blob"
    f.write_bytes(blob)
    assert kernel_image.regions(f) is None
    assert [d["mnemonic"] for d in decode_json(f)] == ["SIC"]


@pytest.mark.debian_download
def test_debian_vmlinuz_decodes_to_the_capture_sites():
    """README's example on the file a user gets from Debian: the sites capture finds."""
    from emulator.capture import linux
    kb = linux.prepare_kernel()            # downloads (or reuses) linux-image-*-s390x
    got = decode_json(kb.vmlinuz)
    assert [(d["addr"], d["mnemonic"]) for d in got] == [(s.addr, s.mnemonic) for s in kb.sites]
    assert len(got) > 10
