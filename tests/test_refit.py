import json

import pytest

from competition.errors import PipelineError
from pipelines.config import TrainConfig
from pipelines.train import train
from submissions.make import refit_submission


def test_a_refit_trains_on_every_labelled_image_for_the_source_epochs(tiny, home):
    source = train(TrainConfig(competition=tiny, epochs=2, batch_size=8, minutes=0, verbose=0)).run_dir
    result, made = refit_submission(source)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["kind"] == "refit" and config["refit_of"] == str(source)
    assert config["train_size"] == 48 and config["val_size"] == 0  # train and val together, no validation
    assert result.metrics["epochs_run"] == 2 and result.metrics["estimate"] == pytest.approx(
        json.loads((source / "metrics.json").read_text())["val_accuracy"])
    assert "val_accuracy" not in result.metrics  # no validation score of its own
    assert "-refit" in made.path.name
    side = json.loads(made.path.with_suffix(".json").read_text())
    assert "no validation score of its own" in side["note"]


def test_refitting_an_unfinished_run_is_refused(tiny, home):
    run = home / "runs" / "cnn-unfinished"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"competition": tiny, "arch": "cnn", "classes": [0, 1, 2]}))
    with pytest.raises(PipelineError, match="not finished"):
        refit_submission(run)
