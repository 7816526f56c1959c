"""What a submission, a blend or pseudo-labels can be made from: a run, a CV, a blend or a refit folder.

Each such folder holds ``config.json`` (``kind``: run, cv, blend or refit; the competition, the classes) and
``metrics.json`` (its validation, out-of-fold or estimated score and its TTA choice); runs keep their validation
predictions in ``val_predictions.npz``, CVs and blends their out-of-fold ones in ``oof_predictions.npz`` and their
test predictions in ``test_predictions.npz``. This module reads them; the modules that write them own their files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras

from competition.errors import PipelineError
from competition.registry import load_competition
from pipelines import runs
from pipelines.data import load_split
from pipelines.evaluate import tta_probabilities
from pipelines.models import load_model
from pipelines.normalize import Standardizer
from pipelines.probabilities import Probabilities, read_probabilities

KINDS = ("run", "cv", "blend", "refit")


@dataclass
class Member:
    path: Path
    kind: str
    competition: str  # what load_competition takes
    slug: str
    classes: list
    tta: str
    score: float | None  # validation accuracy (run), out-of-fold accuracy (cv, blend), the source's (refit)

    @property
    def name(self) -> str:
        return self.path.name


def read_member(path: Path) -> Member:
    """A finished run, CV, blend or refit folder; one line saying what is missing otherwise."""
    path = Path(path)
    config = runs.read_config(path)
    metrics = runs.read_metrics(path)
    if metrics is None:
        raise PipelineError(f"{path}: not finished (no metrics.json); finish it (rerun the same command) first")
    kind = config.get("kind", "refit" if config.get("refit_of") else "run")
    score = metrics.get("oof_accuracy", metrics.get("val_accuracy", metrics.get("estimate")))
    return Member(path, kind, config["competition"], config.get("slug") or load_competition(config["competition"]).slug,
                  config["classes"], metrics.get("tta") or "none", score)


def validation_probabilities(member: Member) -> Probabilities:
    """Out-of-fold (CV, blend) or validation (run) predictions. A refit has none of its own (it trained on every
    labelled image): it stands in with its source's, so a blend weighs it as it weighed its source, the usual
    practice of choosing the weights on held-out predictions and applying them to full-data models."""
    if member.kind == "refit":
        source = runs.read_config(member.path).get("refit_of")
        if not source or not Path(source).is_dir():
            raise PipelineError(f"{member.path}: a refit has no validation predictions of its own and its source "
                                f"{source or '(not recorded)'} is gone; blend the source's run or CV instead")
        return validation_probabilities(read_member(Path(source)))
    name = "val_predictions.npz" if member.kind == "run" else "oof_predictions.npz"
    return read_probabilities(member.path / name)


def test_probabilities(member: Member, tta: str | None = None, progress: bool = True) -> Probabilities:
    """Test predictions under ``tta`` (default: the member's own choice): saved ones for a CV or blend, else
    predicted with the run's model."""
    tta = tta or member.tta
    saved = member.path / "test_predictions.npz"
    if saved.exists():
        found = read_probabilities(saved)
        return Probabilities(found.ids, {tta: found.get(tta)}, classes=member.classes)
    if member.kind not in ("run", "refit"):
        raise PipelineError(f"{saved}: missing; the {member.kind} had no test split to predict")
    model_path = member.path / "model.keras"
    if not model_path.exists():
        raise PipelineError(f"{model_path}: missing; the run did not finish an epoch")
    ids, images, _ = load_split(load_competition(member.competition), "test", labelled=False, progress=progress)
    model = load_model(model_path)
    probabilities = tta_probabilities(model, images, Standardizer.load(member.path / "normalization.npz"), (tta,))
    keras.backend.clear_session()
    return Probabilities(ids, probabilities, classes=member.classes)


def check_members(members: list[Member]) -> None:
    """Members of one competition and class list; a one-line error naming the odd one out."""
    first = members[0]
    for member in members[1:]:
        if member.slug != first.slug:
            raise PipelineError(f"{member.path} is of competition {member.slug}, {first.path} of {first.slug}; "
                                f"give members of one competition")
        if member.classes != first.classes:
            raise PipelineError(f"{member.path} has other classes than {first.path}; give members of one "
                                f"competition and class list")
