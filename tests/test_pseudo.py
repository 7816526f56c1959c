import json

import numpy as np

from pipelines.config import TrainConfig
from pipelines.train import train
from pipelines.tuned import make_config


def test_confident_test_predictions_are_added_with_their_labels_and_counted(cv_home):
    source = cv_home[1].cv_dir  # a CV's averaged test predictions
    tiny = "tiny"
    result = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0,
                               pseudo_labels=str(source), pseudo_threshold=0.01))
    config = json.loads((result.run_dir / "config.json").read_text())
    added = config["pseudo_labels_added"]
    assert added["added"] == 12 and sum(added["per_class"].values()) == 12  # every test image is confident at 1%
    assert config["train_size"] == 36 + 12 and config["val_size"] == 12  # validation untouched
    strict = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0,
                               pseudo_labels=str(source), pseudo_threshold=0.99))
    assert json.loads((strict.run_dir / "config.json").read_text())["pseudo_labels_added"]["added"] < 12
    assert np.isfinite(result.metrics["val_accuracy"])


def test_the_pseudo_label_source_may_be_named_as_make_printed_it(cv_home):
    source = cv_home[1].cv_dir
    for given in (source.name, f"runs/{source.name}"):
        config, _ = make_config("tiny", "cnn", [f"pseudo_labels={given}"], tuned="0")
        assert config.pseudo_labels == str(source.resolve()) and not config.problems()
