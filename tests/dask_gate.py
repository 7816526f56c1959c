"""A ``dask worker --preload`` for tests: each fold or trial a worker starts leaves ``start-<n>-<pid>`` in
``$KIP_TEST_GATE`` (n counts the starts of every worker), and the n-th start on from ``$KIP_TEST_GATE_FROM`` waits at
the gate until the test creates ``go`` there: a test can kill a worker while it is inside a fold or a trial, and know
which one."""
from __future__ import annotations

import os
import time
from pathlib import Path


def claim_start(gate: Path) -> int:
    n = 1
    while True:
        try:
            fd = os.open(gate / f"n-{n}", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            n += 1
            continue
        os.close(fd)
        (gate / f"start-{n}-{os.getpid()}").touch()
        return n


def gated(real):
    gate, first = Path(os.environ["KIP_TEST_GATE"]), int(os.environ.get("KIP_TEST_GATE_FROM", "1"))

    def wrapper(*args, **kwargs):
        if claim_start(gate) >= first:
            while not (gate / "go").exists():
                time.sleep(0.05)
        return real(*args, **kwargs)

    return wrapper


def dask_setup(worker) -> None:
    import pipelines.fold as fold_module
    import tuning.objective as objective_module

    fold_module.fit_fold = gated(fold_module.fit_fold)  # a fold starts
    objective_module.make_objective = gated(objective_module.make_objective)  # a trial starts (on a worker)
