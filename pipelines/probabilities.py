"""Class-probability files (``.npz``, no pickle): a run's validation predictions, a CV's out-of-fold and test
predictions, a blend's. One array of probabilities per TTA choice, rows in ``ids`` order, columns in class order."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from competition.errors import PipelineError
from competition.fileio import atomic_path

PREFIX = "probabilities_"


@dataclass
class Probabilities:
    """Probabilities by TTA choice for ``ids``, with their class ids (``labels``) and fold numbers when known."""

    ids: list[str]
    by_tta: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    folds: np.ndarray | None = None
    classes: list[str] = field(default_factory=list)

    def get(self, tta: str) -> np.ndarray:
        if tta not in self.by_tta:
            raise PipelineError(f"no probabilities with TTA {tta!r} (has {', '.join(self.by_tta)})")
        return self.by_tta[tta]


def write_probabilities(path: Path, probabilities: Probabilities) -> Path:
    """Write atomically; ``np.load(path, allow_pickle=False)`` reads it back."""
    arrays = {"ids": np.asarray([str(i) for i in probabilities.ids], dtype=str),
              "classes": np.asarray([str(c) for c in probabilities.classes], dtype=str)}
    arrays.update({f"{PREFIX}{name}": np.asarray(p, dtype=np.float32) for name, p in probabilities.by_tta.items()})
    if probabilities.labels is not None:
        arrays["labels"] = np.asarray(probabilities.labels, dtype=np.int64)
    if probabilities.folds is not None:
        arrays["folds"] = np.asarray(probabilities.folds, dtype=np.int64)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:  # a handle: np.savez would add ".npz" to the temporary name
            np.savez(handle, **arrays)
    return Path(path)


def read_probabilities(path: Path) -> Probabilities:
    try:
        with np.load(path, allow_pickle=False) as data:
            return Probabilities(
                ids=data["ids"].tolist(),
                by_tta={k.removeprefix(PREFIX): data[k].astype(np.float64) for k in data.files if k.startswith(PREFIX)},
                labels=data["labels"] if "labels" in data.files else None,
                folds=data["folds"] if "folds" in data.files else None,
                classes=data["classes"].tolist())
    except FileNotFoundError:
        raise PipelineError(f"{path}: missing; the run or CV did not save its predictions") from None
    except (OSError, ValueError, KeyError) as err:
        raise PipelineError(f"{path}: unreadable predictions ({err}); run it again") from None
