"""``make compete MINUTES=``: a CPU budget turned into the best submission this pipeline can make in it.

The plan (printed before anything starts, with its reasons): which architectures, how many folds each and their
minutes, whether to refit, and a blend by out-of-fold predictions when there are several CVs. Each architecture is
a CV over the same folds (so they can be blended); each CV chooses its TTA on its out-of-fold predictions; the
minutes left are re-planned after each CV so the whole ends within the budget. ``runs/compete-<time>/plan.json``
records the plan and what finished; rerunning the same command continues it (finished folds are never trained
again).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_json
from competition.registry import load_competition
from pipelines.tuned import make_config

FOLDS = 3
# The least useful training time of one fold, and the share of a fold spent outside training (loading, predicting
# the held-out and test images under every TTA view) that the plan assumes: measured on GIC-sized data on 2 cores,
# rounded up. Before each CV the overhead is measured instead (pipelines.fold.overhead_seconds), and RESERVE is
# kept for loading the images, combining the folds and writing the submission.
MIN_FOLD_MINUTES = {"cnn": 4.0, "resnet10": 8.0}
OVERHEAD = 0.12
RESERVE = 0.03
TWO_ARCHS_FROM = 90.0  # minutes: below this, one architecture's CV gets the whole budget
ARCH_SHARE = {"cnn": 0.4, "resnet10": 0.6}


@dataclass
class Plan:
    minutes: float
    archs: list[str]
    folds: int
    refit: bool
    why: list[str] = field(default_factory=list)

    def fold_minutes(self, arch: str, minutes_left: float, archs_left: list[str], slots: int = 1,
                     overhead_minutes: float | None = None) -> float:
        """Training minutes per fold for ``arch``, out of what is left for it and the architectures after it, when
        ``slots`` folds train side by side (the workers of a Dask cluster) and each fold spends ``overhead_minutes``
        outside its training (``OVERHEAD`` of the fold when not measured)."""
        share = ARCH_SHARE[arch] / sum(ARCH_SHARE[a] for a in archs_left)
        rounds = math.ceil(self.folds / slots)
        if overhead_minutes is None:
            return max(minutes_left * share * (1 - OVERHEAD) / rounds, 0.5)
        return max(minutes_left * share * (1 - RESERVE) / rounds - overhead_minutes, 0.5)


def make_plan(minutes: float) -> Plan:
    """The plan for a budget, and why; a budget too small for a 2-fold CV of the cnn is refused with what it needs."""
    needed = 2 * MIN_FOLD_MINUTES["cnn"] / (1 - OVERHEAD)
    if minutes < needed:
        raise PipelineError(f"MINUTES={minutes:g} is too small for one CV of 2 folds of cnn at "
                            f"{MIN_FOLD_MINUTES['cnn']:g} minutes each; give MINUTES={needed:.0f} or more")
    folds = FOLDS if minutes >= FOLDS * MIN_FOLD_MINUTES["cnn"] / (1 - OVERHEAD) else 2
    why = [f"{folds} folds: each architecture's models see {100 * (folds - 1) // folds}% of the labelled images, "
           f"and the out-of-fold predictions score every image once"]
    both = ["cnn", "resnet10"]
    per_fold_resnet = Plan(minutes, both, folds, refit=False).fold_minutes("resnet10", minutes, both)
    if minutes >= TWO_ARCHS_FROM and per_fold_resnet >= MIN_FOLD_MINUTES["resnet10"]:
        archs = both
        why.append(f"2 architectures (cnn {ARCH_SHARE['cnn']:.0%}, resnet10 {ARCH_SHARE['resnet10']:.0%} of the "
                   f"time): different models make a blend better than either")
        why.append("blend: greedy selection on the out-of-fold predictions of both CVs")
    else:
        archs = ["cnn"]
        why.append(f"1 architecture (cnn): under {TWO_ARCHS_FROM:g} minutes a second CV would leave each fold "
                   f"too little time")
    why.append("refit skipped: a full-data model has no out-of-fold predictions to weigh it in the blend, and it "
               "would cost as much as the CV it copies")
    why.append("TTA: each CV picks its test-time augmentation on its out-of-fold predictions")
    return Plan(minutes, archs, folds, refit=False, why=why)


def unfinished_compete(competition: str, minutes: float) -> Path | None:
    for path in sorted(settings.runs_dir().glob("compete-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        state = json.loads((path / "plan.json").read_text()) if (path / "plan.json").exists() else {}
        if state.get("competition") == competition and state.get("minutes") == minutes and not state.get("done"):
            return path
    return None


def compete(competition: str, minutes: float, settings_: list[str] | None = None,
            say: Callable[[str], None] = print, clock: Callable[[], float] = time.time, client=None,
            fold_overhead: Callable | None = None):
    """Run the plan for ``minutes``; return the submission (``submissions.make.Submission``) and the OOF estimate.
    With a Dask ``client`` (``pipelines.cluster.open_client``) each fold is a task on its cluster, and a fold's
    minutes grow with the folds that train side by side. ``fold_overhead(config, pool, folds) -> seconds`` is what
    a fold spends outside training (``pipelines.fold.overhead_seconds``, timed here, by default)."""
    from pipelines.cluster import slots
    from pipelines.cv import run_cv  # TensorFlow
    from pipelines.data import load_dataset
    from pipelines.fold import overhead_seconds
    from pipelines.folds import labelled_pool
    from submissions.make import blend_submission, submission_from_runs

    plan = make_plan(minutes)
    if not load_competition(competition).has_split("test"):
        raise PipelineError(f"{competition}: no test split; compete makes a submission, put the test files in "
                            f"data/raw/<slug>/ first (make cv works without one)")
    folder = unfinished_compete(competition, minutes)
    state = json.loads((folder / "plan.json").read_text()) if folder else {}
    if folder is None:
        folder = settings.runs_dir() / f"compete-{time.strftime('%Y%m%d-%H%M%S')}"
        folder.mkdir(parents=True)
        state = {"competition": competition, "minutes": minutes, "plan": asdict(plan), "cvs": {},
                 "started": clock(), "spent_before": 0.0}
    else:
        say(f"compete: continuing {folder}")
        state["spent_before"] = state.get("spent_before", 0.0) + state.get("spent", 0.0)
    started = clock()
    say(f"compete: plan for {minutes:g} minutes: " + ", ".join(f"{a} x {plan.folds} folds" for a in plan.archs))
    for line in plan.why:
        say(f"  - {line}")
    write_json(folder / "plan.json", state)
    first = pool = None
    for index, arch in enumerate(plan.archs):
        left = minutes - state["spent_before"] - (clock() - started) / 60
        side_by_side = slots(client)
        if pool is None:
            # a first load decodes and caches the images (with progress); run_cv then reads the cache
            pool = labelled_pool(load_dataset(load_competition(competition), seed=settings.SEED))
        timed = fold_overhead or overhead_seconds
        overhead = timed(make_config(competition, arch, settings_, tuned="auto")[0], pool, plan.folds) / 60
        per_fold = plan.fold_minutes(arch, left, plan.archs[index:], side_by_side, overhead)
        say(f"compete: {arch}: {plan.folds} folds of {per_fold:.1f} minutes of training (+{overhead:.1f} minutes "
            f"each predicting under every TTA view, measured), {min(side_by_side, plan.folds)} at a time "
            f"({left:.1f} minutes left)")
        config, _ = make_config(competition, arch, settings_, tuned="auto", minutes=per_fold)
        result = run_cv(config, folds=plan.folds, folds_from=first, on_fold=say, client=client)
        first = first or result.cv_dir
        state["cvs"][arch] = {"folder": str(result.cv_dir), "oof_accuracy": result.metrics["oof_accuracy"]}
        state["spent"] = (clock() - started) / 60
        write_json(folder / "plan.json", state)
    members = [Path(v["folder"]) for v in state["cvs"].values()]
    if len(members) > 1:
        blended, made = blend_submission(members)
        estimate = blended.metrics["oof_accuracy"]
    else:
        made, estimate = submission_from_runs(members), state["cvs"][plan.archs[0]]["oof_accuracy"]
    state.update(done=True, estimate=estimate, submission=str(made.path), spent=(clock() - started) / 60)
    write_json(folder / "plan.json", state)
    return made, estimate, state["spent_before"] + state["spent"]
