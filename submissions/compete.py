"""``make compete MINUTES=``: a CPU budget turned into the best submission this pipeline can make in it.

The plan (printed before anything starts, with its reasons): which architectures, a CV or one run each, their
minutes, whether to refit, and a blend when there are several. On one machine under ``CV_FROM`` minutes each
architecture trains once on the competition's validation split and the runs are blended on their shared validation
predictions: a CV's folds would each get a fraction of the time. From ``CV_FROM`` minutes, or with folds training
side by side on a cluster, each architecture is a CV over the same folds, blended by out-of-fold predictions. Every
run or CV chooses its TTA on its own held-out predictions; the minutes left are re-planned after each, so the whole
ends within the budget. ``runs/compete-<time>/plan.json`` records the plan and what finished; rerunning the same
command continues it (a finished fold or run is never trained again, a killed run resumes from its last epoch).
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
from pipelines.runs import new_folder
from pipelines.tuned import make_config

FOLDS = 3
# The least useful training time of one fold, and the share of a fold spent outside training (loading, predicting
# the held-out and test images under every TTA view) that the plan assumes: measured on GIC-sized data on 2 cores,
# rounded up. Before each CV the overhead is measured instead (pipelines.fold.overhead_seconds), and RESERVE is
# kept for loading the images, combining the folds and writing the submission.
MIN_FOLD_MINUTES = {"cnn": 4.0, "resnet10": 8.0}
OVERHEAD = 0.12
RESERVE = 0.03
# minutes on one machine: below this, one run per architecture instead of a CV each (on a GIC hold-out the CV plan
# at 120 minutes scored below the one-run plan at 60; no budget above 120 was measured)
CV_FROM = 240.0
TWO_ARCHS_FROM = 60.0  # minutes: below this, the cnn alone gets the whole budget (a blend was measured at 60)
ARCH_SHARE = {"cnn": 0.4, "resnet10": 0.6}


@dataclass
class CompeteResult:
    submission: object  # submissions.make.Submission
    estimate: float  # the final blend's (or model's) held-out accuracy
    estimate_of: str  # "out-of-fold" (CVs) or "validation" (runs)
    folder: Path
    spent_minutes: float


@dataclass
class Plan:
    minutes: float
    archs: list[str]
    folds: int  # 1: one run per architecture on the validation split (no CV)
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


def make_plan(minutes: float, slots: int = 1) -> Plan:
    """The plan for a budget, when ``slots`` folds can train side by side, and why; a budget too small for one cnn
    run is refused with what it needs."""
    needed = MIN_FOLD_MINUTES["cnn"] / (1 - OVERHEAD)
    if minutes < needed:
        raise PipelineError(f"MINUTES={minutes:g} is too small for one cnn run of {MIN_FOLD_MINUTES['cnn']:g} "
                            f"minutes; give MINUTES={math.ceil(needed)} or more")
    both = ["cnn", "resnet10"]
    if minutes < CV_FROM and slots == 1:
        archs = both if minutes >= TWO_ARCHS_FROM else ["cnn"]
        why = [f"one run per architecture on the validation split, no CV: under {CV_FROM:g} minutes on one machine a "
               f"CV's folds would each train a fraction as long (on a GIC hold-out: a cnn and a resnet10 run blended "
               f"0.780 in 60 minutes, a 3-fold CV of each blended 0.771 in 120)"]
        why.append(f"2 architectures (cnn {ARCH_SHARE['cnn']:.0%}, resnet10 {ARCH_SHARE['resnet10']:.0%} of the time), "
                   f"blended on their shared validation predictions" if len(archs) == 2 else
                   f"1 architecture (cnn): under {TWO_ARCHS_FROM:g} minutes a resnet10 run would get too little time")
        return Plan(minutes, archs, 1, refit=False, why=[*why, *common_reasons("run", "validation")])
    folds = FOLDS if minutes >= FOLDS * MIN_FOLD_MINUTES["cnn"] / (1 - OVERHEAD) else 2
    why = [f"{folds} folds: each architecture's models see {100 * (folds - 1) // folds}% of the labelled images, "
           f"and the out-of-fold predictions score every image once"]
    per_fold_resnet = Plan(minutes, both, folds, refit=False).fold_minutes("resnet10", minutes, both, slots)
    if minutes >= CV_FROM and per_fold_resnet >= MIN_FOLD_MINUTES["resnet10"]:
        archs = both
        why.append(f"2 architectures (cnn {ARCH_SHARE['cnn']:.0%}, resnet10 {ARCH_SHARE['resnet10']:.0%} of the "
                   f"time): different models make a blend better than either")
        why.append("blend: greedy selection on the out-of-fold predictions of both CVs")
    else:
        archs = ["cnn"]
        why.append(f"1 architecture (cnn): under {CV_FROM:g} minutes a second CV would leave each fold too little time")
    return Plan(minutes, archs, folds, refit=False, why=[*why, *common_reasons("CV", "out-of-fold")])


def common_reasons(kind: str, held_out: str) -> list[str]:
    return [f"refit skipped: a full-data model has no {held_out} predictions to weigh it in the blend, and it "
            f"would cost as much as the {kind} it copies",
            f"TTA: each {kind} picks its test-time augmentation on its {held_out} predictions"]


def unfinished_compete(competition: str, minutes: float) -> Path | None:
    for path in sorted(settings.runs_dir().glob("compete-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        state = json.loads((path / "plan.json").read_text()) if (path / "plan.json").exists() else {}
        if state.get("competition") == competition and state.get("minutes") == minutes and not state.get("done"):
            return path
    return None


def compete(competition: str, minutes: float, settings_: list[str] | None = None,
            say: Callable[[str], None] = print, clock: Callable[[], float] = time.time, client=None,
            fold_overhead: Callable | None = None) -> CompeteResult:
    """Run the plan for ``minutes``; return the submission and its estimated score. With a Dask ``client``
    (``pipelines.cluster.open_client``) each fold is a task on its cluster, and a fold's minutes grow with the folds
    that train side by side. ``fold_overhead(config, pool, held_out) -> seconds`` is what a fold or run spends outside
    training (``pipelines.fold.overhead_seconds``, timed here, by default)."""
    from pipelines.cluster import slots
    from pipelines.data import load_dataset
    from pipelines.fold import overhead_seconds
    from pipelines.folds import labelled_pool
    from submissions.make import blend_submission, submission_from_runs

    side_by_side = slots(client)
    plan = make_plan(minutes, side_by_side)
    if not load_competition(competition).has_split("test"):
        raise PipelineError(f"{competition}: no test split; compete makes a submission, put the test files in "
                            f"data/raw/<slug>/ first (make cv works without one)")
    folder = unfinished_compete(competition, minutes)
    state = json.loads((folder / "plan.json").read_text()) if folder else {}
    if folder is None:
        folder = new_folder("compete")
        state = {"competition": competition, "minutes": minutes, "plan": asdict(plan), "members": {}, "planned": {},
                 "started": clock(), "spent_before": 0.0}
    else:
        say(f"compete: continuing {folder}")
        plan = Plan(**state["plan"])  # the plan it started with, so what finished fits it
        if "cvs" in state:  # a plan.json written before runs could be members
            state["members"] = {a: {"score": v.get("oof_accuracy"), **v} for a, v in state.pop("cvs").items()}
        state.setdefault("planned", {})
        state["spent_before"] = state.get("spent_before", 0.0) + state.get("spent", 0.0)
    started = clock()
    kind = "CV" if plan.folds > 1 else "run"
    say(f"compete: plan for {minutes:g} minutes: " + ", ".join(
        f"{a} x {plan.folds} folds" if plan.folds > 1 else f"{a} x 1 run" for a in plan.archs))
    for line in plan.why:
        say(f"  - {line}")
    write_json(folder / "plan.json", state)
    pool = None
    for index, arch in enumerate(plan.archs):
        if arch in state["members"]:
            say(f"compete: {arch}: {kind} already finished ({state['members'][arch]['folder']})")
            continue
        left = minutes - state["spent_before"] - (clock() - started) / 60
        if arch not in state["planned"]:  # a killed run or CV resumes with the minutes it was given
            if pool is None:
                # a first load decodes and caches the images (with progress); training then reads the cache
                dataset = load_dataset(load_competition(competition), seed=settings.SEED)
                pool = labelled_pool(dataset)
                # what a fold or run predicts besides the test split: its share of the pool, or the validation split
                validation = len(dataset.val) if dataset.val is not None else 0
                held_out = -(-len(pool) // plan.folds) if plan.folds > 1 else validation
            timed = fold_overhead or overhead_seconds
            overhead = timed(make_config(competition, arch, settings_, tuned="auto")[0], pool, held_out) / 60
            per_fold = plan.fold_minutes(arch, left, plan.archs[index:], side_by_side, overhead)
            state["planned"][arch] = {"minutes": per_fold, "overhead": overhead}
            write_json(folder / "plan.json", state)
        per_fold, overhead = state["planned"][arch]["minutes"], state["planned"][arch]["overhead"]
        what = f"{plan.folds} folds of" if plan.folds > 1 else "1 run of"
        say(f"compete: {arch}: {what} {per_fold:.1f} minutes of training (+{overhead:.1f} minutes each predicting "
            f"under every TTA view, measured), {min(side_by_side, plan.folds)} at a time ({left:.1f} minutes left)")
        config, _ = make_config(competition, arch, settings_, tuned="auto", minutes=per_fold)
        state["members"][arch] = train_member(config, plan, client, say, first=state["members"])
        state["spent"] = (clock() - started) / 60
        write_json(folder / "plan.json", state)
    members = [Path(v["folder"]) for v in state["members"].values()]
    if len(members) > 1:
        blended, made = blend_submission(members)
        estimate = blended.metrics["oof_accuracy"]
    else:
        made, estimate = submission_from_runs(members), state["members"][plan.archs[0]]["score"]
    state.update(done=True, estimate=estimate, submission=str(made.path), spent=(clock() - started) / 60)
    write_json(folder / "plan.json", state)
    return CompeteResult(made, estimate, "out-of-fold" if plan.folds > 1 else "validation", folder,
                         state["spent_before"] + state["spent"])


def train_member(config, plan: Plan, client, say: Callable[[str], None], first: dict) -> dict:
    """One member of the final blend: a CV over the first CV's folds, or one run (``make train``'s: a killed one
    resumes from its last epoch). Its folder and held-out score."""
    if plan.folds > 1:
        from pipelines.cv import run_cv  # TensorFlow

        folds_from = Path(next(iter(first.values()))["folder"]) if first else None
        result = run_cv(config, folds=plan.folds, folds_from=folds_from, on_fold=say, client=client)
        return {"folder": str(result.cv_dir), "score": result.metrics["oof_accuracy"]}
    from pipelines.train import train  # TensorFlow

    result = train(config)
    say(f"compete: {config.arch}: val_accuracy={result.metrics['val_accuracy']:.4f} "
        f"({result.metrics['epochs_run']} epochs, {result.metrics['train_seconds']:.0f} s of training)")
    return {"folder": str(result.run_dir), "score": result.metrics["val_accuracy"]}
