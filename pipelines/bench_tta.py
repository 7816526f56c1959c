"""Which test-time augmentation views pay, measured on finished runs against their private hold-out.

For each run (of a competition whose test split is labelled, e.g. a ``make bench-recipe`` hold-out), the run's model
predicts its own validation images (the ids in its ``val_predictions.npz``) and the private test images under every
view, and each view set is scored on both: the TTA choices of ``pipelines.inference`` and the older four-shift sets
(``shift4``: right, left, down, up). ``auto`` picks on validation as training does (ties: fewer views), among today's
choices and among the four-shift ones, and reports the pick's private accuracy. Nothing is trained.

    python -m pipelines.bench_tta RUN [RUN ...]     (make bench-tta RUNS="...")
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipelines.quiet import import_tensorflow

import_tensorflow()
import numpy as np  # noqa: E402

from competition import settings  # noqa: E402
from competition.errors import run_main  # noqa: E402
from competition.fileio import write_text  # noqa: E402
from competition.registry import load_competition  # noqa: E402
from pipelines import runs  # noqa: E402
from pipelines.evaluate import best_tta, tta_probabilities  # noqa: E402
from pipelines.holdout import test_labels  # noqa: E402
from pipelines.inference import TTA_CHOICES, views_of  # noqa: E402

FOUR = ("right", "left", "down", "up")
VIEW_SETS = {**TTA_CHOICES, "shift4": ("identity", *FOUR),
             "flip+shift4": ("identity", "mirror", *FOUR, *(f"mirror-{name}" for name in FOUR))}
AUTO = {"auto": tuple(TTA_CHOICES), "auto (four shifts)": ("none", "flip", "shift4", "flip+shift4")}


def private_labels(competition, ids, classes) -> np.ndarray:
    """Class ids of the test images ``ids`` from the competition's test labels (``pipelines.holdout``); a label no
    class has is -1, which no prediction matches (as ``holdout.private_accuracy`` counts it)."""
    index = {str(name): i for i, name in enumerate(classes)}
    return np.array([index.get(label, -1) for label in test_labels(competition, ids)])


def bench_run(run_dir: Path) -> dict:
    """Validation and private accuracy of every view set, and what ``auto`` picks, for one finished run."""
    from pipelines.data import load_dataset  # TensorFlow from here on
    from pipelines.folds import labelled_pool
    from pipelines.models import load_model
    from pipelines.normalize import Standardizer
    from pipelines.probabilities import read_probabilities

    config = runs.read_config(run_dir)
    competition = load_competition(config["competition"])
    dataset = load_dataset(competition, seed=config["seed"], progress=False)
    pool = labelled_pool(dataset)
    position = {str(image_id): i for i, image_id in reversed(list(enumerate(pool.ids)))}
    val_ids = [str(i) for i in read_probabilities(run_dir / "val_predictions.npz").ids]
    val_rows = [position[i] for i in val_ids]
    val_labels, private = pool.labels[val_rows], private_labels(competition, dataset.test.ids, dataset.classes)
    model, standardizer = load_model(run_dir / "model.keras"), Standardizer.load(run_dir / "normalization.npz")
    views = views_of(VIEW_SETS, VIEW_SETS)
    print(f"bench-tta: {run_dir}: {len(views)} views of {len(val_rows)} validation and {len(dataset.test)} test images",
          flush=True)
    val_sets, test_sets = (tta_probabilities(model, images, standardizer, VIEW_SETS, VIEW_SETS)
                           for images in (pool.images[val_rows], dataset.test.images))
    scores = {name: (float(np.mean(val_sets[name].argmax(axis=1) == val_labels)),
                     float(np.mean(test_sets[name].argmax(axis=1) == private)))
              for name in VIEW_SETS}
    picks = {auto: best_tta({c: val_sets[c] for c in choices}, val_labels, VIEW_SETS)[0]
             for auto, choices in AUTO.items()}
    return {"run": str(run_dir), "scores": scores, "picks": picks}


def report(results: list[dict]) -> str:
    """A Markdown table: each run's private accuracy per view set and per ``auto``, validation in brackets."""
    names = list(VIEW_SETS)
    lines = ["| run | " + " | ".join(names) + " | " + " | ".join(AUTO) + " |",
             "|---" * (1 + len(names) + len(AUTO)) + "|"]
    for result in results:
        scores, picks = result["scores"], result["picks"]
        cells = [f"{scores[n][1]:.4f} ({scores[n][0]:.4f})" for n in names]
        cells += [f"{scores[picks[a]][1]:.4f} ({picks[a]})" for a in AUTO]
        lines.append(f"| {Path(result['run']).name} | " + " | ".join(cells) + " |")
    gains = [r["scores"][r["picks"]["auto"]][1] - r["scores"][r["picks"]["auto (four shifts)"]][1] for r in results]
    lines += ["", f"auto minus auto (four shifts), private accuracy: mean {100 * np.mean(gains):+.2f} points over "
              f"{len(gains)} run(s) ({sum(g > 0 for g in gains)} up, {sum(g < 0 for g in gains)} down)"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="bench_tta", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished run folders")
    args = parser.parse_args(argv)
    text = report([bench_run(runs.resolve_run(run)) for run in args.runs])
    print(text, end="")
    out = settings.reports_dir("bench-tta") / "bench-tta.md"
    write_text(out, "# bench-tta\n\n" + text)
    print(f"bench-tta: {out}")


if __name__ == "__main__":
    run_main(main)
