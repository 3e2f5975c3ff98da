"""Routing of zPCI instructions to the path that serves them (cf. arch/s390/kvm/intercept.c).

Nothing here knows instruction semantics: the firmware, the host kernel and
userspace each own theirs (firmware.py, kvm.py, userspace.py).  The router
runs the path a decision names, falls back to userspace when a path declines
(KVM's -EOPNOTSUPP; firmware's own intercept), and counts exits the way KVM
does: every intercept is an ``exit_instruction``, every one that leaves the
kernel also an ``exit_userspace``.
"""
from __future__ import annotations

from firmware_model.outcome import Completion, Route

# Exit-kind counters, an index each so the per-instruction path does list
# arithmetic instead of dict lookups.
FIRMWARE, EXIT_INSTRUCTION, EXIT_USERSPACE, KVM_HANDLED, DECLINED = range(5)
EXIT_NAMES = ("firmware", "exit_instruction", "exit_userspace", "kvm_handled", "declined")


class Router:
    """Runs one vCPU's zPCI instructions on the path their decision names."""

    __slots__ = ("userspace", "firmware", "kvm", "exits")

    def __init__(self, userspace, firmware, kvm):
        self.userspace = userspace      # .execute(d, guest) -> Completion
        self.firmware = firmware        # .execute(d, guest) -> Completion | None (None: intercept)
        self.kvm = kvm                  # .handle(d, guest) -> Completion | None (None: -EOPNOTSUPP)
        self.exits = [0] * len(EXIT_NAMES)

    def run(self, route: Route, d, guest) -> tuple[Completion, bool]:
        """Serve the instruction; the flag says a path declined and userspace served it."""
        exits = self.exits
        if route is Route.FIRMWARE:
            c = self.firmware.execute(d, guest)
            if c is not None:
                exits[FIRMWARE] += 1
                return c, False
            exits[DECLINED] += 1
        elif route is Route.KVM:
            exits[EXIT_INSTRUCTION] += 1
            c = self.kvm.handle(d, guest)
            if c is not None:
                exits[KVM_HANDLED] += 1
                return c, False
            exits[DECLINED] += 1
            exits[EXIT_USERSPACE] += 1
            return self.userspace.execute(d, guest), True
        exits[EXIT_INSTRUCTION] += 1
        exits[EXIT_USERSPACE] += 1
        return self.userspace.execute(d, guest), route is not Route.USERSPACE

    def stats(self) -> dict:
        return dict(zip(EXIT_NAMES, self.exits))

    def reset(self) -> None:
        self.exits[:] = [0] * len(EXIT_NAMES)
