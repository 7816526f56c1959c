"""The plan of ``make compete``: which architectures, a CV or one run each, their minutes, whether to refit, and
why. Pure arithmetic on the budget, so tests check it without training."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from competition.errors import PipelineError

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
# a refit's training time over its source's: all labelled images against a run's train split (1 / 0.85) or a fold's
# share; the plan assumes this before the data is loaded, compete then uses the measured ratio of image counts
REFIT_RATIO = 1.25


@dataclass
class Plan:
    minutes: float
    archs: list[str]
    folds: int  # 1: one run per architecture on the validation split (no CV)
    refit: bool
    why: list[str] = field(default_factory=list)

    def fold_minutes(self, arch: str, minutes_left: float, archs_left: list[str], slots: int = 1,
                     overhead_minutes: float | None = None, refit_ratio: float | None = None) -> float:
        """Training minutes per fold for ``arch``, out of what is left for it and the architectures after it, when
        ``slots`` folds train side by side (the workers of a Dask cluster) and each fold spends ``overhead_minutes``
        outside its training (``OVERHEAD`` of the fold when not measured). With a refit, its training
        (``refit_ratio`` times a fold's, ``REFIT_RATIO`` when not measured) and its overhead come out of the same
        share."""
        share = ARCH_SHARE[arch] / sum(ARCH_SHARE[a] for a in archs_left)
        rounds = math.ceil(self.folds / slots)
        ratio = (REFIT_RATIO if refit_ratio is None else refit_ratio) if self.refit else 0.0
        if overhead_minutes is None:
            return max(minutes_left * share * (1 - OVERHEAD) / (rounds + ratio), 0.5)
        overheads = (rounds + (1 if self.refit else 0)) * overhead_minutes
        return max((minutes_left * share * (1 - RESERVE) - overheads) / (rounds + ratio), 0.5)


def make_plan(minutes: float, slots: int = 1, refit: bool = False) -> Plan:
    """The plan for a budget, when ``slots`` folds can train side by side, and why; a budget too small for one cnn
    run (and its refit, when asked) is refused with what it needs."""
    needed = MIN_FOLD_MINUTES["cnn"] * (1 + (REFIT_RATIO if refit else 0)) / (1 - OVERHEAD)
    if minutes < needed:
        raise PipelineError(f"MINUTES={minutes:g} is too small for one cnn run of {MIN_FOLD_MINUTES['cnn']:g} "
                            f"minutes{' and its refit' if refit else ''}; give MINUTES={math.ceil(needed)} or more")
    plan = plan_for(minutes, slots)
    if not refit:
        return plan
    kind, held_out = ("CV", "out-of-fold") if plan.folds > 1 else ("run", "validation")
    why = [line for line in plan.why if not line.startswith("refit skipped")]
    why.insert(-1, f"refit (REFIT=1): each {kind} is trained again on every labelled image for the epochs it ran, its "
                   f"minutes cut to leave room; the submission blends the refits, each weighed by its {kind}'s "
                   f"{held_out} predictions (a refit has none of its own), so the estimate is the {kind}s'")
    return Plan(minutes, plan.archs, plan.folds, refit=True, why=why)


def plan_for(minutes: float, slots: int) -> Plan:
    """The plan without a refit."""
    both = ["cnn", "resnet10"]
    if minutes < CV_FROM and slots == 1:
        archs = both if minutes >= TWO_ARCHS_FROM else ["cnn"]
        why = [f"one run per architecture on the validation split, no CV: under {CV_FROM:g} minutes on one machine a "
               f"CV's folds would each train a fraction as long (on a GIC hold-out: a cnn and a resnet10 run blended "
               f"0.780 in 60 minutes and 0.785 in 120, a 3-fold CV of each 0.771 in 120)"]
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
    return [f"refit skipped: it would cost about as much again as the {kind} it copies (at 60 minutes on a GIC "
            f"hold-out the refits blended 0.764, the plan without them 0.780; REFIT=1 asks for one)",
            f"TTA: each {kind} picks its test-time augmentation on its {held_out} predictions"]
