"""Kill a Snakemake job with SIGKILL at a chosen point (tests/test_kill_recovery.py).

Python imports this module at start-up in every process whose PYTHONPATH holds this folder. It acts only
in the script job of the rule script named by RESDYN_KILL_SCRIPT (Snakemake runs
`.snakemake/scripts/tmp<random>.<script>.py`), at RESDYN_KILL_POINT:

- ``start``: before the job does anything (an OOM kill or a wall-time limit hitting early);
- ``rename``: at the job's first atomic rename (resdyn.io.atomic_output), with the temporary complete and
  the output not yet in place (a training job: its first epoch's checkpoint);
- ``exit``: after the job's script has finished and written every output, before the process exits.

The kill is a real SIGKILL of the job's own process: no ``finally``, no ``atexit`` of the job runs after
it, exactly as for a kill from outside; the hook only makes the moment reproducible.
"""

import atexit
import os
import signal
import sys

_SCRIPT = os.environ.get("RESDYN_KILL_SCRIPT")
_POINT = os.environ.get("RESDYN_KILL_POINT")


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _is_target_job() -> bool:
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return bool(_SCRIPT) and script.startswith("tmp") and script.endswith(f".{_SCRIPT}.py")


if _is_target_job():
    if _POINT == "start":
        _kill()
    elif _POINT == "rename":
        _replace = os.replace

        def _replace_then_never(src, dst, *args, **kwargs):
            _kill()
            return _replace(src, dst, *args, **kwargs)

        os.replace = _replace_then_never
    elif _POINT == "exit":
        atexit.register(_kill)
    else:
        raise SystemExit(f"RESDYN_KILL_POINT must be start, rename or exit, got {_POINT!r}")
