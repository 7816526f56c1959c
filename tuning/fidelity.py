"""How a trial is a smaller copy of the final run (``FIDELITY=``), and how the final check runs (``CHECK=``).

A trial runs ``make train``'s own time-budgeted recipe with a shorter budget (``minutes``, default a sixth of the
final run's), on a class-stratified ``subset`` of the train split (default half) and at a lower resolution
(``scale``, default none). The default is a choice, not yet a measurement: ``make bench-fidelity``
measures how well each fidelity ranks settings the way the final run does.
The validation split is always the whole hold-out, so every trial and the final check are scored on the same images.
Settings counted in epochs (the ``epochs`` cap, ``warmup_epochs`` and early stopping's ``patience``) are scaled by
the ratio of the epochs a trial fits to those the final run fits, so that they stay the same fraction of the
schedule.

Kept free of TensorFlow: the command line parses these before anything heavy loads.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import optuna

from competition.errors import PipelineError
from pipelines.config import TrainConfig
from pipelines.data import Dataset, SplitData

TRIAL_SHARE = 6  # a trial's default budget: the final run's divided by this


def parse_options(text: str | None, kind: type, what: str):
    """``"minutes=3 subset=0.5"`` -> ``kind(minutes=3.0, subset=0.5)``; an unknown name or a bad value is one line."""
    names = {f.name: f for f in dataclasses.fields(kind) if f.name in kind.OPTIONS}
    values = {}
    for item in (text or "").replace(",", " ").split():
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise PipelineError(f"{what}: unknown option '{item}'; use " + " ".join(f"{n}=..." for n in kind.OPTIONS))
        cast = int if names[name].type in ("int", int) else float
        try:
            values[name] = cast(value)
        except ValueError:
            kind_text = "an integer" if cast is int else "a number"
            raise PipelineError(f"{what}: {name}={value!r} needs {kind_text}") from None
    options = kind(**values)
    problems = options.problems()
    if problems:
        raise PipelineError(f"{what}: " + "; ".join(problems))
    return options


@dataclass(frozen=True)
class Fidelity:
    """A trial's budget in minutes (None: the final budget / 6; 0: no time budget, run the epochs), the fraction of
    the train split it sees and the factor on the image size; ``final_minutes`` is set by ``resolve``."""

    OPTIONS = ("minutes", "subset", "scale")
    minutes: float | None = None
    subset: float = 0.5
    scale: float = 1.0
    final_minutes: float | None = None

    def problems(self) -> list[str]:
        out = []
        if self.minutes is not None and self.minutes < 0:
            out.append(f"minutes={self.minutes:g} must be 0 (no time budget) or more")
        if not 0 < self.subset <= 1:
            out.append(f"subset={self.subset:g} must be in (0, 1]")
        if not 0 < self.scale <= 1:
            out.append(f"scale={self.scale:g} must be in (0, 1]")
        return out

    def resolve(self, final_minutes: float) -> Fidelity:
        """The fidelity for a final run of ``final_minutes`` (0: the final run has no time budget)."""
        minutes = self.minutes if self.minutes is not None else final_minutes / TRIAL_SHARE
        return dataclasses.replace(self, minutes=round(float(minutes), 4), final_minutes=float(final_minutes))

    @property
    def epoch_scale(self) -> float:
        """Epochs a trial fits per epoch the final run fits: its share of the time, over the share of the data it
        sees per epoch (a smaller subset, or smaller images, make an epoch cheaper). 1 when either has no budget."""
        if not self.minutes or not self.final_minutes:
            return 1.0
        return (self.minutes / self.final_minutes) / (self.subset * self.scale ** 2)

    def apply(self, config: TrainConfig) -> TrainConfig:
        """The trial's settings: the final run's, with the trial's budget and the settings counted in epochs scaled."""
        k = self.epoch_scale
        return config.update(minutes=self.minutes, epochs=max(1, math.ceil(config.epochs * k - 1e-9)),
                             warmup_epochs=config.warmup_epochs * k,
                             patience=max(1, math.ceil(config.patience * k - 1e-9)))

    def identity(self) -> dict:
        """What a study records: trials of another fidelity are not comparable with its own."""
        return {"minutes": self.minutes, "subset": self.subset, "scale": self.scale,
                "final_minutes": self.final_minutes}

    def describe(self) -> str:
        return describe(self.identity())


def describe(identity: dict) -> str:
    """``minutes=3 subset=0.5 scale=1 (final run 18 minutes)``, from a recorded identity."""
    text = " ".join(f"{name}={identity.get(name):g}" for name in Fidelity.OPTIONS)
    final = identity.get("final_minutes")
    return text + (f" (final run {final:g} minutes)" if final else " (final run without a time budget)")


@dataclass(frozen=True)
class CheckOptions:
    """The final check: retrain the ``top`` candidates and the default at ``budget`` x the final run's minutes, on
    the full data; a candidate replaces the default only when it wins by at least ``margin`` (accuracy)."""

    OPTIONS = ("top", "budget", "margin")
    # The whole final budget: on GIC a candidate 3.4 points ahead at half of it tied the default at all of it
    # (docs/benchmarks.md, make bench-tune-transfer), so a shorter check favours recipes that only converge faster.
    top: int = 1
    budget: float = 1.0
    margin: float = 0.005

    def problems(self) -> list[str]:
        out = []
        if self.top < 0:
            out.append(f"top={self.top} must be 0 (no check: the default stays) or more")
        if not 0 < self.budget <= 1:
            out.append(f"budget={self.budget:g} must be a fraction of the final run's minutes, in (0, 1]")
        if not 0 <= self.margin < 1:
            out.append(f"margin={self.margin:g} must be an accuracy difference in [0, 1)")
        return out

    @property
    def keeps_runs(self) -> bool:
        """At the whole final budget the check's runs are ``make train``'s runs: kept whole (else lean, as trials)."""
        return self.budget >= 1

    def minutes(self, final_minutes: float) -> float:
        return final_minutes * self.budget

    def cost(self, final_minutes: float) -> float:
        """Minutes the check takes: the candidates and the default, one after the other (0 without one)."""
        return (self.top + 1) * self.minutes(final_minutes) if self.top else 0.0


def search_minutes(total: float | None, fidelity: Fidelity, check: CheckOptions) -> float | None:
    """The part of ``MINUTES=`` the trials get, after the final check's share; one line when it holds no trial."""
    if total is None:
        return None
    cost = check.cost(fidelity.final_minutes or 0)
    if total - cost >= (fidelity.minutes or 0) and total > cost:
        return total - cost
    need = math.ceil(cost + (fidelity.minutes or 1))
    trial = f"one {fidelity.minutes:g}-minute trial" if fidelity.minutes else "a trial"
    check_text = f" plus the final check ({check.top + 1} runs of {check.minutes(fidelity.final_minutes or 0):g} " \
                 f"minutes)" if cost else ""
    raise PipelineError(f"MINUTES={total:g} holds no trial: {trial}{check_text} needs about {need} minutes; give "
                        f"MINUTES={need} or more, or a shorter FIDELITY=\"minutes=...\" or CHECK=\"budget=...\"")


def check_study(study: optuna.Study, fidelity: Fidelity) -> None:
    """Record the fidelity in a new study; refuse one whose trials ran at another."""
    recorded = study.user_attrs.get("fidelity")
    if recorded is None:
        if study.get_trials(deepcopy=False):
            raise PipelineError(f"study {study.study_name} holds trials from before trials had a fidelity (a fixed "
                                f"number of epochs); start a new study with STUDY=<name>, or make clean-tuning")
        study.set_user_attr("fidelity", fidelity.identity())
        return
    mine = fidelity.identity()
    same = all(isinstance(recorded.get(k), (int, float)) and math.isclose(recorded[k], v, rel_tol=1e-6)
               for k, v in mine.items() if v is not None) and set(recorded) == set(mine)
    if not same:
        raise PipelineError(f"study {study.study_name} ran its trials at fidelity {describe(recorded)}, not "
                            f"{describe(mine)}; give the same FIDELITY= and SET=minutes= to continue it, or start a "
                            f"new study with STUDY=<name>")


def reduce_dataset(dataset: Dataset, fidelity: Fidelity, seed: int) -> Dataset:
    """The data a trial sees: a class-stratified ``subset`` of train, every image scaled by ``scale`` (the
    validation split whole, scaled too); the test split is left out."""
    train, val = dataset.train, dataset.val
    if fidelity.subset < 1:
        from sklearn.model_selection import train_test_split  # here: every kip command imports this module

        counts = np.bincount(train.labels)
        stratify = train.labels if counts[counts > 0].min() >= 2 else None
        try:
            keep, _ = train_test_split(np.arange(len(train)), train_size=fidelity.subset, stratify=stratify,
                                       random_state=seed)
        except ValueError:
            raise PipelineError(f"FIDELITY subset={fidelity.subset:g} keeps too few of the {len(train)} train "
                                f"images for {dataset.num_classes} classes; give a larger subset") from None
        keep = np.sort(keep)
        train = SplitData([train.ids[i] for i in keep], train.images[keep], train.labels[keep])
    if fidelity.scale < 1:
        train = dataclasses.replace(train, images=rescale(train.images, fidelity.scale))
        val = dataclasses.replace(val, images=rescale(val.images, fidelity.scale))
    return dataclasses.replace(dataset, train=train, val=val, test=None)


def rescale(images: np.ndarray, scale: float, chunk: int = 512) -> np.ndarray:
    """uint8 (N, H, W, C) images resized by ``scale`` (anti-aliased), a chunk at a time to bound memory."""
    from skimage.transform import resize

    n, h, w, c = images.shape
    size = (max(4, round(h * scale)), max(4, round(w * scale)))
    out = np.empty((n, *size, c), dtype=np.uint8)
    for start in range(0, n, chunk):
        part = images[start:start + chunk]
        small = resize(part, (len(part), *size, c), anti_aliasing=True, preserve_range=True)
        out[start:start + chunk] = np.clip(np.rint(small), 0, 255).astype(np.uint8)
    return out
