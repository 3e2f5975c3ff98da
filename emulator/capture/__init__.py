"""``zpci-emu capture``: real zPCI instruction traces from guests under QEMU.

Parts:

* ``apt``          private apt state for Debian s390x packages (kernel, busybox)
* ``kernel``       the kernel image from the vmlinuz (XZ payload) and its kallsyms
* ``sites``        zPCI instruction sites in guest text (our own decoder)
* ``initramfs``    newc cpio writer
* ``workloads``    the named Linux workloads (devices, kernel arguments, /init)
* ``gdb_recorder`` the recorder that runs *inside* gdb-multiarch
* ``runner``       starts QEMU with the gdbstub and gdb with the recorder
* ``linux``        a Linux capture end to end, the FMB statistics cross-check
* ``baremetal``    a capture of a bare-metal guest ELF (traces/guests)
"""
