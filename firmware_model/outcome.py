"""Decisions are values: what the guest sees, and where the instruction was served."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .arch import Pgm

ICPT_INSTRUCTION = 0x04   # SIE intercept code for an instruction intercept


class Route(enum.Enum):
    FIRMWARE = "firmware"     # completed by the firmware, no exit
    KVM = "kvm"               # intercept served in the host kernel
    USERSPACE = "userspace"   # intercept served by the host's userspace (QEMU)


@dataclass(frozen=True, slots=True)
class Completion:
    """The guest-visible result besides register and memory writes.

    ``pgm`` set: a program interruption with that code was recognised and the
    instruction changed nothing else. ``cc`` None: condition code unchanged.
    """
    cc: int | None = None
    pgm: int | None = None


@dataclass(frozen=True, slots=True)
class Intercept:
    """What the host kernel sees for an instruction intercept (kvm_s390_intercept_instruction)."""
    icptcode: int
    ipa: int
    ipb: int


@dataclass(frozen=True, slots=True)
class Decision:
    route: Route
    reason: str                      # a Reason value from policy.py, kept as a short string
    intercept: Intercept | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    mnemonic: str
    completion: Completion
    decision: Decision                               # the active policy's
    decisions: dict = field(default_factory=dict)    # policy name -> Decision, for every policy


# Preallocated completions: the hot paths return these without building objects,
# and the dispatcher reuses an Outcome per completion object.
CC0 = Completion(0)
CC1 = Completion(1)
CC2 = Completion(2)
CC3 = Completion(3)
CC = (CC0, CC1, CC2, CC3)
CC_UNCHANGED = Completion(None)
PGM_OPERATION = Completion(pgm=Pgm.OPERATION)
PGM_PRIVILEGED = Completion(pgm=Pgm.PRIVILEGED)
PGM_ADDRESSING = Completion(pgm=Pgm.ADDRESSING)
PGM_SPECIFICATION = Completion(pgm=Pgm.SPECIFICATION)
PGM_OPERAND = Completion(pgm=Pgm.OPERAND)
