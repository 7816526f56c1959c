import json

import keras
import numpy as np
import pandas as pd
import pytest

from competition.errors import PipelineError
from pipelines.config import TrainConfig
from pipelines.cv import run_cv
from pipelines.probabilities import read_probabilities
from tests.conftest import QUICK_CV


def test_a_cv_folder_holds_folds_out_of_fold_and_test_predictions(cv_home):
    home, result = cv_home
    cv = result.cv_dir
    assert cv.parent == home / "runs" and cv.name.startswith("cv-cnn-")
    folds = pd.read_csv(cv / "folds.csv", dtype={"id": str})
    assert len(folds) == 48 and set(folds.split) == {"train", "val"}  # train and the labelled val split
    oof = read_probabilities(cv / "oof_predictions.npz")
    assert oof.ids == folds.id.tolist() and oof.folds.tolist() == folds.fold.tolist()  # aligned row by row
    for probabilities in oof.by_tta.values():
        assert probabilities.shape == (48, 3) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    for k in (1, 2):  # each fold is a run folder whose validation rows are its held-out images
        held = read_probabilities(cv / f"fold-{k}" / "val_predictions.npz")
        assert set(held.ids) == set(folds.id[folds.fold == k - 1])
        assert (cv / f"fold-{k}" / "model.keras").exists()
    test = read_probabilities(cv / "test_predictions.npz")
    fold_tests = [read_probabilities(cv / f"fold-{k}" / "test_predictions.npz").get("none") for k in (1, 2)]
    np.testing.assert_allclose(test.get("none"), np.mean(fold_tests, axis=0), atol=1e-6)
    metrics = json.loads((cv / "metrics.json").read_text())
    assert metrics == result.metrics and len(metrics["fold_accuracy"]) == 2
    assert metrics["oof_accuracy"] == pytest.approx(np.mean(oof.get(metrics["tta"]).argmax(1) == oof.labels))
    assert (cv / "oof_confusion_matrix.png").exists() and (cv / "learning_curves.png").exists()
    assert not (home / "runs" / "latest-tiny.txt").exists()  # a fold is not a run for `make predict`
    assert json.loads((cv / "config.json").read_text())["cv"]["labelled"] == 48


class KillAtFold2(keras.callbacks.Callback):
    calls = 0

    def on_train_begin(self, logs=None):
        KillAtFold2.calls += 1
        if KillAtFold2.calls == 2:
            raise KeyboardInterrupt


def test_a_killed_cv_continues_at_its_first_unfinished_fold(tiny, home, monkeypatch):
    import pipelines.fold as fold_module

    trained = []
    real_train = fold_module.train

    def spying_train(config, **kwargs):
        trained.append(kwargs["run_dir"].name)
        return real_train(config, callbacks=[KillAtFold2()], **kwargs)

    monkeypatch.setattr(fold_module, "train", spying_train)
    config = TrainConfig(competition=tiny, **QUICK_CV)
    with pytest.raises(KeyboardInterrupt):
        run_cv(config, folds=2, progress=False, on_fold=lambda line: None)
    [cv] = [p for p in (home / "runs").iterdir()]
    fold1 = (cv / "fold-1" / "metrics.json").read_bytes()
    result = run_cv(config, folds=2, progress=False, on_fold=lambda line: None)
    assert result.cv_dir == cv and trained == ["fold-1", "fold-2", "fold-2"]  # fold 1 never trained again
    assert (cv / "fold-1" / "metrics.json").read_bytes() == fold1 and (cv / "metrics.json").exists()


def test_a_class_with_fewer_images_than_folds_is_refused_before_any_training(tiny, home):
    with pytest.raises(PipelineError, match="FOLDS=40: class 0 has only 16 labelled"):
        run_cv(TrainConfig(competition=tiny, **QUICK_CV), folds=40, progress=False)
    assert not (home / "runs").exists()


def test_predict_with_a_cv_folder_uses_the_fold_average_and_records_the_cv_score(cv_home, capsys):
    from kip import main

    home, result = cv_home
    assert main(["predict", "--competition", "tiny", "--runs", str(result.cv_dir)]) == 0
    written = sorted((home / "submissions").glob(f"{result.cv_dir.name}-*.csv"))[-1]
    side = json.loads(written.with_suffix(".json").read_text())
    assert side["scores"]["val_accuracy"] == pytest.approx(result.metrics["oof_accuracy"])
    assert side["scored_by"] == ["out-of-fold (CV)"]
    test = read_probabilities(result.cv_dir / "test_predictions.npz")
    saved = np.load(written.with_suffix(".npz"), allow_pickle=False)
    assert saved["ids"].tolist() == test.ids
    np.testing.assert_allclose(saved["probabilities"], test.get(result.metrics["tta"]), atol=1e-6)


def test_folds_that_tried_different_tta_choices_are_combined_on_the_choices_they_share(cv_home, tmp_path):
    import shutil

    from competition.registry import load_competition
    from pipelines.cv import combine
    from pipelines.data import load_dataset
    from pipelines.folds import labelled_pool, read_folds
    from pipelines.probabilities import Probabilities, write_probabilities

    home, result = cv_home
    cv = shutil.copytree(result.cv_dir, tmp_path / "cv")
    for name in ("val_predictions.npz", "test_predictions.npz"):  # fold 2's budget afforded fewer views
        path = cv / "fold-2" / name
        found = read_probabilities(path)
        write_probabilities(path, Probabilities(found.ids, {c: found.get(c) for c in ("none", "flip")}, found.labels,
                                                classes=found.classes))
    pool = labelled_pool(load_dataset(load_competition("tiny"), seed=TrainConfig().seed, progress=False))
    metrics = combine(cv, pool, read_folds(cv / "folds.csv", pool))
    assert set(metrics["oof_accuracy_by_tta"]) == {"none", "flip"} and metrics["tta"] in ("none", "flip")
    assert set(read_probabilities(cv / "oof_predictions.npz").by_tta) == {"none", "flip"}
    assert set(read_probabilities(cv / "test_predictions.npz").by_tta) == {"none", "flip"}
