"""``make cv``: stratified k-fold cross-validation over every labelled image, each fold a normal run folder.

``runs/cv-<arch>-<time>/`` holds ``folds.csv`` (the assignment), ``fold-<k>/`` (a run folder each, with its
``test_predictions.npz``), ``oof_predictions.npz`` (out-of-fold probabilities of every labelled image under each
TTA choice, with labels and folds), ``test_predictions.npz`` (the folds' mean), ``config.json`` (kind ``cv``),
``metrics.json`` (written last: OOF accuracy, macro F1 and log loss under the TTA chosen on OOF, per-fold scores,
mean and standard deviation) and plots. A killed CV rerun with the same settings continues at the first unfinished
fold (a killed fold resumes from its last epoch); a finished fold is never trained again.

On a Dask cluster (``SCHEDULER=`` or ``WORKERS=N``, see ``pipelines.cluster``) each unfinished fold is a task: the
pool's arrays go to the workers once, each fold trains in a temporary folder on its worker, and its files come back
and are written here as ``fold-<k>/``, so the CV folder is the same as a local run's and ``combine`` reads it alike.
A fold lost with its worker runs again elsewhere from its start; a killed client's rerun sends only the folds that
had not come back.
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_json
from competition.registry import load_competition
from pipelines import plots, runs
from pipelines.cluster import refuse_local_files
from pipelines.config import TrainConfig
from pipelines.data import load_dataset
from pipelines.evaluate import best_tta
from pipelines.fold import fit_fold, fold_done, remote_fold, write_fold
from pipelines.folds import Pool, assign_folds, labelled_pool, read_folds, write_folds
from pipelines.inference import TTA_CHOICES
from pipelines.metrics import scores
from pipelines.probabilities import Probabilities, read_probabilities, write_probabilities
from pipelines.train import check_config


@dataclass
class CVResult:
    cv_dir: Path
    metrics: dict


def unfinished_cv(settings_: dict) -> Path | None:
    """The newest CV folder with the same settings and no ``metrics.json`` yet."""
    root = settings.runs_dir()
    for path in sorted(root.glob(f"cv-{settings_['arch']}-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        if (path / "metrics.json").exists() or not (path / "config.json").exists():
            continue
        saved = json.loads((path / "config.json").read_text())
        if {k: v for k, v in saved.items() if k != "verbose"} == {k: v for k, v in settings_.items() if k != "verbose"}:
            return path
    return None


def run_cv(config: TrainConfig, folds: int = 5, folds_from: Path | None = None, progress: bool = True,
           on_fold: Callable[[str], None] = print, client=None) -> CVResult:
    """Cross-validate ``config`` over every labelled image (``config.minutes`` is the budget of each fold); the
    folds run one after another here, or side by side on the Dask cluster of ``client``
    (``pipelines.cluster.open_client``)."""
    check_config(config)
    if client is not None:
        refuse_local_files(config)
    competition = load_competition(config.competition)
    pool = labelled_pool(load_dataset(competition, seed=config.seed, progress=progress))
    fold_of = read_folds(Path(folds_from) / "folds.csv", pool) if folds_from else assign_folds(pool, folds, config.seed)
    folds = int(fold_of.max()) + 1
    described = {**dataclasses.asdict(config), "kind": "cv", "slug": competition.slug, "classes": pool.classes,
                 "cv": {"folds": folds, "labelled": len(pool), "folds_from": str(folds_from or "")}}
    cv_dir = unfinished_cv(described) or runs.new_folder(f"cv-{config.arch}")
    lock = runs.RunLock.try_claim(cv_dir)
    if lock is None:
        raise PipelineError(f"{cv_dir}: another process is running this CV; wait for it")
    with lock:
        write_json(cv_dir / "config.json", described)
        write_folds(cv_dir / "folds.csv", pool, fold_of)
        pending = []
        for fold in range(folds):
            if fold_done(cv_dir / f"fold-{fold + 1}", pool.test is not None):
                on_fold(f"cv: fold {fold + 1}/{folds} already finished")
            else:
                pending.append(fold)
        if client is None:
            for fold in pending:
                on_fold(f"cv: fold {fold + 1}/{folds}: {int(np.sum(fold_of != fold))} train, "
                        f"{int(np.sum(fold_of == fold))} held out")
                started = time.time()
                metrics = fit_fold(config, pool, fold_of, fold, cv_dir / f"fold-{fold + 1}", competition.slug)
                on_fold(f"cv: fold {fold + 1}/{folds}: val_accuracy={metrics['val_accuracy']:.4f} "
                        f"({metrics['epochs_run']} epochs, {time.time() - started:.0f} s)")
        else:
            run_remote_folds(client, config, competition.slug, pool, fold_of, pending, cv_dir, on_fold)
        metrics = combine(cv_dir, pool, fold_of)
    return CVResult(cv_dir, metrics)


def run_remote_folds(client, config: TrainConfig, slug: str, pool: Pool, fold_of: np.ndarray, pending: list[int],
                     cv_dir: Path, say: Callable[[str], None] = print) -> dict:
    """Each fold of ``pending`` as a task on the cluster (``pipelines.cluster.Dispatch``: the pool's arrays sent to
    the workers once); each fold's files written into ``fold-<k>/`` as it comes back, once. Returns what sending
    the arrays cost (seconds, times, bytes), for the benchmark."""
    from pipelines.cluster import Dispatch

    folds = int(fold_of.max()) + 1
    dispatch = Dispatch(client, remote_fold, pool, say)
    for fold in pending:
        dispatch.submit(f"fold {fold + 1}/{folds}", config, slug, fold_of, fold)
    if pending:
        say(f"cv: folds {', '.join(str(k + 1) for k in pending)} of {folds} sent to the cluster")
    for _, (*_, fold), files in dispatch.results():
        fold_dir = write_fold(cv_dir / f"fold-{fold + 1}", files)
        metrics = runs.read_metrics(fold_dir)
        say(f"cv: fold {fold + 1}/{folds}: val_accuracy={metrics['val_accuracy']:.4f} "
            f"({metrics['epochs_run']} epochs, {metrics['train_seconds']:.0f} s of training)")
    return {**dispatch.sent, "bytes": pool.images.nbytes + (pool.test.images.nbytes if pool.test is not None else 0)}


def combine(cv_dir: Path, pool: Pool, fold_of: np.ndarray) -> dict:
    """Gather the folds' out-of-fold and test predictions, choose the TTA on OOF, write scores and plots."""
    folds = int(fold_of.max()) + 1
    found = [read_probabilities(cv_dir / f"fold-{fold + 1}" / "val_predictions.npz") for fold in range(folds)]
    choices = [c for c in TTA_CHOICES if all(c in f.by_tta for f in found)]  # a fold may have tried fewer
    oof = {c: np.zeros((len(pool), len(pool.classes))) for c in choices}
    per_fold, tests = [], []
    for fold in range(folds):
        fold_dir = cv_dir / f"fold-{fold + 1}"
        held = np.flatnonzero(fold_of == fold)
        for choice in choices:
            oof[choice][held] = found[fold].get(choice)
        per_fold.append(runs.read_metrics(fold_dir))
        if pool.test is not None:
            tests.append(read_probabilities(fold_dir / "test_predictions.npz"))
    tta, accuracy = best_tta(oof, pool.labels)
    found = scores(pool.labels, oof[tta], pool.classes)
    write_probabilities(cv_dir / "oof_predictions.npz", Probabilities(pool.ids, oof, pool.labels, fold_of,
                                                                     [str(c) for c in pool.classes]))
    if tests:
        mean = {c: np.mean([t.get(c) for t in tests], axis=0) for c in choices}
        write_probabilities(cv_dir / "test_predictions.npz", Probabilities(tests[0].ids, mean,
                                                                          classes=[str(c) for c in pool.classes]))
    fold_accuracy = [float(np.mean(oof[tta][fold_of == k].argmax(axis=1) == pool.labels[fold_of == k]))
                     for k in range(folds)]
    metrics = {"oof_accuracy": found["accuracy"], "oof_macro_f1": found["macro_f1"], "oof_log_loss": found["log_loss"],
               "tta": tta, "oof_accuracy_by_tta": accuracy, "folds": folds, "labelled": len(pool),
               "fold_accuracy": fold_accuracy, "fold_accuracy_mean": float(np.mean(fold_accuracy)),
               "fold_accuracy_std": float(np.std(fold_accuracy)),
               "fold_epochs": [m.get("epochs_run") for m in per_fold],
               "fold_train_seconds": [m.get("train_seconds") for m in per_fold],
               "oof_per_class": found["per_class"]}
    plots.confusion_matrix(pool.labels, oof[tta].argmax(axis=1), pool.classes, cv_dir / "oof_confusion_matrix.png")
    plots.fold_learning_curves([runs.read_history(cv_dir / f"fold-{k + 1}") for k in range(folds)],
                               cv_dir / "learning_curves.png")
    write_json(cv_dir / "metrics.json", metrics)
    return metrics
