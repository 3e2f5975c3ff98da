"""A private apt state for Debian s390x packages.

Everything lives under the user's cache folder (``$XDG_CACHE_HOME/zpci-emu``
or ``~/.cache/zpci-emu``); the machine's own apt configuration is never
read or changed (``APT_CONFIG`` points at our own file, which sets every
``Dir::`` apt would otherwise take from /etc or /var).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from emulator.errors import UserError

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
SECURITY = "http://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
# Lists older than this are refreshed before a version is chosen.
LISTS_MAX_AGE = 24 * 3600


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "zpci-emu"


class PrivateApt:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_root() / "apt"
        self.debs = self.root / "debs"
        self.conf = self.root / "apt.conf"

    # -- set-up ---------------------------------------------------------
    def ensure_setup(self) -> None:
        if shutil.which("apt-get") is None:
            raise UserError("apt-get not found: capture needs a Debian-like host with apt")
        if not KEYRING.exists():
            raise UserError(f"{KEYRING} missing: apt-get install debian-archive-keyring")
        r = self.root
        for d in ("lists/partial", "cache/archives/partial", "etc/sources.list.d",
                  "etc/preferences.d", "debs"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "status").touch()
        (r / "etc/sources.list").write_text(
            f"deb [arch=s390x signed-by={KEYRING}] {MIRROR} {SUITE} main\n"
            f"deb [arch=s390x signed-by={KEYRING}] {SECURITY} {SUITE}-security main\n")
        self.conf.write_text("\n".join([
            'APT::Architecture "s390x";',
            'APT::Architectures { "s390x"; };',
            f'Dir::State "{r}";',
            f'Dir::State::Lists "{r}/lists";',
            f'Dir::State::status "{r}/status";',
            f'Dir::Cache "{r}/cache";',
            f'Dir::Etc::SourceList "{r}/etc/sources.list";',
            f'Dir::Etc::SourceParts "{r}/etc/sources.list.d";',
            f'Dir::Etc::Preferences "{r}/etc/preferences";',
            f'Dir::Etc::PreferencesParts "{r}/etc/preferences.d";',
            'Acquire::Retries "2";',
            'Acquire::http::Timeout "30";',
            ""]))

    def _run(self, args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = dict(os.environ, APT_CONFIG=str(self.conf), LC_ALL="C")
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)

    def _lists_fresh(self) -> bool:
        lists = list((self.root / "lists").glob("*Packages*"))
        return bool(lists) and time.time() - min(p.stat().st_mtime for p in lists) < LISTS_MAX_AGE

    def update(self, force: bool = False) -> None:
        self.ensure_setup()
        if not force and self._lists_fresh():
            return
        p = self._run(["apt-get", "-q", "update"])
        if p.returncode != 0 or "Err:" in p.stdout:
            last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["?"]
            raise UserError(f"cannot fetch the s390x package lists from deb.debian.org "
                            f"(network to the Debian archive needed): {last[0]}")

    # -- queries ----------------------------------------------------------
    def version(self, pkg: str) -> str:
        """The candidate version of ``pkg`` (UserError if the archive has none)."""
        p = self._run(["apt-cache", "show", "--no-all-versions", pkg])
        for line in p.stdout.splitlines():
            if line.startswith("Version: "):
                return line.split(None, 1)[1]
        raise UserError(f"package {pkg} not found in {SUITE} s390x "
                        f"(try another kernel ABI with --kernel-package)")

    def download(self, pkg: str) -> Path:
        """Download ``pkg`` (candidate version) once; returns the cached .deb.

        Without network, a .deb of ``pkg`` downloaded earlier is used.
        """
        try:
            self.update()
        except UserError:
            cached = sorted(self.debs.glob(f"{pkg}_*_s390x.deb"), key=lambda p: p.stat().st_mtime)
            if cached:
                return cached[-1]
            raise
        ver = self.version(pkg)
        # apt names files <pkg>_<version with ':' as %3a>_<arch>.deb
        name = f"{pkg}_{ver.replace(':', '%3a')}_s390x.deb"
        path = self.debs / name
        if path.exists() and path.stat().st_size > 0:
            return path
        p = self._run(["apt-get", "-q", "download", f"{pkg}={ver}"], cwd=self.debs)
        if p.returncode != 0 or not path.exists():
            last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["?"]
            raise UserError(f"cannot download {pkg} {ver} from deb.debian.org: {last[0]}")
        return path


def deb_version(deb: Path) -> str:
    """The version in an apt-style file name ``<pkg>_<version>_<arch>.deb``."""
    return deb.name.split("_")[1].replace("%3a", ":")


def extract_deb(deb: Path, dest: Path) -> Path:
    """``dpkg-deb -x`` into ``dest`` once (a stamp file marks completion)."""
    stamp = dest / ".extracted"
    if stamp.exists():
        return dest
    if shutil.which("dpkg-deb") is None:
        raise UserError("dpkg-deb not found: apt-get install dpkg")
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    p = subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], capture_output=True, text=True)
    if p.returncode != 0:
        raise UserError(f"cannot unpack: {p.stderr.strip()}", where=str(deb))
    stamp.touch()
    return dest
