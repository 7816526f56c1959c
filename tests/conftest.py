"""Shared fixtures: a temporary project home and tiny generated competitions."""
from __future__ import annotations

import os
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from skimage import io  # noqa: E402

TINY_CONFIG = """
slug = "{slug}"
image_column = "Image"
label_column = "Class"
image_size = [16, 16]
channels = 3
num_classes = {classes}
sample_submission = "sample_submission.csv"
test_labels = "test_labels.csv"

[splits.train]
csv = "train.csv"
images = "train_images"
{val}
[splits.test]
csv = "test.csv"
images = "test_images"
"""


def use_home(monkeypatch, root):
    """``root`` as the project home for the rest of the test: ``KIP_HOME`` and the working directory."""
    monkeypatch.setenv("KIP_HOME", str(root))
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh project home: data/, runs/, submissions/ and tuning/ all land here."""
    return use_home(monkeypatch, tmp_path)


def make_images(rng, label: int, n: int, size: int = 16) -> list[np.ndarray]:
    """Images a small CNN can tell apart: a bright square whose place depends on the class."""
    out = []
    for _ in range(n):
        img = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
        r, c = divmod(label, 2)
        img[r * 8:r * 8 + 8, c * 8:c * 8 + 8, label % 3] = 230
        out.append(img)
    return out


def write_competition(root, slug="tiny", classes=3, per_class=(12, 4, 4), with_val=True, seed=0):
    """Write a CSV-layout competition under ``root/data/raw/<slug>/`` with its own config; return the folder."""
    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw" / slug
    splits = ("train", "val", "test") if with_val else ("train", "test")
    for split, count in zip(("train", "val", "test"), per_class):
        if split not in splits:
            continue
        (raw / f"{split}_images").mkdir(parents=True)
        rows = []
        for label in range(classes):
            for k, img in enumerate(make_images(rng, label, count)):
                name = f"{split}_{label}_{k}.png"
                io.imsave(raw / f"{split}_images" / name, img, check_contrast=False)
                rows.append((name, label))
        frame = pd.DataFrame(rows, columns=["Image", "Class"])
        if split == "test":
            frame[["Image"]].to_csv(raw / "test.csv", index=False)
            frame.to_csv(raw / "test_labels.csv", index=False)
            frame.sample(frac=1, random_state=1).assign(Class=0).to_csv(raw / "sample_submission.csv", index=False)
        else:
            frame.to_csv(raw / f"{split}.csv", index=False)
    val = '\n[splits.val]\ncsv = "val.csv"\nimages = "val_images"\n' if with_val else ""
    (raw / "competition.toml").write_text(TINY_CONFIG.format(slug=slug, classes=classes, val=val))
    return raw


@pytest.fixture
def tiny(home):
    """A 3-class 16x16 RGB competition in the reference layout; returns its slug."""
    write_competition(home)
    return "tiny"


def write_class_folders(root, slug="folders", classes=("cat", "dog", "emu"), per_class=(6, 2, 2), grey=False,
                        seed=0, test_flat=True):
    """Write a class-folder competition (``train/<class>/*.png``, ``val/<class>/``, flat ``test/``), no config."""
    rng = np.random.default_rng(seed)
    raw = root / "data" / "raw" / slug
    for split, count in zip(("train", "val", "test"), per_class):
        for label, name in enumerate(classes):
            folder = raw / split if (split == "test" and test_flat) else raw / split / str(name)
            folder.mkdir(parents=True, exist_ok=True)
            for k, img in enumerate(make_images(rng, label, count)):
                io.imsave(folder / f"{name}_{k}.png", img[..., 0] if grey else img, check_contrast=False)
    return raw


class FakeClock:
    """Seconds that pass only when a test says so, so a time budget depends on steps, not on the machine.

    ``step`` seconds pass at every reading (0: only ``advance`` moves it)."""

    def __init__(self, step: float = 0.0, start: float = 1000.0):
        self.now, self.step = start, step

    def __call__(self) -> float:
        value = self.now
        self.now += self.step
        return value

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ticking(clock: FakeClock, seconds_per_batch, seconds_per_test_batch: float = 0.0):
    """A Keras callback that advances ``clock`` after each training batch (``seconds_per_batch(epoch)``) and
    each validation batch (``seconds_per_test_batch``)."""
    import keras

    class Tick(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            clock.advance(seconds_per_batch(self.epoch))

        def on_test_batch_end(self, batch, logs=None):
            clock.advance(seconds_per_test_batch)

    return Tick()


@contextmanager
def project_home(root):
    """``KIP_HOME`` and the working directory set to ``root`` inside the block (for session fixtures, which cannot use
    ``monkeypatch``)."""
    saved, cwd = os.environ.get("KIP_HOME"), os.getcwd()
    os.environ["KIP_HOME"] = str(root)
    os.chdir(root)
    try:
        yield root
    finally:
        os.chdir(cwd)
        if saved is None:
            os.environ.pop("KIP_HOME", None)
        else:
            os.environ["KIP_HOME"] = saved


QUICK_CV = dict(epochs=1, batch_size=8, minutes=0, verbose=0)


@pytest.fixture(scope="session")
def tiny_cv(tmp_path_factory):
    """One project home shared by the tests that only read a CV: the tiny competition with a 2-fold cnn CV (trained
    once per test process). Returns (home, CV result)."""
    from pipelines.config import TrainConfig
    from pipelines.cv import run_cv

    root = tmp_path_factory.mktemp("cv-home")
    write_competition(root)
    with project_home(root):
        first = run_cv(TrainConfig(competition="tiny", **QUICK_CV), folds=2, progress=False, on_fold=lambda line: None)
    return root, first


@pytest.fixture(scope="session")
def tiny_cvs(tiny_cv):
    """``tiny_cv`` plus a second CV over the same folds, with other settings (for blending): (home, first, second)."""
    from pipelines.config import TrainConfig
    from pipelines.cv import run_cv

    root, first = tiny_cv
    with project_home(root):
        second = run_cv(TrainConfig(competition="tiny", dropout_rate=0.0, label_smoothing=0.0, **QUICK_CV), folds=2,
                        folds_from=first.cv_dir, progress=False, on_fold=lambda line: None)
    return root, first, second


@pytest.fixture
def cv_home(tiny_cv, monkeypatch):
    """The shared CV home as the current project home: (home, CV result)."""
    root, first = tiny_cv
    return use_home(monkeypatch, root), first
