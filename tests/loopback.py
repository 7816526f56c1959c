"""A real Dask cluster on loopback for tests: a ``dask scheduler`` and ``dask worker`` processes (each with its
nanny), started as a user would start them, and ended by the process ids this module started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

DASK = str(Path(sys.executable).with_name("dask"))
GATE_PRELOAD = str(Path(__file__).with_name("dask_gate.py"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackCluster:
    """``workers`` single-thread workers; with ``gate`` (a folder) each worker runs ``tests/dask_gate.py``."""

    def __init__(self, folder: Path, workers: int = 2, gate: Path | None = None, gate_from: int = 1):
        self.folder, self.gate, self.gate_from = Path(folder), gate, gate_from
        self.folder.mkdir(parents=True, exist_ok=True)
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.processes: list[subprocess.Popen] = []
        self.scheduler = self._start("scheduler", [DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                                   self.address.rsplit(":", 1)[1], "--dashboard-address", ":0"])
        self.workers = [self.start_worker() for _ in range(workers)]

    def _start(self, name: str, command: list[str]) -> subprocess.Popen:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        if self.gate is not None:
            env.update(KIP_TEST_GATE=str(self.gate), KIP_TEST_GATE_FROM=str(self.gate_from))
        log = open(self.folder / f"{name}-{len(self.processes)}.log", "w")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.processes.append(process)
        return process

    def start_worker(self) -> subprocess.Popen:
        preload = ["--preload", GATE_PRELOAD] if self.gate is not None else []
        return self._start("worker", [DASK, "worker", self.address, "--nworkers", "1", "--nthreads", "1",
                                      "--no-dashboard", "--local-directory", str(self.folder), *preload])

    def client(self, workers: int):
        """A client once ``workers`` workers joined (opened as ``make cv SCHEDULER=`` opens it)."""
        from distributed import Client

        from pipelines.cluster import open_client

        with Client(self.address, timeout=60) as probe:
            probe.wait_for_workers(workers, timeout=120)
        return open_client(self.address)

    def kill_worker(self, worker: subprocess.Popen) -> None:
        """SIGKILL a ``dask worker`` command: its nanny and the worker process under it."""
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def started_folds(gate: Path) -> list[tuple[int, int]]:
    """``(n, pid)`` of each fold a gated worker started, in order."""
    found = [name.split("-")[1:] for name in os.listdir(gate) if name.startswith("start-")]
    return sorted((int(n), int(pid)) for n, pid in found)


def wait_for(condition, what: str, seconds: float = 180) -> None:
    """Wait until ``condition()`` holds (a generous limit, so that only a hang fails, never a slow machine)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)
