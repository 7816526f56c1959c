"""Where parallel work runs: in this process (``WORKERS=1``, no Dask at all), on a local Dask cluster of
``WORKERS=N`` worker processes, or on a Dask scheduler that ``dask worker`` processes on other machines joined
(``SCHEDULER=tcp://host:8786``, or Dask's own ``DASK_SCHEDULER_ADDRESS``).

Every worker must run the client's version of the package (checked at the start, refused in one line; a worker
that joins later with another version gets no work). Each runs one of our tasks at a time, with TensorFlow on the
threads it was started with. A task lost with its worker runs again on another (Dask's own rescheduling, plus
``retries`` for errors); when the cluster has no worker left, the client waits ``NO_WORKER_SECONDS`` for one to
join, saying so, then fails in one line with everything finished so far saved.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from uuid import uuid4

from competition.errors import PipelineError, first_line

CONNECT_TIMEOUT = 10.0  # seconds to reach a scheduler before giving up
NO_WORKER_SECONDS = 600.0  # how long a run waits for a worker to join a cluster that has none, then fails
POLL_SECONDS = 2.0


def scheduler_address(scheduler: str | None) -> str | None:
    return scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS") or None


def open_client(scheduler: str | None, workers: int = 1, threads: int | None = None, local: bool = False):
    """A ``distributed.Client`` for ``SCHEDULER=`` (or ``DASK_SCHEDULER_ADDRESS``), else for a local cluster of
    ``workers`` processes of ``threads`` each (default: the cores shared out), else None: run in this process.
    ``local`` makes a local cluster even of one worker (the benchmark compares them)."""
    if workers < 1:
        raise PipelineError(f"WORKERS={workers}: give 1 (train in this process) or more (a local Dask cluster of "
                            f"that many worker processes)")
    address = scheduler_address(scheduler)
    if address and workers > 1:
        raise PipelineError(f"SCHEDULER={address} and WORKERS={workers}: a scheduler's workers are the `dask worker` "
                            f"processes that joined it; leave WORKERS= out")
    if address is None and workers == 1 and not local:
        return None
    from distributed import Client, LocalCluster

    if address:
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as err:
            raise PipelineError(f"SCHEDULER={address}: no Dask scheduler answers there ({first_line(err)}); start "
                                f"`dask scheduler` on that machine, or leave SCHEDULER= out") from None
    else:
        threads = threads or max(1, (os.cpu_count() or 1) // workers)
        client = Client(LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True,
                                     dashboard_address=":0", silence_logs=logging.ERROR))
    try:
        check_versions(client)
        from pipelines.cluster_worker import KipWorker, package_version

        client.register_plugin(KipWorker(package_version()))
    except BaseException:
        close_client(client)
        raise
    return client


def close_client(client) -> None:
    cluster = client.cluster  # the LocalCluster this client started, or None
    client.close()
    if cluster is not None:
        cluster.close()


@contextlib.contextmanager
def cluster_session(scheduler: str | None, workers: int = 1, say: Callable[[str], None] = print) -> Iterator:
    """``open_client``, said in one line (where, how many workers, the dashboard), and closed at the end."""
    client = open_client(scheduler, workers)
    if client is not None:
        found = client.nthreads()
        say(f"cluster: {scheduler_address(scheduler) or 'local'}: {len(found)} worker(s), "
            f"{sum(found.values())} thread(s); progress at {client.dashboard_link}")
    try:
        yield client
    finally:
        if client is not None:
            close_client(client)


def check_versions(client, expected: str | None = None) -> None:
    """Refuse, in one line, a worker whose version of the package is not ``expected`` (this machine's)."""
    import importlib.metadata

    from pipelines.cluster_worker import PACKAGE, package_version

    expected = expected or package_version()
    found = client.run(importlib.metadata.version, PACKAGE, on_error="return")
    for worker, version in sorted(found.items()):
        if version != expected:
            theirs = version if isinstance(version, str) else "no version (not installed)"
            raise PipelineError(f"worker {worker}: {PACKAGE} {theirs}, this machine has {expected}; install the "
                                f"same version on every worker and restart it")


def refuse_local_files(config) -> None:
    """Settings that name a file on this machine, which a worker elsewhere cannot read: refused before any work."""
    named = [f"{name}={getattr(config, name)}" for name in ("pseudo_labels", "weights") if getattr(config, name)]
    if named:
        raise PipelineError(f"{', '.join(named)}: a file on this machine, which the cluster's workers cannot read; "
                            f"run this in this process (leave SCHEDULER= out, WORKERS=1)")


def capable_workers(client) -> int:
    """The workers that can take our tasks (those with the client's version of the package)."""
    from pipelines.cluster_worker import RESOURCE

    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if w.get("resources", {}).get(RESOURCE))


def slots(client) -> int:
    """How many tasks run side by side: 1 in this process, else the workers that can take them (at least 1)."""
    return 1 if client is None else max(capable_workers(client), 1)


class Dispatch:
    """Tasks ``function(data, *args)`` on the cluster, ``data`` (the arrays) sent to the workers once and again only
    when every worker that held it died; each task needs a worker with the client's version (``kip`` resource).

    ``results`` yields each task's result as it finishes. A task lost with its worker runs again on another
    (Dask's rescheduling; ``retries`` for errors); one cancelled because its data was lost is sent again with the
    data. While no worker can take the work it says so and waits ``NO_WORKER_SECONDS``, then fails in one line.
    """

    def __init__(self, client, function: Callable, data, say: Callable[[str], None] = print):
        self.client, self.function, self.value, self.say = client, function, data, say
        self.data = None
        self.tasks: dict = {}  # future -> (name, args)
        self.sent = {"seconds": 0.0, "times": 0}
        self.alone_since: float | None = None

    def submit(self, name: str, *args) -> None:
        from pipelines.cluster_worker import RESOURCE

        if self.data is None or self.data.cancelled():
            self._send()
        future = self.client.submit(self.function, self.data, *args, key=f"{name.replace(' ', '-')}-{uuid4().hex}",
                                    retries=2, pure=False, resources={RESOURCE: 1})
        self.tasks[future] = (name, args)

    def _send(self) -> None:
        while capable_workers(self.client) == 0:
            self._alone()
            time.sleep(POLL_SECONDS)
        self._check_workers()
        started = time.perf_counter()
        self.data = self.client.scatter(self.value, broadcast=True, hash=False)
        self.sent.update(seconds=self.sent["seconds"] + time.perf_counter() - started, times=self.sent["times"] + 1)

    def results(self, tick: Callable[[], None] | None = None) -> Iterator[tuple[str, tuple, object]]:
        """``(name, args, result)`` of each task as it finishes; the caller may submit more meanwhile. ``tick`` runs
        at least every ``POLL_SECONDS`` (a heartbeat). A task's own error is raised; a task whose workers kept
        dying is one line."""
        from distributed import wait
        from distributed.scheduler import KilledWorker
        from distributed.utils import CancelledError

        while self.tasks:
            if tick is not None:
                tick()
            try:
                done, _ = wait(list(self.tasks), timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
            except TimeoutError:
                self._check_workers()
                continue
            except CancelledError:
                done = [future for future in self.tasks if future.done()]
            for future in done:
                name, args = self.tasks.pop(future)
                if future.cancelled():
                    self.say(f"cluster: {name}: its data was lost with every worker that held it; sending it again")
                    self.submit(name, *args)
                    continue
                try:
                    result = future.result()
                except KilledWorker as err:
                    raise PipelineError(f"{name}: every worker that ran it died ({first_line(err)}); what finished "
                                        f"is saved: run the same command again to continue") from None
                yield name, args, result

    def _check_workers(self) -> None:
        if capable_workers(self.client) == 0:
            self._alone()
        elif self.alone_since is not None:
            self.say(f"cluster: {capable_workers(self.client)} worker(s) again")
            self.alone_since = None

    def _alone(self) -> None:
        now = time.monotonic()
        if self.alone_since is None:
            self.say(f"cluster: no worker can take the work; waiting up to {NO_WORKER_SECONDS:.0f} s for one to "
                     f"join (what finished is saved)")
            self.alone_since = now
        elif now - self.alone_since > NO_WORKER_SECONDS:
            address = self.client.scheduler.address
            raise PipelineError(f"{address}: no worker for {NO_WORKER_SECONDS:.0f} s; what finished is saved: start "
                                f"`dask worker {address}` and run the same command again to continue")
