"""``--workers N`` / ``--scheduler ADDRESS``: where replay and report run (emulator/replay/parallel.py)."""
from __future__ import annotations

from emulator.errors import UserError


def add_options(p) -> None:
    p.add_argument("--workers", metavar="N",
                   help="replay on N local worker processes (dask.distributed LocalCluster; "
                        "default 1: in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="replay on the dask.distributed cluster whose scheduler listens at ADDRESS "
                        "(e.g. tcp://host:8786); every worker must read the traces at the same paths")


# local worker processes at most (see executor)
MAX_LOCAL_WORKERS = 256


def executor(args):
    """The parallel.Executor the options ask for (enter it to start), or None: in this process."""
    workers, scheduler = args.workers, args.scheduler
    if workers is not None and scheduler is not None:
        raise UserError("give --workers or --scheduler, not both", exit_code=2)
    if scheduler is not None:
        if not scheduler.strip():
            raise UserError("--scheduler needs an address such as tcp://host:8786", exit_code=2)
        from emulator.replay.parallel import Executor
        return Executor(scheduler=scheduler.strip())
    if workers is None:
        return None
    try:
        n = int(workers)
    except ValueError:
        n = 0
    if n < 1:
        raise UserError(f"--workers must be a positive whole number, not {workers!r}", exit_code=2)
    if n > MAX_LOCAL_WORKERS:
        # each local worker is a process of ~100 MB: more would exhaust the machine
        # before the first task runs; a cluster goes through --scheduler
        raise UserError(f"--workers {n}: at most {MAX_LOCAL_WORKERS} local worker processes "
                        f"(use --scheduler for a cluster)", exit_code=2)
    if n == 1:
        return None
    from emulator.replay.parallel import Executor
    return Executor(workers=n)
