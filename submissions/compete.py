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
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from competition import settings
from competition.errors import PipelineError
from competition.fileio import write_json
from competition.registry import load_competition
from pipelines.runs import new_folder
from pipelines.tuned import make_config
from submissions.compete_plan import Plan, make_plan


@dataclass
class CompeteResult:
    submission: object  # submissions.make.Submission
    estimate: float  # the final blend's (or model's) held-out accuracy
    estimate_of: str  # "out-of-fold" (CVs) or "validation" (runs)
    folder: Path
    spent_minutes: float
    refit: bool = False  # the submission blends refits: the estimate is their sources'


def unfinished_compete(competition: str, minutes: float, refit: bool = False) -> Path | None:
    for path in sorted(settings.runs_dir().glob("compete-*"), key=lambda p: p.stat().st_mtime, reverse=True):
        state = json.loads((path / "plan.json").read_text()) if (path / "plan.json").exists() else {}
        if (state.get("competition") == competition and state.get("minutes") == minutes and not state.get("done")
                and bool(state.get("plan", {}).get("refit")) == refit):
            return path
    return None


def compete(competition: str, minutes: float, settings_: list[str] | None = None,
            say: Callable[[str], None] = print, clock: Callable[[], float] = time.time, client=None,
            fold_overhead: Callable | None = None, refit: bool = False) -> CompeteResult:
    """Run the plan for ``minutes``; return the submission and its estimated score. With a Dask ``client``
    (``pipelines.cluster.open_client``) each fold is a task on its cluster, and a fold's minutes grow with the folds
    that train side by side. ``fold_overhead(config, pool, held_out) -> seconds`` is what a fold or run spends outside
    training (``pipelines.fold.overhead_seconds``, timed here, by default). With ``refit`` each run or CV is then
    trained again on every labelled image and the submission blends the refits (``REFIT=1``)."""
    from pipelines.cluster import slots
    from pipelines.data import load_dataset
    from pipelines.fold import overhead_seconds
    from pipelines.folds import labelled_pool
    from submissions.make import blend_submission, submission_from_runs

    side_by_side = slots(client)
    plan = make_plan(minutes, side_by_side, refit)
    if not load_competition(competition).has_split("test"):
        raise PipelineError(f"{competition}: no test split; compete makes a submission, put the test files in "
                            f"data/raw/<slug>/ first (make cv works without one)")
    folder = unfinished_compete(competition, minutes, refit)
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

    def save() -> None:
        write_json(folder / "plan.json", state)

    kind = "CV" if plan.folds > 1 else "run"
    say(f"compete: plan for {minutes:g} minutes: " + ", ".join(
        f"{a} x {plan.folds} folds" if plan.folds > 1 else f"{a} x 1 run" for a in plan.archs))
    for line in plan.why:
        say(f"  - {line}")
    save()
    pool = None
    for index, arch in enumerate(plan.archs):
        if arch in state["members"]:
            say(f"compete: {arch}: {kind} already finished ({state['members'][arch]['folder']})")
            if plan.refit:
                refit_member(arch, state, save, say)
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
                refit_ratio = len(pool) / max(len(pool) - held_out, 1)  # a refit's images over a fold's or run's
            timed = fold_overhead or overhead_seconds
            overhead = timed(make_config(competition, arch, settings_, tuned="auto")[0], pool, held_out) / 60
            per_fold = plan.fold_minutes(arch, left, plan.archs[index:], side_by_side, overhead, refit_ratio)
            state["planned"][arch] = {"minutes": per_fold, "overhead": overhead}
            save()
        per_fold, overhead = state["planned"][arch]["minutes"], state["planned"][arch]["overhead"]
        what = f"{plan.folds} folds of" if plan.folds > 1 else "1 run of"
        say(f"compete: {arch}: {what} {per_fold:.1f} minutes of training (+{overhead:.1f} minutes each predicting "
            f"under every TTA view, measured), {min(side_by_side, plan.folds)} at a time ({left:.1f} minutes left)")
        config, _ = make_config(competition, arch, settings_, tuned="auto", minutes=per_fold)
        state["members"][arch] = train_member(config, plan, client, say, first=state["members"])
        state["spent"] = (clock() - started) / 60
        save()
        if plan.refit:  # right away, so the minutes left for the next architecture are what is really left
            refit_member(arch, state, save, say)
            state["spent"] = (clock() - started) / 60
            save()
    members = [Path(v["folder"]) for v in (state["refits"] if plan.refit else state["members"]).values()]
    if len(members) > 1:
        blended, made = blend_submission(members)
        estimate = blended.metrics["oof_accuracy"]
    else:
        made, estimate = submission_from_runs(members), state["members"][plan.archs[0]]["score"]
    state.update(done=True, estimate=estimate, submission=str(made.path), spent=(clock() - started) / 60)
    save()
    return CompeteResult(made, estimate, "out-of-fold" if plan.folds > 1 else "validation", folder,
                         state["spent_before"] + state["spent"], plan.refit)


def refit_member(arch: str, state: dict, save: Callable[[], None], say: Callable[[str], None]) -> None:
    """The member (run or CV) of ``arch`` trained again on every labelled image, recorded in ``state["refits"]``; a
    killed refit resumes in its folder, a finished one is not trained again."""
    from pipelines.refit import refit, refit_folder  # TensorFlow

    refits, member = state.setdefault("refits", {}), state["members"][arch]
    if refits.get(arch, {}).get("done"):
        say(f"compete: {arch}: refit already finished ({refits[arch]['folder']})")
        return
    run_dir = Path(refits[arch]["folder"]) if arch in refits else refit_folder(arch)
    refits[arch] = {"folder": str(run_dir), "done": False}
    save()
    say(f"compete: {arch}: refit of {Path(member['folder']).name} on every labelled image")
    result = refit(member["folder"], run_dir=run_dir)
    refits[arch]["done"] = True
    save()
    say(f"compete: {arch}: refit done ({result.metrics['epochs_run']} epochs, "
        f"{result.metrics['train_seconds']:.0f} s of training)")


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
