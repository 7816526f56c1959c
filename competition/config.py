"""A competition described by a small TOML file: columns, splits, image shape, classes.

Splits come in two layouts, told apart by whether a split names a ``csv``:
``csv`` + ``images`` (the reference layout: a CSV of image names and labels, images in a folder)
or ``images`` alone (class folders: ``train/<class>/*.png``; an unlabelled split may be flat).
A config without ``[splits]``, or a raw folder without any config, is laid out by
``competition.layout.detect`` from the files themselves.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from competition import settings
from competition.errors import PipelineError

CONFIG_DIR = Path(__file__).parent / "configs"
LAYOUTS = ("auto", "csv", "folders")


@dataclass(frozen=True)
class Split:
    """One split on disk: a CSV of image names (and labels) and its image folder, or class folders alone."""

    csv: str | None = None
    images: str = ""

    @property
    def layout(self) -> str:
        return "csv" if self.csv else "folders"


@dataclass(frozen=True)
class ImageSpec:
    """How images are decoded: ``channels`` (1 or 3) and the ``size`` to resize to (None: as stored, one size)."""

    channels: int = 3
    size: tuple[int, int] | None = None


@dataclass(frozen=True)
class SplitSource:
    """One split resolved to plain values: its CSV (None for class folders), image folder and columns."""

    name: str
    images: Path
    csv: Path | None = None
    image_column: str = "Image"
    label_column: str = "Class"
    extension: str = ""  # appended to CSV names that lack it

    @property
    def path(self) -> Path:
        """The CSV, or the class folders' folder: what messages about the split name."""
        return self.csv or self.images

    @property
    def present(self) -> bool:
        return self.csv.is_file() if self.csv else self.images.is_dir()


@dataclass(frozen=True)
class Competition:
    """Everything the pipeline needs to know about a competition's files."""

    slug: str
    title: str = ""
    image_column: str = "Image"
    label_column: str = "Class"
    image_size: tuple[int, int] | None = None
    channels: int = 3
    num_classes: int | None = None
    metric: str = "accuracy"
    splits: dict[str, Split] = field(default_factory=dict)
    sample_submission: str | None = "sample_submission.csv"
    submission_header: list[str] | None = None  # id, label columns when there is no sample submission
    source: str = "kaggle"
    test_labels: str | None = None
    validation_fraction: float = settings.VALIDATION_FRACTION
    layout: str = "auto"
    image_extension: str = ""  # appended to CSV image names that lack it (ids like "a1b2" for files "a1b2.png")
    data_dir: str | None = None  # raw files somewhere else than data/raw/<slug>/

    @property
    def raw_dir(self) -> Path:
        return Path(self.data_dir).absolute() if self.data_dir else settings.raw_dir(self.slug)

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec(self.channels, self.image_size)

    def split_source(self, split: str) -> SplitSource | None:
        """The split as plain values (absolute paths), or None when the config has no such split."""
        spec = self.splits.get(split)
        if spec is None:
            return None
        return SplitSource(split, self.raw_dir / spec.images, self.raw_dir / spec.csv if spec.csv else None,
                           self.image_column, self.label_column, self.image_extension)

    def split_path(self, split: str) -> Path:
        """The split's CSV, or its folder for class folders: what error messages name."""
        return self.split_source(split).path

    def has_split(self, split: str) -> bool:
        source = self.split_source(split)
        return source is not None and source.present

    def replace(self, **changes) -> Competition:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_toml(cls, path: Path) -> Competition:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise PipelineError(f"{path}: competition config not found") from None
        except tomllib.TOMLDecodeError as err:
            raise PipelineError(f"{path}: not valid TOML ({err}); fix the file") from None
        if "slug" not in raw:
            raise PipelineError(f"{path}: missing 'slug'; add slug = \"<kaggle-competition-slug>\"")
        splits = {}
        for name, spec in raw.pop("splits", {}).items():
            if not isinstance(spec, dict) or "images" not in spec or set(spec) - {"csv", "images"}:
                raise PipelineError(f"{path}: [splits.{name}] needs 'images' (a folder) and, for the CSV layout, "
                                    f"'csv'; nothing else")
            splits[name] = Split(csv=spec.get("csv"), images=spec["images"])
        if splits and "train" not in splits:
            raise PipelineError(f"{path}: needs [splits.train] (or no [splits] at all, to detect them)")
        if raw.get("layout", "auto") not in LAYOUTS:
            raise PipelineError(f"{path}: layout '{raw['layout']}' unknown; use one of {', '.join(LAYOUTS)}")
        if raw.get("channels", 3) not in (1, 3):
            raise PipelineError(f"{path}: channels = {raw['channels']}; use 1 (greyscale) or 3 (RGB)")
        if "image_size" in raw and raw["image_size"] is not None:
            raw["image_size"] = tuple(int(v) for v in raw["image_size"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PipelineError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if not 0 < float(raw.get("validation_fraction", 0.5)) < 1:
            raise PipelineError(f"{path}: validation_fraction must be between 0 and 1")
        return cls(splits=splits, **raw)
