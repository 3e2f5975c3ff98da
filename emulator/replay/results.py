"""What a replay reports: one WorkloadResult per trace, one Mismatch per differing result."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

BASELINE = "intercept-all"
ROUTES = ("firmware", "kvm", "userspace")


@dataclass
class Mismatch:
    path: str
    seq: int
    addr: int
    mnemonic: str
    policy: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: seq {self.seq} {self.mnemonic} @{self.addr:x} [{self.policy}]: {self.what}"


@dataclass
class WorkloadResult:
    path: str
    workload: str
    source: str
    stream: str
    policies: tuple[str, ...]
    events: int = 0
    by_mnemonic: Counter = field(default_factory=Counter)
    # policy -> mnemonic -> route -> count
    routes: dict = field(default_factory=dict)
    instructions: int | None = None
    block_execs: int = 0
    full_model_events: int = 0
    checked: int = 0
    passed: int = 0
    mismatched: int = 0
    unchecked: Counter = field(default_factory=Counter)
    stand_ins: list = field(default_factory=list)     # device kinds without a model

    def exits(self, policy: str) -> int:
        return sum(n for per in self.routes[policy].values()
                   for r, n in per.items() if r != "firmware")

    def route_totals(self, policy: str) -> dict[str, int]:
        tot = {r: 0 for r in ROUTES}
        for per in self.routes[policy].values():
            for r, n in per.items():
                tot[r] += n
        return tot

    def to_json(self) -> dict:
        return {"path": self.path, "workload": self.workload, "source": self.source,
                "stream": self.stream, "events": self.events,
                "by_mnemonic": dict(sorted(self.by_mnemonic.items())),
                "instructions": self.instructions, "block_executions": self.block_execs,
                "routes": {p: {m: dict(sorted(v.items())) for m, v in sorted(self.routes[p].items())}
                           for p in self.policies},
                "route_totals": {p: self.route_totals(p) for p in self.policies},
                "exits": {p: self.exits(p) for p in self.policies},
                "full_model_events": self.full_model_events,
                "device_stand_ins": self.stand_ins,
                "check": {"checked": self.checked, "passed": self.passed,
                          "mismatched": self.mismatched, "unchecked": dict(self.unchecked)}}
