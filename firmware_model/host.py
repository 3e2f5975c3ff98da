"""The modeled host: VMs, host zPCI functions, vfio, KVM_S390_ZPCI_OP, the IOMMU domain.

Ownership follows Linux (arch/s390/kvm/pci.c, kvm-zpci-history.md 1.5/1.6):

* a function belongs to at most one VM: vfio-pci open on behalf of a VM
  associates it with that VM's KVM (kvm_s390_pci_register_kvm), which
  enables it for interpretation with that VM's GISA designation;
* KVM_S390_ZPCI_OP looks the handle up only among the calling VM's
  associated functions (-ENODEV), then re-checks the association (-EPERM);
* every DMA translation of a function lives in its host IOMMU domain, and the
  domain accepts a mapping only if it comes from the owning VM's currently
  registered guest IOAT;
* every release path (vfio close, VM destruction, hot unplug) clears
  interpretation, AEN forwarding, the IOAT registration and the domain.

Host calls return an Errno value; nothing here raises for a refused call.
"""
from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass

from firmware_model.arch import FH_MASK_ENABLE as FH_ENABLE


class IoatPath(enum.Enum):
    """Through which interface the guest's I/O translation anchor reached the host."""
    NONE = "none"
    USERSPACE = "userspace"   # QEMU shadows it itself through vfio (Linux 6.0 and before)
    KVM = "kvm"               # registered through KVM_S390_ZPCI_OP (the dropped v3/v4 IOAT assist)


@dataclass(frozen=True, slots=True)
class FnView:
    """What the firmware and KVM know about the host function a handle names."""
    gisa: int                  # GISA designation the function was enabled with; 0 = not for interpretation
    owner: int | None          # id of the VM the function is associated with (kzdev->kvm)
    ioat: IoatPath = IoatPath.NONE


class Errno(enum.IntEnum):
    OK = 0
    EPERM = 1
    ENOENT = 2
    EBADF = 9
    EBUSY = 16
    ENODEV = 19
    EINVAL = 22


class ZpciOp(enum.IntEnum):
    REG_AEN = 0       # KVM_S390_ZPCIOP_REG_AEN (Linux 6.0)
    DEREG_AEN = 1     # KVM_S390_ZPCIOP_DEREG_AEN (Linux 6.0)
    # The dropped IOAT assist (v3/v4) registered the guest IOAT through KVM;
    # upstream never numbered these, the values are the model's.
    REG_IOAT = 2
    DEREG_IOAT = 3


REGAEN_HOST = 1 << 0   # KVM_S390_ZPCIOP_REGAEN_HOST: no firmware forwarding assist

# GISA origins: 31-bit physical addresses in the real machine; any distinct
# non-zero u32 serves the model.
_GISA_BASE = 0x00F0_0000
_GISA_STRIDE = 0x100


@dataclass(frozen=True, slots=True)
class Aen:
    """A REG_AEN registration (the guest values QEMU passed; assist = GAIT gisa != 0)."""
    ibv: int
    sb: int
    noi: int
    isc: int
    sbo: int
    assist: bool


@dataclass(frozen=True, slots=True)
class Ioat:
    """A guest IOAT known to the host: the anchor, the window, how it arrived."""
    iota: int
    pba: int
    pal: int
    path: IoatPath
    vm: int
    gen: int          # distinguishes registrations, so stale mappings are recognisable


@dataclass(frozen=True, slots=True)
class Mapping:
    frame: int        # guest absolute address of the 4K frame
    writable: bool
    vm: int           # the VM whose IOAT produced it
    gen: int          # the registration it came from


class IommuDomain:
    """The host IOMMU domain of one function: the only place DMA translations live.

    map() refuses anything that does not come from the owner's current
    registration, so neither path (kernel shadowing, userspace vfio maps) can
    go around the ownership rules.
    """

    __slots__ = ("fn", "entries", "maps", "unmaps", "refused")

    def __init__(self, fn: "HostFunction"):
        self.fn = fn
        self.entries: dict[int, Mapping] = {}
        self.maps = self.unmaps = self.refused = 0

    def map(self, iova: int, frame: int, writable: bool, vm: int, gen: int) -> bool:
        ioat = self.fn.ioat
        if (ioat is None or ioat.vm != vm or ioat.gen != gen or self.fn.owner != vm
                or not ioat.pba <= iova <= ioat.pal):
            self.refused += 1
            return False
        self.entries[iova & ~0xFFF] = Mapping(frame & ~0xFFF, writable, vm, gen)
        self.maps += 1
        return True

    def unmap(self, iova: int) -> None:
        if self.entries.pop(iova & ~0xFFF, None) is not None:
            self.unmaps += 1

    def clear(self) -> None:
        self.unmaps += len(self.entries)
        self.entries.clear()

    def translate(self, iova: int, write: bool) -> int | None:
        m = self.entries.get(iova & ~0xFFF)
        if m is None or (write and not m.writable):
            return None
        return m.frame | (iova & 0xFFF)


class HostFunction:
    """A host zPCI function (zpci_dev) as the host kernel tracks it.

    ``owner``, ``gisa`` and ``ioat`` are what decisions read; changing any of
    them drops the cached FnView, so the per-instruction path reuses one.
    """

    def __init__(self, fid: int, fh: int):
        self.fid = fid
        self.fh = fh | FH_ENABLE          # the host keeps its functions enabled
        self.plugged = True
        self.vfio: int | None = None      # VM on whose behalf vfio-pci has it open
        self._owner: int | None = None    # kzdev->kvm
        self._gisa = 0                    # GISA designation it is enabled with
        self._ioat: Ioat | None = None
        self._view: FnView | None = None
        self.aen: Aen | None = None
        self.domain = IommuDomain(self)
        self.stats: Counter = Counter()

    @property
    def owner(self) -> int | None:
        return self._owner

    @owner.setter
    def owner(self, value: int | None) -> None:
        self._owner, self._view = value, None

    @property
    def gisa(self) -> int:
        return self._gisa

    @gisa.setter
    def gisa(self, value: int) -> None:
        self._gisa, self._view = value, None

    @property
    def ioat(self) -> Ioat | None:
        return self._ioat

    @ioat.setter
    def ioat(self, value: Ioat | None) -> None:
        self._ioat, self._view = value, None

    def view(self) -> FnView:
        v = self._view
        if v is None:
            v = self._view = FnView(self._gisa, self._owner,
                                    self._ioat.path if self._ioat else IoatPath.NONE)
        return v

    def __repr__(self) -> str:
        return f"HostFunction(fid={self.fid:#x} fh={self.fh:#010x} owner={self.owner} gisa={self.gisa:#x})"


class Vm:
    """A KVM guest: its GISA, its associated functions, its vCPUs' interpretation control."""

    def __init__(self, vm_id: int):
        self.id = vm_id
        self.gisa = _GISA_BASE + vm_id * _GISA_STRIDE
        self.alive = True
        self.use_zpci_interp = False      # vCPUs carry ECB2_ZPCI_LSI (and ECB3_AISI/AISII)
        self.kzdev: list[HostFunction] = []   # kvm->arch.kzdev_list
        self.stats: Counter = Counter()

    @property
    def lsi(self) -> bool:
        return self.use_zpci_interp

    def __repr__(self) -> str:
        return f"Vm({self.id}, gisa={self.gisa:#x})"


class Host:
    """One host: its functions, its VMs, and the calls userspace makes on their behalf."""

    def __init__(self, interp_allowed: bool = True):
        self.interp_allowed = interp_allowed   # kvm_s390_pci_interp_allowed()
        self.vms: list[Vm] = []
        self.functions: list[HostFunction] = []
        self.stats: Counter = Counter()
        self._gen = 0

    # --- VMs and functions --------------------------------------------------

    def create_vm(self) -> Vm:
        vm = Vm(len(self.vms) + 1)
        self.vms.append(vm)
        return vm

    def plug(self, fid: int, fh: int) -> HostFunction:
        hf = HostFunction(fid, fh)
        self.functions.append(hf)
        return hf

    def destroy_vm(self, vm: Vm) -> Errno:
        """VM teardown: the vfio fds close (kvm fd cleanup), nothing may outlive it."""
        if not vm.alive:
            return self._fail("destroy_vm", Errno.ENOENT)
        for hf in self.functions:
            if hf.vfio == vm.id:
                self._close(vm, hf)
        vm.alive = False
        vm.use_zpci_interp = False
        self.stats["destroy_vm"] += 1
        return Errno.OK

    def hot_unplug(self, hf: HostFunction) -> Errno:
        """Host removes the function: vfio releases it first (forced close)."""
        if not hf.plugged:
            return self._fail("hot_unplug", Errno.ENODEV)
        if hf.vfio is not None:
            self._close(self.vms[hf.vfio - 1], hf)
        hf.plugged = False
        self.stats["hot_unplug"] += 1
        return Errno.OK

    # --- vfio -----------------------------------------------------------------

    def vfio_open(self, vm: Vm, hf: HostFunction) -> Errno:
        """vfio-pci open_device on behalf of ``vm``: the KVM association is made here."""
        if not vm.alive:
            return self._fail("vfio_open", Errno.ENOENT)    # no kvm for the device
        if not hf.plugged:
            return self._fail("vfio_open", Errno.ENODEV)
        if hf.vfio is not None:
            return self._fail("vfio_open", Errno.EBUSY)     # vfio devices open exclusively
        rc = self._register_kvm(vm, hf)
        if rc:
            return self._fail("vfio_open", rc)
        hf.vfio = vm.id
        vm.stats["vfio_open"] += 1
        self.stats["vfio_open"] += 1
        return Errno.OK

    def vfio_close(self, vm: Vm, hf: HostFunction) -> Errno:
        if hf.vfio != vm.id:
            return self._fail("vfio_close", Errno.EBADF)
        self._close(vm, hf)
        return Errno.OK

    def _close(self, vm: Vm, hf: HostFunction) -> None:
        self._unregister_kvm(hf)
        hf.vfio = None
        # The vfio container goes away with the device: so do its mappings.
        self._drop_ioat(hf)
        vm.stats["vfio_close"] += 1
        self.stats["vfio_close"] += 1

    def _register_kvm(self, vm: Vm, hf: HostFunction) -> Errno:
        if hf.owner is not None or hf.gisa:
            return Errno.EINVAL
        if self.interp_allowed:
            # First interpreted device: every vCPU gets ECB2_ZPCI_LSI.
            vm.use_zpci_interp = True
            # Disable, re-enable with this guest's GISA designation; the host
            # re-registers its own DMA table, never the guest's.
            hf.gisa = vm.gisa
        hf.owner = vm.id
        vm.kzdev.append(hf)
        return Errno.OK

    def _unregister_kvm(self, hf: HostFunction) -> None:
        if hf.owner is None:
            return
        vm = self.vms[hf.owner - 1]
        # Forwarding must be off before interpretation is.
        hf.aen = None
        hf.gisa = 0
        vm.kzdev.remove(hf)
        hf.owner = None

    # --- KVM_S390_ZPCI_OP -------------------------------------------------------

    def _lookup(self, vm: Vm, fh: int) -> HostFunction | None:
        for hf in vm.kzdev:
            if hf.fh == fh:
                return hf
        return None

    def zpci_op(self, vm: Vm, fh: int, op: int, *, flags: int = 0, ibv: int = 0, sb: int = 0,
                noi: int = 0, isc: int = 0, sbo: int = 0, iota: int = 0, pba: int = 0,
                pal: int = 0) -> Errno:
        """The VM ioctl; ``fh`` is the host handle."""
        name = "zpci_op"
        if not vm.alive:
            return self._fail(name, Errno.ENODEV)
        hf = self._lookup(vm, fh)
        if hf is None:
            return self._fail(name, Errno.ENODEV)
        if hf.owner != vm.id:
            return self._fail(name, Errno.EPERM)
        if op == ZpciOp.REG_AEN:
            if flags & ~REGAEN_HOST:
                return self._fail(name, Errno.EINVAL)
            if not hf.gisa:
                return self._fail(name, Errno.EINVAL)       # not enabled for interpretation
            if hf.aen is not None:
                return self._fail(name, Errno.EINVAL)       # model: one registration at a time
            hf.aen = Aen(ibv, sb, noi, isc, sbo if sb else 0, not flags & REGAEN_HOST)
        elif op == ZpciOp.DEREG_AEN:
            if not hf.gisa:
                return self._fail(name, Errno.EINVAL)
            hf.aen = None                                   # already-deregistered is success
        elif op == ZpciOp.REG_IOAT:
            if not hf.gisa:
                return self._fail(name, Errno.EINVAL)
            if pba > pal or (hf.ioat is not None and hf.ioat.path is IoatPath.KVM):
                return self._fail(name, Errno.EINVAL)
            self._set_ioat(hf, vm, iota, pba, pal, IoatPath.KVM)
        elif op == ZpciOp.DEREG_IOAT:
            if hf.ioat is None or hf.ioat.path is not IoatPath.KVM:
                return self._fail(name, Errno.EINVAL)
            self._drop_ioat(hf)
        else:
            return self._fail(name, Errno.EINVAL)
        key = f"zpci_op_{ZpciOp(op).name.lower()}"
        vm.stats[key] += 1
        hf.stats[key] += 1
        self.stats[name] += 1
        return Errno.OK

    # --- the userspace IOAT path (vfio type1: QEMU shadows the guest tables itself)

    def vfio_register_ioat(self, vm: Vm, hf: HostFunction, iota: int, pba: int, pal: int) -> Errno:
        if hf.vfio != vm.id:
            return self._fail("vfio_register_ioat", Errno.EBADF)
        if pba > pal:
            return self._fail("vfio_register_ioat", Errno.EINVAL)
        if hf.ioat is not None and hf.ioat.path is IoatPath.KVM:
            return self._fail("vfio_register_ioat", Errno.EBUSY)  # KVM owns the shadow
        self._set_ioat(hf, vm, iota, pba, pal, IoatPath.USERSPACE)
        self.stats["vfio_register_ioat"] += 1
        return Errno.OK

    def vfio_deregister_ioat(self, vm: Vm, hf: HostFunction) -> Errno:
        if hf.vfio != vm.id:
            return self._fail("vfio_deregister_ioat", Errno.EBADF)
        if hf.ioat is None or hf.ioat.path is not IoatPath.USERSPACE:
            return self._fail("vfio_deregister_ioat", Errno.EINVAL)
        self._drop_ioat(hf)
        self.stats["vfio_deregister_ioat"] += 1
        return Errno.OK

    def _set_ioat(self, hf: HostFunction, vm: Vm, iota: int, pba: int, pal: int,
                  path: IoatPath) -> None:
        self._gen += 1
        hf.domain.clear()
        hf.ioat = Ioat(iota, pba, pal, path, vm.id, self._gen)

    def _drop_ioat(self, hf: HostFunction) -> None:
        hf.ioat = None
        hf.domain.clear()

    # --- what decisions see -------------------------------------------------------

    def function_by_fh(self, fh: int) -> HostFunction | None:
        """The function that holds exactly this handle (firmware's view: any VM's)."""
        for hf in self.functions:
            if hf.plugged and hf.fh == fh:
                return hf
        return None

    def view(self, fh: int) -> FnView | None:
        hf = self.function_by_fh(fh)
        return None if hf is None else hf.view()

    def _fail(self, call: str, err: Errno) -> Errno:
        self.stats[f"{call}_{err.name}"] += 1
        return err

    def snapshot_stats(self) -> dict:
        return {
            "host": dict(self.stats),
            "vms": {str(vm.id): dict(vm.stats) for vm in self.vms},
            "functions": {f"{hf.fid:#x}": dict(hf.stats, domain_maps=hf.domain.maps,
                                                 domain_unmaps=hf.domain.unmaps,
                                                 domain_refused=hf.domain.refused)
                          for hf in self.functions},
        }
