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


def capable_workers(client) -> int:
    """The workers that can take our tasks (those with the client's version of the package)."""
    from pipelines.cluster_worker import RESOURCE

    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if w.get("resources", {}).get(RESOURCE))


def slots(client) -> int:
    """How many tasks run side by side: 1 in this process, else the workers that can take them (at least 1)."""
    return 1 if client is None else max(capable_workers(client), 1)


def wait_for_workers(client, say: Callable[[str], None]) -> None:
    """Return once a worker can take our tasks; say so while none can, fail after ``NO_WORKER_SECONDS``."""
    alone_since = None
    while capable_workers(client) == 0:
        alone_since = _still_alone(client, alone_since, say)
        time.sleep(POLL_SECONDS)


def _still_alone(client, since: float | None, say: Callable[[str], None]) -> float:
    now = time.monotonic()
    if since is None:
        say(f"cluster: no worker can take the work; waiting up to {NO_WORKER_SECONDS:.0f} s for one to join "
            f"(what finished is saved)")
        return now
    if now - since > NO_WORKER_SECONDS:
        address = client.scheduler.address
        raise PipelineError(f"{address}: no worker for {NO_WORKER_SECONDS:.0f} s; what finished is saved: start "
                            f"`dask worker {address}` and run the same command again to continue")
    return since


def completed(client, futures: dict, say: Callable[[str], None]) -> Iterator[tuple[object, object]]:
    """Yield ``(future, result)`` as each of ``futures`` finishes. Stop early when one is cancelled (the data it
    needs was lost with every worker that held it): the caller sends the data again and resubmits the rest. A
    task's own error is raised; a task whose workers kept dying is one line."""
    from distributed import wait
    from distributed.scheduler import KilledWorker
    from distributed.utils import CancelledError

    left, alone_since = set(futures), None
    while left:
        try:
            done, left = wait(left, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
        except TimeoutError:
            if capable_workers(client) == 0:
                alone_since = _still_alone(client, alone_since, say)
            elif alone_since is not None:
                say(f"cluster: {capable_workers(client)} worker(s) again")
                alone_since = None
            continue
        except CancelledError:  # the rest is sent again by the caller
            done, left = {f for f in left if f.done()}, set()
        for future in done:
            if future.cancelled():
                continue
            try:
                yield future, future.result()
            except KilledWorker as err:
                raise PipelineError(f"{futures[future]}: every worker that ran it died ({first_line(err)}); what "
                                    f"finished is saved: run the same command again to continue") from None
