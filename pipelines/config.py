"""Training settings: ``TrainConfig``, grouped by concern and validated in one place before any work starts.

No TensorFlow here, so the command line, the search space and tests read the settings without loading it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from competition import settings
from competition.errors import PipelineError

ARCHS = ("cnn", "resnet10", "mobilenetv2")  # pipelines.models.MODELS builds these (a test checks they agree)
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SCHEDULES = ("cosine", "linear", "onecycle", "constant")
TTA_CHOICES = ("auto", "none", "flip", "shift", "flip+shift")  # pipelines.inference.TTA_CHOICES, and auto
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
FLIPS = ("horizontal", "vertical", "horizontal_and_vertical", "none")
NORMALIZATIONS = ("pixel", "channel")

# Augmentation presets; a setting given on its own (e.g. rotation=15) wins over the preset's value.
AUGMENT_PRESETS = {
    "none": dict(flip="none", rotation=0.0, zoom=0.0, brightness=0.0, translation=0.0),
    "standard": dict(flip="horizontal", rotation=0.0, zoom=0.0, brightness=0.0, translation=0.1),
    "pets": dict(flip="horizontal", rotation=10.0, zoom=0.1, brightness=0.3, translation=0.0),
}

# Model options a builder may or may not take; None means "the builder's own default".
MODEL_OPTIONS = ("batchnorm", "global_pool", "weights", "zero_init_residual", "width_multiplier", "blocks_per_stage")


@dataclass
class TrainConfig:
    """Every setting of a training run; saved as the run's ``config.json``.

    The defaults are a general recipe, not fitted to one competition: batch norm and global pooling,
    AdamW with decoupled weight decay, warmup then cosine decay, label smoothing, flips and small shifts,
    mixed precision where the hardware has it, and a time budget (``minutes``) that sets the number of
    epochs from the measured speed of the first steps so the schedule completes in time.
    """

    # what to train
    competition: str = settings.DEFAULT_COMPETITION
    arch: str = settings.DEFAULT_ARCH
    # budget
    epochs: int = 60  # the most epochs; the time budget may plan fewer
    minutes: float = 18.0  # time budget for fitting; 0 = none, run all epochs
    patience: int = 10
    # optimizer and schedule
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 4e-3  # the peak, reached after warmup (docs/benchmarks.md: 4e-3 against 2e-3)
    momentum: float = 0.9  # sgd and rmsprop
    nesterov: bool = True
    weight_decay: float = 0.05
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    ema: float = 0.0  # momentum of an exponential moving average of the weights (0.99, 0.999); 0 = off
    # regularisation and model options (None: the builder's default)
    label_smoothing: float = 0.1
    dropout_rate: float = 0.3
    batchnorm: bool | None = None  # cnn
    global_pool: bool | None = None  # cnn
    weights: str | None = None  # pretrained weights file (mobilenetv2)
    zero_init_residual: bool | None = None  # resnet10: each block starts as the identity
    width_multiplier: float | None = None  # every architecture: its channel widths times this (the builder's: 1)
    blocks_per_stage: int | None = None  # resnet10: 2 is a ResNet18 (the builder's: 1)
    whiten: bool = False  # the first convolution starts as a patch-whitening transform (pipelines.whitening)
    # augmentation
    augment: str = "standard"  # a preset of AUGMENT_PRESETS
    augment_strength: float = 1.0  # scales rotation, zoom, brightness and translation
    flip: str | None = None
    rotation: float | None = None  # degrees
    zoom: float | None = None  # fraction
    brightness: float | None = None  # fraction of the value range, +-
    translation: float | None = None  # fraction of the size
    mixup: float = 0.0  # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0  # Beta(alpha, alpha); 0 = off
    # progressive resizing: the image size grows from progressive_scale of the full size to full over the first
    # `progressive` share of the planned steps (pipelines.resize); 0 = off
    progressive: float = 0.0
    progressive_scale: float = 0.5
    # pseudo-labels: confident test predictions of a finished run, CV or blend folder, added to train
    pseudo_labels: str | None = None
    pseudo_threshold: float = 0.9
    # prediction
    tta: str = "auto"  # test-time augmentation: auto picks the one that validates best (pipelines.inference)
    # numerics and reproducibility
    precision: str = "auto"
    normalization: str = "pixel"
    seed: int = settings.SEED
    verbose: int = 1

    def update(self, **changes) -> TrainConfig:
        """A copy with ``changes``; unknown names are an error that lists the known ones."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise PipelineError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)

    def augmentation(self) -> dict:
        """The effective augmentation: the preset, overridden by settings given on their own, scaled."""
        if self.augment not in AUGMENT_PRESETS:
            raise PipelineError(f"unknown augment preset '{self.augment}'; choose one of {', '.join(AUGMENT_PRESETS)}")
        out = dict(AUGMENT_PRESETS[self.augment])
        for name in out:
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if out["flip"] not in FLIPS:
            raise PipelineError(f"unknown flip '{out['flip']}'; choose one of {', '.join(FLIPS)}")
        for name in ("rotation", "zoom", "brightness", "translation"):
            out[name] = float(out[name]) * self.augment_strength
        return {**out, "mixup": self.mixup, "cutmix": self.cutmix}

    def tta_choices(self) -> tuple[str, ...]:
        """The TTA choices evaluation tries: ``tta`` itself, or for ``auto`` every choice, less the mirrored ones
        when training did not flip horizontally (a model that never saw a mirror image gains nothing from one)."""
        if self.tta != "auto":
            return (self.tta,)
        mirrored = self.augmentation()["flip"] in ("horizontal", "horizontal_and_vertical")
        return tuple(c for c in TTA_CHOICES if c != "auto" and (mirrored or "flip" not in c))

    def model_options(self) -> dict:
        """The model options that were set (not left to the builder's default), for ``build_model``."""
        return {"dropout_rate": self.dropout_rate,
                **{name: getattr(self, name) for name in MODEL_OPTIONS if getattr(self, name) not in (None, "")}}

    def problems(self) -> list[str]:
        """Every bad setting, each as ``name=value: what it must be``; empty when the config is sound."""
        out = []

        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                out.append(f"{name}={getattr(self, name)!r} {rule}")

        def one_of(name: str, choices) -> None:
            if getattr(self, name) not in choices:
                out.append(f"unknown {name} {getattr(self, name)!r} (choose one of {', '.join(choices)})")

        one_of("arch", ARCHS)
        one_of("optimizer", OPTIMIZERS)
        one_of("schedule", SCHEDULES)
        one_of("precision", PRECISIONS)
        one_of("normalization", NORMALIZATIONS)
        one_of("augment", tuple(AUGMENT_PRESETS))
        one_of("tta", TTA_CHOICES)
        if self.flip is not None:
            one_of("flip", FLIPS)
        need(self.epochs >= 1, "epochs", "must be at least 1")
        need(self.batch_size >= 1, "batch_size", "must be at least 1")
        need(self.minutes >= 0, "minutes", "must be 0 (no budget) or more")
        need(self.patience >= 1, "patience", "must be at least 1")
        need(self.learning_rate > 0, "learning_rate", "must be above 0")
        need(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        need(self.weight_decay >= 0, "weight_decay", "must be 0 or more")
        need(self.warmup_epochs >= 0, "warmup_epochs", "must be 0 or more")
        need(self.ema == 0 or 0.5 <= self.ema < 1, "ema", "must be 0 (off) or a momentum in [0.5, 1)")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "must be in [0, 1)")
        need(0 <= self.dropout_rate < 1, "dropout_rate", "must be in [0, 1)")
        need(self.augment_strength >= 0, "augment_strength", "must be 0 or more")
        if self.width_multiplier is not None:
            need(0 < self.width_multiplier <= 8, "width_multiplier", "must be above 0 and at most 8")
        need(not (self.whiten and self.arch == "mobilenetv2"), "whiten", "works for cnn and resnet10, not mobilenetv2")
        if self.blocks_per_stage is not None:
            need(1 <= self.blocks_per_stage <= 8, "blocks_per_stage", "must be 1 to 8")
        for name, (high, closed) in {"rotation": (180, True), "zoom": (1, False), "brightness": (1, True),
                                     "translation": (1, False)}.items():
            value = getattr(self, name)
            if value is not None:
                need(0 <= value <= high if closed else 0 <= value < high, name,
                     f"must be in [0, {high}{']' if closed else ')'}")
        need(self.mixup >= 0, "mixup", "must be 0 (off) or more")
        need(self.cutmix >= 0, "cutmix", "must be 0 (off) or more")
        need(0 <= self.progressive <= 1, "progressive", "must be in [0, 1] (a share of the planned steps; 0 = off)")
        need(0.25 <= self.progressive_scale <= 1, "progressive_scale", "must be in [0.25, 1] (of the full size)")
        if self.progressive and (self.arch == "mobilenetv2" or self.global_pool is False):
            out.append(f"progressive={self.progressive:g} needs a model that takes any image size (cnn with global "
                       f"pooling, resnet10), not {self.arch}{' without global_pool' if self.arch == 'cnn' else ''}")
        need(self.verbose in (0, 1, 2), "verbose", "must be 0, 1 or 2")
        need(0 < self.pseudo_threshold < 1, "pseudo_threshold", "must be between 0 and 1")
        if self.pseudo_labels:
            need(Path(self.pseudo_labels).is_dir(), "pseudo_labels", "is not a run, CV or blend folder")
        if self.weights:
            need(Path(self.weights).is_file(), "weights", "is not a file; give WEIGHTS=<path to the no-top .h5>")
        return out

    def validate(self) -> TrainConfig:
        """Raise one PipelineError listing every bad setting at once; return the config when sound."""
        problems = self.problems()
        if problems:
            raise PipelineError("bad training setting(s): " + "; ".join(problems) + "; nothing was trained")
        return self


def field_types() -> dict[str, type]:
    """The Python type of each setting (``bool | None`` -> bool), for parsing ``NAME=VALUE`` text."""
    kinds = {"int": int, "float": float, "bool": bool, "str": str}
    out = {}
    for f in dataclasses.fields(TrainConfig):
        base = str(f.type).split("|")[0].strip()
        out[f.name] = kinds.get(base, str)
    return out


def parse_bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(value)


def parse_settings(pairs: list[str] | None) -> dict:
    """``["epochs=3", "optimizer=sgd"]`` -> ``{"epochs": 3, "optimizer": "sgd"}``, typed by TrainConfig;
    an empty value clears an optional setting."""
    types = field_types()
    optional = {f.name for f in dataclasses.fields(TrainConfig) if "None" in str(f.type)}
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or key not in types:
            raise PipelineError(f"bad setting '{pair}': use NAME=VALUE with NAME one of {', '.join(sorted(types))}")
        kind = types[key]
        if key in optional and value == "":
            out[key] = None
            continue
        try:
            out[key] = parse_bool(value) if kind is bool else kind(value)
        except ValueError:
            raise PipelineError(f"bad setting '{pair}': {key} needs a {kind.__name__}") from None
    return out
