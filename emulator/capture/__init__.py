"""``zpci-emu capture``: real zPCI instruction traces from guests under QEMU.

Parts:

* ``apt``       private apt state for Debian s390x packages (kernel, busybox)
* ``kernel``    the kernel image: vmlinuz payload extraction, modules, config
* ``sites``     zPCI instruction sites in guest text (our own decoder)
* ``initramfs`` newc cpio writer and the workload ``/init`` scripts
* ``workloads`` the named workloads (kernel command line, devices, script)
* ``gdb_recorder`` the recorder that runs *inside* gdb-multiarch
* ``runner``    starts QEMU with the gdbstub and gdb with the recorder
"""
