"""PNG plots saved beside a run: learning curves and the confusion matrix."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from competition.fileio import atomic_path  # noqa: E402


def save_figure(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def learning_curves(history: dict, path: Path) -> Path:
    """Loss and accuracy per epoch, train against validation."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + metric)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, style, label=(prefix or "train_") + metric)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: list, path: Path) -> Path:
    """Row-normalized confusion matrix; labels are drawn only when there are few classes."""
    n = len(classes)
    size = min(4 + n * 0.35, 24)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=np.arange(n), display_labels=[str(c) for c in classes],
        normalize="true", include_values=n <= 20, values_format=".2f", ax=ax, colorbar=n <= 20,
        cmap="Blues", xticks_rotation="vertical",
    )
    if n > 30:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title("validation confusion matrix (row-normalized)")
    return save_figure(fig, path)


def fold_learning_curves(histories: list[dict], path: Path) -> Path:
    """Validation accuracy and training loss per epoch, one line per fold of a CV."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "val_accuracy")):
        for fold, history in enumerate(histories, start=1):
            values = history.get(metric)
            if values:
                ax.plot(np.arange(1, len(values) + 1), values, label=f"fold {fold}")
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    return save_figure(fig, path)
