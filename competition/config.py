"""A competition described by a small TOML file: columns, splits, image shape, classes.

Splits come in two layouts, told apart by whether a split names a ``csv``:
``csv`` + ``images`` (the reference layout: a CSV of image names and labels, images in a folder)
or ``images`` alone (class folders: ``train/<class>/*.png``; an unlabelled split may be flat).
A config without ``[splits]``, or a raw folder without any config, is laid out by
``competition.layout.detect`` from the files themselves.
"""
from __future__ import annotations

import dataclasses
import re
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

    def split_csv(self, split: str) -> Path:
        """The split's CSV; for a class-folder split, its folder (what error messages should name)."""
        spec = self.splits[split]
        return self.raw_dir / (spec.csv or spec.images)

    def split_images(self, split: str) -> Path:
        return self.raw_dir / self.splits[split].images

    def has_split(self, split: str) -> bool:
        if split not in self.splits:
            return False
        spec = self.splits[split]
        return (self.raw_dir / spec.csv).is_file() if spec.csv else self.split_images(split).is_dir()

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


def list_competitions() -> list[str]:
    """Slugs of the competitions that ship a config."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_competition(name: str) -> Competition:
    """Load a competition by slug, TOML path or raw folder.

    A slug finds ``data/raw/<slug>/competition.toml``, then a shipped config, then, when only
    ``data/raw/<slug>/`` exists, a config detected from its files. A folder path is read in place.
    A slug with none of these is a Kaggle competition not fetched yet: no splits, until ``prepare`` gets it.
    """
    from competition.layout import detect

    path = Path(name)
    if path.suffix == ".toml":
        return _with_splits(Competition.from_toml(path))
    if path.is_dir() and (len(path.parts) > 1 or not settings.raw_dir(name).exists()):
        toml = path / "competition.toml"
        if toml.exists():
            return _with_splits(Competition.from_toml(toml).replace(data_dir=str(path.resolve())))
        return detect(path.resolve().name, path.resolve())
    for candidate in (settings.raw_dir(name) / "competition.toml", CONFIG_DIR / f"{name}.toml"):
        if candidate.exists():
            return _with_splits(Competition.from_toml(candidate))
    if settings.raw_dir(name).is_dir():
        return detect(name, settings.raw_dir(name))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):  # a folder that is not there, not a Kaggle slug
        raise PipelineError(missing_data_message(name))
    # nothing here yet: `make data` unpacks data/raw/<slug>.zip (or .tar.gz, .tgz, .tar) or downloads it with the
    # kaggle client, then lays the splits out from the files
    return Competition(slug=name, title=f"{name} (not downloaded)", source="kaggle", sample_submission=None)


def missing_data_message(name: str) -> str:
    """What to do about a competition with no config and no files."""
    return (f"no config for competition '{name}' and no folder data/raw/{name}/: put its files there (they are "
            f"detected), write data/raw/{name}/competition.toml, or run `make data COMPETITION={name}` to "
            f"download it; shipped: {', '.join(list_competitions())}")


def _with_splits(competition: Competition) -> Competition:
    """A config without [splits] gets them detected from its raw folder once that folder holds more than the config."""
    raw = competition.raw_dir
    if competition.splits or not raw.is_dir() or not any(p.name != "competition.toml" and not p.name.startswith(".")
                                                          for p in raw.iterdir()):
        return competition
    from competition.layout import detect_splits

    return competition.replace(**detect_splits(competition.raw_dir, competition.layout))
