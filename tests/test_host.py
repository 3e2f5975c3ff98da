"""The modeled host: association at vfio open, ZPCI_OP scoping, the IOMMU domain, release paths."""
from firmware_model.arch import Pec
from firmware_model.guest import SimpleGuest
from firmware_model.host import REGAEN_HOST, Errno, Host, ZpciOp
from firmware_model.kvm import KvmZpci
from firmware_model.policy import IoatPath
from test_props_world import write_dma_tables

IOVA = 0x100000000


def tables(frame_base):
    """Page 0 of IOVA's segment -> frame_base, page 1 -> the next frame, read-only."""
    g = SimpleGuest(0x10000)
    iota = write_dma_tables(g.mem, {0: frame_base, 1: (frame_base + 0x1000) | 0x200},
                            0x4000, 0x8000, 0xC000, IOVA)
    return g, iota


def test_open_associates_and_enables_interpretation():
    host = Host()
    vm = host.create_vm()
    hf = host.plug(7, 0x03000007)
    assert not vm.lsi
    assert host.vfio_open(vm, hf) is Errno.OK
    assert hf.owner == vm.id and hf.gisa == vm.gisa and vm.lsi and vm.kzdev == [hf]
    assert host.view(hf.fh).gisa == vm.gisa


def test_without_interpretation_facilities_only_the_association_is_made():
    host = Host(interp_allowed=False)
    vm = host.create_vm()
    hf = host.plug(7, 0x03000007)
    assert host.vfio_open(vm, hf) is Errno.OK
    assert hf.owner == vm.id and hf.gisa == 0 and not vm.lsi
    assert host.zpci_op(vm, hf.fh, ZpciOp.REG_AEN) is Errno.EINVAL
    assert host.zpci_op(vm, hf.fh, ZpciOp.DEREG_AEN) is Errno.EINVAL


def test_zpci_op_is_scoped_to_the_calling_vm():
    host = Host()
    a, b = host.create_vm(), host.create_vm()
    fa, fb = host.plug(1, 0x01000001), host.plug(2, 0x01000002)
    host.vfio_open(a, fa)
    host.vfio_open(b, fb)
    assert host.zpci_op(a, fb.fh, ZpciOp.REG_AEN) is Errno.ENODEV          # foreign handle
    assert host.zpci_op(a, fa.fh ^ 0x01000000, ZpciOp.REG_AEN) is Errno.ENODEV   # stale instance
    assert host.zpci_op(a, fa.fh, ZpciOp.REG_AEN, flags=REGAEN_HOST | 4) is Errno.EINVAL
    assert host.zpci_op(a, fa.fh, ZpciOp.REG_AEN, ibv=0x1000, sb=0x2000, sbo=5) is Errno.OK
    assert fa.aen.assist and fa.aen.sbo == 5
    assert host.zpci_op(a, fa.fh, ZpciOp.REG_AEN) is Errno.EINVAL           # already registered
    assert host.zpci_op(a, fa.fh, ZpciOp.DEREG_AEN) is Errno.OK
    assert host.zpci_op(a, fa.fh, ZpciOp.DEREG_AEN) is Errno.OK             # already gone: fine
    # a list entry whose association is another VM's is refused (defence in depth)
    a.kzdev.append(fb)
    assert host.zpci_op(a, fb.fh, ZpciOp.REG_AEN) is Errno.EPERM


def test_domain_takes_only_the_owners_current_registration():
    host = Host()
    a, b = host.create_vm(), host.create_vm()
    hf = host.plug(1, 0x01000001)
    host.vfio_open(a, hf)
    assert host.zpci_op(a, hf.fh, ZpciOp.REG_IOAT, iota=0x4804, pba=IOVA,
                        pal=IOVA + 0xFFFFF) is Errno.OK
    gen = hf.ioat.gen
    assert hf.domain.map(IOVA, 0x5000, True, a.id, gen)
    assert not hf.domain.map(IOVA, 0x5000, True, b.id, gen)                # not the owner
    assert not hf.domain.map(IOVA, 0x5000, True, a.id, gen + 1)            # not this registration
    assert not hf.domain.map(IOVA - 0x1000, 0x5000, True, a.id, gen)       # outside [pba, pal]
    assert hf.domain.translate(IOVA + 0x10, True) == 0x5010
    # deregistration empties the domain; a re-registration is a new generation,
    # so a mapping from the old one is refused
    assert host.zpci_op(a, hf.fh, ZpciOp.DEREG_IOAT) is Errno.OK
    assert not hf.domain.entries and hf.ioat is None
    assert not hf.domain.map(IOVA, 0x5000, True, a.id, gen)                # no registration
    assert host.zpci_op(a, hf.fh, ZpciOp.REG_IOAT, iota=0x4804, pba=IOVA,
                        pal=IOVA + 0xFFFFF) is Errno.OK
    assert hf.ioat.gen != gen and not hf.domain.entries
    assert not hf.domain.map(IOVA, 0x5000, True, a.id, gen)                # the old registration
    assert hf.domain.map(IOVA, 0x6000, True, a.id, hf.ioat.gen)
    assert hf.domain.translate(IOVA, False) == 0x6000


def test_kernel_shadow_walks_the_owners_tables():
    host = Host()
    a, b = host.create_vm(), host.create_vm()
    hf = host.plug(1, 0x01000001)
    host.vfio_open(a, hf)
    mem_a, iota = tables(0x200000)
    mem_b, _ = tables(0x900000)
    host.zpci_op(a, hf.fh, ZpciOp.REG_IOAT, iota=iota, pba=IOVA, pal=IOVA + 0xFFFFF)
    assert KvmZpci(host, a).shadow(hf, mem_a, IOVA, 0x3000) == (0, IOVA + 0x3000)
    assert hf.domain.translate(IOVA, True) == 0x200000
    assert hf.domain.translate(IOVA + 0x1000, False) == 0x201000
    assert hf.domain.translate(IOVA + 0x1000, True) is None                 # protected
    assert IOVA + 0x2000 not in hf.domain.entries                           # invalid PTE
    # another VM's kernel context maps nothing for a function it does not own
    before = dict(hf.domain.entries)
    assert KvmZpci(host, b).shadow(hf, mem_b, IOVA, 0x1000) == (Pec.INVALAS, IOVA)
    assert hf.domain.entries == before


def test_release_paths_clear_everything():
    for release in ("close", "destroy", "unplug"):
        host = Host()
        vm = host.create_vm()
        hf = host.plug(1, 0x01000001)
        host.vfio_open(vm, hf)
        host.zpci_op(vm, hf.fh, ZpciOp.REG_AEN, ibv=0x1000)
        host.zpci_op(vm, hf.fh, ZpciOp.REG_IOAT, iota=0x4804, pba=IOVA, pal=IOVA + 0xFFF)
        hf.domain.map(IOVA, 0x3000, True, vm.id, hf.ioat.gen)
        rc = {"close": lambda: host.vfio_close(vm, hf), "destroy": lambda: host.destroy_vm(vm),
              "unplug": lambda: host.hot_unplug(hf)}[release]()
        assert rc is Errno.OK
        assert (hf.owner, hf.gisa, hf.aen, hf.ioat, hf.vfio) == (None, 0, None, None, None)
        assert not hf.domain.entries and vm.kzdev == []
        assert host.zpci_op(vm, hf.fh, ZpciOp.DEREG_AEN) is Errno.ENODEV


def test_refused_host_calls():
    host = Host()
    a, b = host.create_vm(), host.create_vm()
    hf = host.plug(1, 0x01000001)
    assert host.vfio_close(a, hf) is Errno.EBADF
    assert host.vfio_open(a, hf) is Errno.OK
    assert host.vfio_open(b, hf) is Errno.EBUSY
    assert host.vfio_open(a, hf) is Errno.EBUSY
    assert host.vfio_register_ioat(b, hf, 0x4804, IOVA, IOVA) is Errno.EBADF
    assert host.vfio_register_ioat(a, hf, 0x4804, IOVA + 1, IOVA) is Errno.EINVAL
    assert host.vfio_register_ioat(a, hf, 0x4804, IOVA, IOVA + 0xFFF) is Errno.OK
    assert hf.ioat.path is IoatPath.USERSPACE
    assert host.zpci_op(a, hf.fh, ZpciOp.DEREG_IOAT) is Errno.EINVAL       # not KVM's
    assert host.zpci_op(a, hf.fh, 99) is Errno.EINVAL
    assert host.destroy_vm(b) is Errno.OK and host.destroy_vm(b) is Errno.ENOENT
    assert host.vfio_open(b, host.plug(2, 2)) is Errno.ENOENT
    assert host.hot_unplug(hf) is Errno.OK and host.hot_unplug(hf) is Errno.ENODEV
    assert host.vfio_open(a, hf) is Errno.ENODEV
    assert host.stats["vfio_open_EBUSY"] == 2
