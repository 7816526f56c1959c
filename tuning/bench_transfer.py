"""``make bench-tune-transfer``: does what ``make tune`` finds beat the untuned ``make train`` at the same budget?

On a competition's train split, with a private stratified hold-out the search never sees (the competition's labelled
test split when it has one, like the dev copy ``gic-dev``; otherwise ``--holdout`` of the train split, set aside as
``data/raw/<slug>-private/``), it runs ``make tune MINUTES=`` (its own study, the user's tuned-settings file left
alone), then trains the default recipe and the check's best candidate at the final budget exactly as ``make train``
does, and prints both private accuracies, the accuracy of what ``make train`` would use (the candidate only when
the check let it win) and the difference. Report: ``reports/bench-tune-transfer/<slug>-<arch>.{md,json}``.

    KIP_HOME=/work/exp make bench-tune-transfer COMPETITION=gic-dev      # MINUTES=60 + 2 x 18 minutes
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from competition import settings  # noqa: E402
from competition.config import Competition  # noqa: E402
from competition.errors import PipelineError  # noqa: E402
from competition.fileio import write_json, write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from tuning.fidelity import CheckOptions, Fidelity, describe, parse_options  # noqa: E402

TARGET_POINTS, TARGET_TRIALS = 1.5, 20


def private_holdout(competition: Competition, fraction: float, seed: int) -> Competition:
    """The competition itself when its test split is labelled; else a copy of it whose test split is a stratified
    ``fraction`` of its train split (the same image files), written once to ``data/raw/<slug>-private/``."""
    if competition.test_labels and (competition.raw_dir / competition.test_labels).is_file():
        return competition
    train = competition.split_source("train") if competition.splits else None
    if train is None or train.csv is None or not train.csv.is_file():
        raise PipelineError(f"{competition.slug}: no labelled test split (test_labels) and no train CSV to hold "
                            f"images out of; use a competition with one of them (e.g. COMPETITION=gic-dev)")
    slug = f"{competition.slug}-private"
    raw = settings.raw_dir(slug)
    if not (raw / "competition.toml").exists():
        frame = pd.read_csv(train.csv, dtype={competition.image_column: str})
        rest, held = train_test_split(frame, test_size=fraction, stratify=frame[competition.label_column],
                                      random_state=seed)
        raw.mkdir(parents=True, exist_ok=True)
        rest.to_csv(raw / "train.csv", index=False)
        held[[competition.image_column]].to_csv(raw / "test.csv", index=False)
        held.to_csv(raw / "test_labels.csv", index=False)
        size = f"image_size = {list(competition.image_size)}\n" if competition.image_size else ""
        write_text(raw / "competition.toml",
                   f"slug = {json.dumps(slug)}\nimage_column = {json.dumps(competition.image_column)}\n"
                   f"label_column = {json.dumps(competition.label_column)}\n{size}channels = {competition.channels}\n"
                   f"image_extension = {json.dumps(competition.image_extension)}\n"
                   f"test_labels = \"test_labels.csv\"\nsample_submission = \"\"\n"
                   f"[splits.train]\ncsv = \"train.csv\"\nimages = {json.dumps(str(train.images))}\n"
                   f"[splits.test]\ncsv = \"test.csv\"\nimages = {json.dumps(str(train.images))}\n")
    return load_competition(slug)


def private_accuracy(run_dir: Path, competition: Competition) -> float:
    """Accuracy of a run (with the TTA it chose on validation) on the labelled test split."""
    from pipelines.predict import predict

    prediction = predict([run_dir], progress=False)
    truth = pd.read_csv(competition.raw_dir / competition.test_labels, dtype=str)
    truth = truth.set_index(competition.image_column)[competition.label_column]
    labels = truth.reindex([str(i) for i in prediction.ids])
    if labels.isna().any():
        raise PipelineError(f"{competition.raw_dir / competition.test_labels}: no label for image "
                            f"{labels.index[labels.isna()][0]!r}; the labels must cover the test split")
    return float(np.mean(labels.to_numpy() == np.array([str(x) for x in prediction.labels])))


def report(result: dict) -> str:
    r, c = result, result["check"]
    lines = [f"# bench-tune-transfer: {r['competition']}, {r['arch']}", "",
             f"make tune MINUTES={r['minutes']:g} (fidelity {r['fidelity']}, pruner {r['pruner']}) on "
             f"{r['train_images']} train / {r['holdout_images']} hold-out images, then make train at "
             f"{r['final_minutes']:g} minutes with each recipe, scored on {r['private_images']} private images the "
             f"search never saw; {os.cpu_count()} CPUs.", "",
             f"- search: {r['finished']} trials finished ({r['states'].get('complete', 0)} complete + "
             f"{r['states'].get('pruned', 0)} pruned), {r['states'].get('fail', 0)} failed, in "
             f"{r['search_minutes']:.1f} minutes (target >= {TARGET_TRIALS}: "
             f"{'met' if r['finished'] >= TARGET_TRIALS else 'MISSED'})",
             f"- final check: {'tuned parameters win' if c['beats_default'] else 'the default stays'}: {c['why']}", "",
             "| recipe | private accuracy |", "|---|---|",
             f"| default | {r['private']['default']:.4f} |"]
    if r["private"].get("candidate") is not None:
        lines.append(f"| best candidate (trial {c['trial']}) | {r['private']['candidate']:.4f} |")
    points = r["difference_points"]
    lines += [f"| what make train uses ({'tuned' if c['beats_default'] else 'default'}) | "
              f"{r['private']['make_train']:.4f} |", "",
              f"- difference, what make train uses minus the default: {points:+.2f} points (target >= "
              f"+{TARGET_POINTS}: {'met' if points >= TARGET_POINTS else 'MISSED'}; never loses: "
              f"{'yes' if points >= 0 else 'NO'})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, clock=time.time) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--competition", default="gic-dev")
    parser.add_argument("--arch", default=settings.DEFAULT_ARCH)
    parser.add_argument("--minutes", type=float, default=60.0, help="make tune MINUTES=, the final check included")
    parser.add_argument("--trials", type=int, default=None, help="also stop after this many trials")
    parser.add_argument("--fidelity", default="")
    parser.add_argument("--check", default="")
    parser.add_argument("--pruner", default="sha")
    parser.add_argument("--holdout", type=float, default=0.15, help="private share of train when test is unlabelled")
    parser.add_argument("--set", action="append", default=None, help="training settings, as make train SET=")
    parser.add_argument("--space", action="append", default=None, help="search-space overrides, as make tune SPACE=")
    args = parser.parse_args(argv)

    from pipelines.data import load_dataset
    from pipelines.train import train
    from pipelines.tuned import make_config
    from tuning.search import TuneOptions, tune
    from tuning.space import build_space
    from tuning.storage import count_states

    options = TuneOptions(trials=args.trials, minutes=args.minutes, pruner=args.pruner, record=False,
                          fidelity=parse_options(args.fidelity, Fidelity, "FIDELITY"),
                          check=parse_options(args.check, CheckOptions, "CHECK"))
    competition = private_holdout(load_competition(args.competition), args.holdout, 2026)
    config, _ = make_config(competition.slug, args.arch, args.set, tuned="0")
    space = build_space(config.arch, args.space or [])
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = settings.runs_dir() / f"bench-transfer-{competition.slug}-{config.arch}-{stamp}"
    options.storage, options.study = f"sqlite:///{out / 'studies.db'}", f"transfer-{stamp}"
    dataset = load_dataset(competition, seed=config.seed, progress=config.verbose > 0)
    started = clock()
    study = tune(config, space, options, dataset=dataset, clock=clock)
    search_minutes = (clock() - started) / 60
    check, states = study.user_attrs["check"], count_states(study)
    private = {"default": private_accuracy(train(config, dataset=dataset, run_dir=out / "default",
                                                 clock=clock).run_dir, competition)}
    if check["params"]:
        run = train(config.update(**check["params"]), dataset=dataset, run_dir=out / "candidate", clock=clock)
        private["candidate"] = private_accuracy(run.run_dir, competition)
    private["make_train"] = private["candidate"] if check["beats_default"] else private["default"]
    result = {"competition": competition.slug, "arch": config.arch, "minutes": args.minutes,
              "final_minutes": config.minutes, "fidelity": study.user_attrs.get("fidelity"), "pruner": args.pruner,
              "train_images": len(dataset.train), "holdout_images": len(dataset.val),
              "private_images": len(dataset.test) if dataset.test is not None else 0,
              "search_minutes": round(search_minutes, 2), "states": states,
              "finished": states.get("complete", 0) + states.get("pruned", 0), "check": check, "private": private,
              "difference_points": round(100 * (private["make_train"] - private["default"]), 2),
              "study": {"storage": options.storage, "name": options.study}}
    result["fidelity"] = describe(result["fidelity"] or {})
    text = report(result)
    print("\n" + text)
    where = settings.home() / "reports" / "bench-tune-transfer"
    write_text(where / f"{competition.slug}-{config.arch}.md", text)
    write_json(where / f"{competition.slug}-{config.arch}.json", result)
    print(f"bench-tune-transfer: {where / f'{competition.slug}-{config.arch}.md'}")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except PipelineError as err:
        raise SystemExit(f"error: {err}") from None
