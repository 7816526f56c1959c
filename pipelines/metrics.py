"""Validation scores with scikit-learn: accuracy, macro F1, log loss and per-class precision/recall/F1."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, log_loss, precision_recall_fscore_support


def scores(labels: np.ndarray, probs: np.ndarray, classes: list | None = None) -> dict:
    """Accuracy, macro F1, log loss and per-class precision/recall/F1 with scikit-learn."""
    probs = np.clip(probs, 1e-7, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    pred = probs.argmax(axis=1)
    ids = np.arange(probs.shape[1])
    precision, recall, f1, support = precision_recall_fscore_support(labels, pred, labels=ids, zero_division=0)
    names = [str(c) for c in (classes if classes is not None else ids)]
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, labels=ids, average="macro", zero_division=0)),
        "log_loss": float(log_loss(labels, probs, labels=ids)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(names, precision, recall, f1, support)},
    }
