"""A competition described by a small TOML file: columns, splits, image shape, classes."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from competition import settings
from competition.errors import PipelineError

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass(frozen=True)
class Split:
    """One split on disk: a CSV of image names (and labels) and the folder holding the images."""

    csv: str
    images: str


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
    source: str = "kaggle"
    test_labels: str | None = None
    validation_fraction: float = settings.VALIDATION_FRACTION

    @property
    def raw_dir(self) -> Path:
        return settings.raw_dir(self.slug)

    def split_csv(self, split: str) -> Path:
        return self.raw_dir / self.splits[split].csv

    def split_images(self, split: str) -> Path:
        return self.raw_dir / self.splits[split].images

    def has_split(self, split: str) -> bool:
        return split in self.splits and self.split_csv(split).exists()

    @classmethod
    def from_toml(cls, path: Path) -> "Competition":
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
            if not isinstance(spec, dict) or "csv" not in spec or "images" not in spec:
                raise PipelineError(f"{path}: [splits.{name}] needs both 'csv' and 'images'")
            splits[name] = Split(csv=spec["csv"], images=spec["images"])
        if "train" not in splits or "test" not in splits:
            raise PipelineError(f"{path}: needs [splits.train] and [splits.test]")
        if "image_size" in raw and raw["image_size"] is not None:
            raw["image_size"] = tuple(int(v) for v in raw["image_size"])
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(raw) - known)
        if unknown:
            raise PipelineError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(splits=splits, **raw)


def list_competitions() -> list[str]:
    """Slugs of the competitions that ship a config."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_competition(name: str) -> Competition:
    """Load a competition by slug (a shipped config, or data/raw/<slug>/competition.toml) or by TOML path."""
    path = Path(name)
    if path.suffix == ".toml":
        return Competition.from_toml(path)
    for candidate in (settings.raw_dir(name) / "competition.toml", CONFIG_DIR / f"{name}.toml"):
        if candidate.exists():
            return Competition.from_toml(candidate)
    raise PipelineError(
        f"no config for competition '{name}': write data/raw/{name}/competition.toml "
        f"(copy competition/configs/gic-unibuc-dl-2023.toml); shipped: {', '.join(list_competitions())}"
    )
