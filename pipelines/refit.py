"""``make refit``: the settings of a finished run or CV, trained again on every labelled image.

It trains for the number of epochs the source ran (for a CV, the folds' mean), with the schedule fitted to that
many epochs and no validation split, so it has no validation score of its own: ``metrics.json`` carries the
source's validation or out-of-fold accuracy as ``estimate``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_json
from competition.registry import load_competition
from pipelines import runs
from pipelines.config import TrainConfig
from pipelines.data import Dataset, load_dataset
from pipelines.folds import labelled_pool
from pipelines.members import read_member
from pipelines.train import RunResult, train


def refit_config(source) -> TrainConfig:
    """The source's settings with ``epochs`` fixed to what it ran, no time budget, and its TTA choice."""
    member = read_member(source)
    if member.kind not in ("run", "cv"):
        raise PipelineError(f"{source}: a {member.kind} cannot be refitted; give a run or a CV folder")
    saved = runs.read_config(source)
    metrics = runs.read_metrics(source)
    epochs = metrics.get("epochs_run") if member.kind == "run" else round(float(np.mean(metrics["fold_epochs"])))
    if not epochs:
        raise PipelineError(f"{source}: it ran no epoch; nothing to refit")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in saved.items() if k in fields})
    return config.update(minutes=0, epochs=int(epochs), patience=int(epochs) + 1, tta=member.tta)


def refit_folder(arch: str):
    """Where a new refit of ``arch`` goes: ``runs/<arch>-<time>-refit/``."""
    return settings.runs_dir() / f"{arch}-{settings.stamp()}-refit"


def refit(source, progress: bool = True, run_dir=None) -> RunResult:
    """Train ``source``'s settings on every labelled image; write ``run_dir`` (a killed refit named again resumes
    from its last epoch), by default a new ``refit_folder``."""
    member = read_member(source)
    config = refit_config(source)
    dataset = load_dataset(load_competition(config.competition), seed=config.seed, progress=progress)
    pool = labelled_pool(dataset)
    everything = Dataset(train=pool.part(np.arange(len(pool))), val=None, test=dataset.test, classes=pool.classes)
    run_dir = run_dir or refit_folder(config.arch)
    result = train(config, dataset=everything, run_dir=run_dir)
    saved = runs.read_config(run_dir)
    write_json(run_dir / "config.json", {**saved, "kind": "refit", "refit_of": str(member.path)})
    estimate = {"estimate": member.score, "estimate_of": f"{member.kind} {member.path.name}",
                "note": "a refit trains on every labelled image: it has no validation score of its own"}
    write_json(run_dir / "metrics.json", {**result.metrics, **estimate})
    return RunResult(run_dir, {**result.metrics, **estimate}, result.history)
