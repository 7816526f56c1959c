"""Where a competition is found: a TOML path, a folder, ``data/raw/<slug>/competition.toml``, a shipped config, or
the files themselves (detected); a slug with none of these is one to download."""
from __future__ import annotations

import re
from pathlib import Path

from competition import settings
from competition.config import CONFIG_DIR, Competition
from competition.errors import PipelineError
from competition.layout import detect, detect_splits


def list_competitions() -> list[str]:
    """Slugs of the competitions that ship a config."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def load_competition(name: str) -> Competition:
    """Load a competition by slug, TOML path or raw folder.

    A slug finds ``data/raw/<slug>/competition.toml``, then a shipped config, then, when only
    ``data/raw/<slug>/`` exists, a config detected from its files. A folder path is read in place.
    A slug with none of these is a Kaggle competition not fetched yet: no splits, until ``prepare`` gets it.
    """
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
    """What to do about a competition with no config and no files (a folder path that is not there: say that)."""
    if "/" in name or "\\" in name or name.startswith(("~", ".")):
        return (f"no folder {name}: give COMPETITION= the folder that holds the competition's files (train.csv and its "
                f"images, or train/<class>/), or a slug; shipped: {', '.join(list_competitions())}")
    return (f"no config for competition '{name}' and no folder data/raw/{name}/: put its files there (they are "
            f"detected), write data/raw/{name}/competition.toml, or run `make data COMPETITION={name}` to "
            f"download it; shipped: {', '.join(list_competitions())}")


def _with_splits(competition: Competition) -> Competition:
    """A config without [splits] gets them detected from its raw folder once that folder holds more than the config."""
    raw = competition.raw_dir
    if competition.splits or not raw.is_dir() or not any(p.name != "competition.toml" and not p.name.startswith(".")
                                                          for p in raw.iterdir()):
        return competition
    return competition.replace(**detect_splits(competition.raw_dir, competition.layout))
