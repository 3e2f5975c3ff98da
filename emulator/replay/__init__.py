"""Streaming replay of traces through the firmware model under every policy.

For each trace the header gives the machine (functions, memory; for a boot
trace the recorded command line); one ``firmware_model.machine.Machine`` per
policy then executes the recorded zPCI instructions in order, each on a
guest rebuilt from the event (registers, sparse memory from the recorded
reads).  Device data comes from the recording: a ``ReplayDevice`` answers
BAR and config loads with the value the guest received.  When the trace holds
every memory access an instruction caused (boot traces) the device models
also see the stores and do their DMA against the recorded memory, so the
writes they make are checked too.

One module per job:

- ``run``: the replay loop over a trace's records (``replay``, ``FileReplay``);
- ``heads``: kinds of EVENT heads, checked and classified once per kind;
- ``epochs``: the decision cache, memoised per epoch of configuration state;
- ``compare``: ``--check``, the model's result against the recording;
- ``standins``: the guest and devices rebuilt from the recording;
- ``machines``: the machines a header describes, one per policy;
- ``results``: WorkloadResult and Mismatch;
- ``progress``: a progress bar on a terminal.

The counts with the decision cache equal a full run on every event
(tests/test_replay.py, tests/test_replay_bundled.py).
"""
from emulator.replay.compare import compare, unchecked_reason
from emulator.replay.heads import decoded
from emulator.replay.machines import ASSUME, ReplayMachine, config_from_header, make_machine
from emulator.replay.results import BASELINE, ROUTES, Mismatch, WorkloadResult
from emulator.replay.run import FileReplay, replay
from emulator.replay.standins import ReplayDevice, ReplayGuest

__all__ = ["ASSUME", "BASELINE", "ROUTES", "FileReplay", "Mismatch", "ReplayDevice", "ReplayGuest",
           "ReplayMachine", "WorkloadResult", "compare", "config_from_header", "decoded",
           "make_machine", "replay", "unchecked_reason"]
