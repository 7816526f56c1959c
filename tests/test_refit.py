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


def test_a_blend_weighs_a_refit_by_its_sources_validation_predictions_and_uses_its_own_test_ones(tiny, home):
    import shutil

    import numpy as np

    from pipelines.blend import blend
    from pipelines.members import read_member, test_probabilities
    from pipelines.probabilities import read_probabilities
    from pipelines.refit import refit

    settings = dict(competition=tiny, epochs=2, batch_size=8, minutes=0, verbose=0)
    source = train(TrainConfig(**settings)).run_dir
    other = train(TrainConfig(**settings, seed=7)).run_dir
    refitted = refit(source, progress=False).run_dir
    result = blend([refitted, other])
    assert set(result.metrics["weights"]) == {refitted.name, other.name}
    assert result.metrics["member_accuracy"][refitted.name] == pytest.approx(
        json.loads((source / "metrics.json").read_text())["val_accuracy"])
    weights = result.metrics["weights"]
    tests = {m.name: test_probabilities(m, progress=False) for m in map(read_member, (refitted, other))}
    expected = sum(weights[name] * next(iter(p.by_tta.values())) for name, p in tests.items())
    blended = read_probabilities(result.blend_dir / "test_predictions.npz")
    assert np.allclose(next(iter(blended.by_tta.values())), expected, atol=1e-5)  # the refit's own test predictions
    shutil.rmtree(source)
    with pytest.raises(PipelineError, match=f"{refitted}: a refit has no validation predictions of its own and its "
                                            f"source {source} is gone"):
        blend([refitted, other])
