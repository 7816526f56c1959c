"""Prediction: class probabilities for a split from one run or an average over several."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from competition.errors import PipelineError
from competition.fileio import atomic_path
from competition.registry import load_competition
from pipelines.data import read_image
from pipelines.inference import predict_probabilities
from pipelines.members import check_members, read_member, test_probabilities
from pipelines.models import load_model
from pipelines.normalize import Standardizer
from pipelines.runs import read_config, read_metrics


@dataclass
class Prediction:
    """Probabilities (N, num_classes) for ``ids``; ``classes`` maps a column to the competition's label."""

    ids: list[str]
    probabilities: np.ndarray
    classes: list
    runs: list[Path]
    competition: str

    @property
    def labels(self) -> list:
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)]


def check_runs(runs: list[Path]) -> list[dict]:
    """The runs' configs, checked to be of one competition and class list."""
    if not runs:
        raise PipelineError("no run to predict with; train one first")
    configs = [read_config(run) for run in runs]
    slugs = {c["competition"] for c in configs}
    if len(slugs) > 1 or any(c["classes"] != configs[0]["classes"] for c in configs):
        raise PipelineError(f"runs {', '.join(map(str, runs))} are not of one competition and class list")
    return configs


def run_tta(run: Path, tta: str | None = None) -> str:
    """The TTA to predict with: ``tta`` when given, else the one the run chose on its validation split."""
    if tta is not None:
        return tta
    return (read_metrics(run) or {}).get("tta") or "none"


def average_probabilities(runs: list[Path], images: np.ndarray, tta: str | None = None) -> np.ndarray:
    """The mean of the runs' class probabilities for uint8 ``images``, each with its own TTA unless ``tta``."""
    total = None
    for run in runs:
        model_path = Path(run) / "model.keras"
        if not model_path.exists():
            raise PipelineError(f"{model_path}: missing; the run did not finish an epoch")
        model = load_model(model_path)
        probs = predict_probabilities(model, images, Standardizer.load(Path(run) / "normalization.npz"),
                                      tta=run_tta(run, tta))
        total = probs if total is None else total + probs
        keras.backend.clear_session()
    return total / len(runs)


def predict(runs: list[Path], progress: bool = True, tta: str | None = None) -> Prediction:
    """Average the test probabilities of ``runs`` (runs, CVs, blends or refits, all of one competition and class
    list), each with the TTA it chose on validation, or with ``tta`` (a ``pipelines.inference.TTA_CHOICES`` name)."""
    members = [read_member(run) for run in runs]
    check_members(members)
    found = [test_probabilities(m, tta, progress) for m in members]
    ids = found[0].ids
    total = 0
    for member, probabilities in zip(members, found):
        if set(probabilities.ids) != set(ids):
            raise PipelineError(f"{member.path}: predicted other test images than {members[0].path}")
        position = {image_id: i for i, image_id in enumerate(probabilities.ids)}
        total = total + next(iter(probabilities.by_tta.values()))[[position[i] for i in ids]]
    return Prediction(ids=ids, probabilities=total / len(members), classes=members[0].classes,
                      runs=[Path(r) for r in runs], competition=members[0].slug)


def top_classes(runs: list[Path], image: Path, k: int = 5, tta: str | None = None) -> list[tuple]:
    """The ``k`` most likely classes of one image file, as ``(label, probability)``, best first."""
    configs = check_runs(runs)
    competition = load_competition(configs[0]["competition"])
    pixels = read_image(Path(image), competition)
    expected = tuple(configs[0]["input_shape"])
    if pixels.shape != expected:
        raise PipelineError(f"{image}: shape {pixels.shape} after conversion, the model needs {expected}; "
                            f"set image_size in the competition's config")
    probs = average_probabilities(runs, pixels[None], tta=tta)[0]
    order = np.argsort(probs)[::-1][:k]
    return [(configs[0]["classes"][i], float(probs[i])) for i in order]


def save_probabilities(prediction: Prediction, path: Path) -> Path:
    """Store ``ids`` (text), ``probabilities`` (N, num_classes) float32 in ``ids`` order and ``classes`` (the label
    of each column, as text) in one ``.npz``, atomically; no pickled objects, so ``allow_pickle=False`` loads it."""
    arrays = {"ids": np.asarray([str(i) for i in prediction.ids], dtype=str),
              "probabilities": prediction.probabilities.astype(np.float32),
              "classes": np.asarray([str(c) for c in prediction.classes], dtype=str)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle: np.savez adds ".npz" to a name without it
            np.savez(handle, **arrays)
    return path
