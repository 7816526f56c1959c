import json

import numpy as np
import pandas as pd
import pytest

from competition.errors import PipelineError
from pipelines.train import TrainConfig, latest_run, train
from tests.conftest import write_competition


def test_train_writes_a_complete_run_folder(tiny, home):
    result = train(TrainConfig(competition=tiny, epochs=2, batch_size=8, verbose=0))
    run = result.run_dir
    assert run.parent == home / "runs" and run.name.startswith("cnn-")
    for name in ("model.keras", "normalization.npz", "config.json", "history.csv", "metrics.json",
                 "learning_curves.png", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and 0.0 <= metrics["val_macro_f1"] <= 1.0
    assert metrics == result.metrics
    config = json.loads((run / "config.json").read_text())
    assert config["arch"] == "cnn" and config["epochs"] == 2 and config["classes"] == [0, 1, 2]
    assert len(pd.read_csv(run / "history.csv")) == 2
    assert latest_run(tiny) == run
    assert not list(run.glob(".*tmp*"))


def test_binary_competition_uses_one_sigmoid_unit(home):
    write_competition(home, slug="pair", classes=2, per_class=(10, 4, 2))
    result = train(TrainConfig(competition="pair", arch="resnet10", epochs=1, batch_size=8, verbose=0))
    import keras

    model = keras.models.load_model(result.model_path)
    assert model.output_shape == (None, 1) and model.loss == "binary_crossentropy"


def test_same_seed_gives_the_same_initial_weights(tiny):
    import keras

    from pipelines.models import build_model

    weights = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        weights.append(build_model("cnn", (16, 16, 3), 3).get_weights()[0])
    np.testing.assert_array_equal(*weights)


def test_a_learnable_task_is_learned(tiny):
    result = train(TrainConfig(competition=tiny, epochs=8, batch_size=8, learning_rate=3e-3, verbose=0))
    assert result.metrics["val_accuracy"] >= 0.6


def test_bad_settings_are_refused(tiny):
    with pytest.raises(PipelineError, match="unknown training setting"):
        TrainConfig().update(epoch=3)
    with pytest.raises(PipelineError, match="unknown optimizer"):
        train(TrainConfig(competition=tiny, epochs=1, optimizer="lion", verbose=0))
