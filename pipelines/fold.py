"""One fold of a CV: ``fit_fold`` trains it in a folder and predicts the test split. It needs nothing but its
arguments, so it runs the same in this process (``fold-<k>/`` of the CV folder, resumable mid-fold) and as a task on
a Dask worker (``remote_fold``: a temporary folder on the worker, whose files go back to the client and are written
into ``fold-<k>/`` by ``write_fold``, so the CV folder is the same either way).
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from competition.fileio import atomic_dir
from pipelines import runs
from pipelines.config import TrainConfig
from pipelines.data import Dataset
from pipelines.evaluate import tta_probabilities
from pipelines.folds import Pool
from pipelines.inference import view_probabilities, views_of
from pipelines.models import load_model
from pipelines.normalize import Standardizer
from pipelines.probabilities import Probabilities, write_probabilities
from pipelines.recipe import build_for_training
from pipelines.train import train

LEFT_BEHIND = {runs.LOCK_NAME, "backup"}  # a claim and a resumable state: of no use once the fold finished
FIXED_SECONDS = 15.0  # a fold's building, saving and plotting, outside its training budget (GIC-sized, 2 cores)


def fit_fold(config: TrainConfig, pool: Pool, fold_of: np.ndarray, fold: int, run_dir: Path,
             slug: str | None = None) -> dict:
    """Train fold ``fold`` (its images held out) in ``run_dir``, predict the test split under every TTA choice into
    ``test_predictions.npz`` beside it; return the fold's metrics. With the competition's ``slug`` it reads no
    competition file."""
    held = np.flatnonzero(fold_of == fold)
    dataset = Dataset(train=pool.part(np.flatnonzero(fold_of != fold)), val=pool.part(held), test=pool.test,
                      classes=pool.classes)
    result = train(config.update(tta="auto"), dataset=dataset, run_dir=run_dir, slug=slug)
    if pool.test is not None:
        model = load_model(run_dir / "model.keras")
        probabilities = tta_probabilities(model, pool.test.images, Standardizer.load(run_dir / "normalization.npz"),
                                          tuple(result.metrics["val_accuracy_by_tta"]))  # what validation tried
        write_probabilities(run_dir / "test_predictions.npz",
                            Probabilities(pool.test.ids, probabilities, classes=pool.classes))
    keras.backend.clear_session()
    return result.metrics


def overhead_seconds(config: TrainConfig, pool: Pool, held_out: int, sample: int = 2048,
                     fixed: float = FIXED_SECONDS, clock: Callable[[], float] = time.perf_counter) -> float:
    """The seconds one fold or run on ``pool`` spends outside its training budget: predicting its ``held_out``
    images and the test images under every TTA view it may try (timed here on ``sample`` random images with the config's
    model, after a first pass that traces), plus ``fixed`` for building, saving and plotting."""
    model, _ = build_for_training(config, pool.images.shape[1:], len(pool.classes), steps_per_epoch=1)
    sample = min(sample, max(held_out, 1))  # no more than it predicts: large images are slow
    images = np.random.default_rng(0).integers(0, 256, (sample, *pool.images.shape[1:]), dtype=np.uint8)
    identity = Standardizer(np.zeros(images.shape[1:], np.float32), np.ones(images.shape[1:], np.float32))
    view_probabilities(model, images, identity, ("mirror-right",))
    started = clock()
    view_probabilities(model, images, identity, ("mirror-right",))
    per_image = (clock() - started) / sample
    keras.backend.clear_session()
    views = len(views_of(config.update(tta="auto").tta_choices()))
    predicted = held_out + (len(pool.test.ids) if pool.test is not None else 0)
    return per_image * views * predicted + fixed


def fold_done(fold_dir: Path, has_test: bool) -> bool:
    return runs.read_metrics(fold_dir) is not None and (not has_test or (fold_dir / "test_predictions.npz").exists())


def remote_fold(pool: Pool, config: TrainConfig, slug: str, fold_of: np.ndarray, fold: int) -> dict[str, bytes]:
    """The task a Dask worker runs: the fold, on the worker's threads, in a temporary folder; its files by
    relative path (model, normalization, history, metrics, plan, predictions, plots, TensorBoard log)."""
    from pipelines.cluster_worker import use_worker_threads  # Dask: only on a worker

    use_worker_threads()
    with tempfile.TemporaryDirectory(prefix="kip-fold-") as tmp:
        fit_fold(config, pool, fold_of, fold, Path(tmp), slug)
        return read_files(Path(tmp))


def read_files(folder: Path) -> dict[str, bytes]:
    """A finished run folder's files by relative path, without what only a killed run needs (lock, backup)."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not LEFT_BEHIND & set(path.relative_to(folder).parts)}


def write_fold(fold_dir: Path, files: dict[str, bytes]) -> Path:
    """A remote fold's (or trial's) files as ``fold_dir``, whole or not at all (it replaces what a killed local try
    left)."""
    with atomic_dir(fold_dir) as tmp:
        for name, data in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    return fold_dir
