"""What runs on a Dask worker besides our tasks: the plugin that lets a worker take them, and its thread setting.

Imported only where Dask is used (``pipelines.cluster`` on the client, ``pipelines.fold.remote_fold`` on a worker).
"""
from __future__ import annotations

import importlib.metadata
import logging

from distributed import WorkerPlugin, get_worker

PACKAGE = "kaggle-image-pipeline"
RESOURCE = "kip"  # one per worker: a worker trains one fold at a time, on all the threads it was started with

logger = logging.getLogger("distributed.kip")


def package_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


class KipWorker(WorkerPlugin):
    """Registered by the client with every worker, present and future: a worker with the client's version of the
    package declares one ``kip`` resource, which each of our tasks needs; a worker with another version declares
    none and so never gets one (it says why in its log)."""

    name = "kip"

    def __init__(self, version: str | None):
        self.version = version

    async def setup(self, worker) -> None:
        found = package_version()
        if found != self.version:
            logger.error("kip: this worker has %s %s, the client %s: it takes none of the client's work; install "
                         "the client's version and restart it", PACKAGE, found or "(not installed)", self.version)
            return
        use_worker_threads(worker)  # TensorFlow loaded (quietly) and its threads set before the first task
        await worker.set_resources(**{RESOURCE: 1})


def use_worker_threads(worker=None) -> int:
    """TensorFlow on the threads this worker was started with (``--nthreads``), set before it runs anything in this
    process; a later call finds it set already."""
    from pipelines.quiet import import_tensorflow

    tf = import_tensorflow()
    threads = (worker or get_worker()).state.nthreads
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow started already in this process, with these settings
        pass
    return threads
