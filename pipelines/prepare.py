"""``make data``: the competition's raw files present (downloaded, unpacked, built or detected), checked, cached."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from competition import settings
from competition.config import Competition
from competition.download import prepare
from competition.layout import describe
from competition.registry import load_competition
from pipelines.data import Dataset, cache_root, load_dataset


@dataclass
class PreparedData:
    """A competition ready to train on: its config, its arrays, where its files are, and what was detected."""

    competition: Competition
    dataset: Dataset
    raw_dir: Path
    detected: str | None  # the TOML lines of a detected layout, to pin in competition.toml

    def summary(self) -> list[str]:
        """What ``make data`` prints: the detected layout, the split sizes, and a notice for a missing test split."""
        c, d = self.competition, self.dataset
        lines = []
        if self.detected:
            lines.append(f"data: no config for {c.slug}; detected (pin it in competition.toml to override):\n"
                         + "\n".join(f"    {line}" for line in self.detected.splitlines()))
        val = "stratified hold-out of train" if d.holdout else "val split"
        lines.append(f"data: {c.slug} ready in {self.raw_dir}: {len(d.train)} train, {len(d.val)} val ({val}), "
                     f"{len(d.test) if d.test is not None else 'no'} test images of "
                     f"{'x'.join(map(str, d.input_shape))}, {d.num_classes} classes; arrays cached in {cache_root(c)}")
        return lines

    @property
    def notice(self) -> str | None:
        if self.dataset.test is not None:
            return None
        return (f"notice: {self.competition.slug} has no test split in {self.raw_dir}; training works, "
                f"`make predict` needs the competition's test files there")


def prepare_data(name: str, force: bool = False, seed: int = settings.SEED, progress: bool = True) -> PreparedData:
    """Fetch what is missing (``force``: fetch again), lay the files out, check and cache every split."""
    raw = prepare(load_competition(name), force=force)
    competition = load_competition(name)  # a config without [splits] is laid out once the files exist
    detected = describe(competition) if competition.source == "local" or competition.title.endswith("(detected)") \
        else None
    return PreparedData(competition, load_dataset(competition, seed=seed, progress=progress), raw, detected)
