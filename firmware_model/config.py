"""What a machine is made of, independent of how it was described (CLI, trace header, test)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FunctionSpec:
    """One zPCI function: the ``-device zpci,...`` and the PCI device it targets."""
    kind: str | None                       # device model name, e.g. "virtio-rng-pci";
                                           # None: a zpci device whose target is no device
    props: tuple[tuple[str, str], ...] = ()  # device properties as given, e.g. (("disable-legacy", "on"),)
    fid: int | None = None                 # None: QEMU's automatic choice
    uid: int | None = None
    target: str | None = None              # the device id the zpci device names


@dataclass(frozen=True)
class MachineConfig:
    memory: int = 256 << 20
    functions: tuple[FunctionSpec, ...] = field(default_factory=tuple)
