import json
from pathlib import Path

import optuna

from pipelines.cli import main
from pipelines.train import TrainConfig
from tuning.search import best_params_path, tune


def test_study_is_stored_in_sqlite_and_resumes(tiny, home, capsys):
    config = TrainConfig(competition=tiny, batch_size=8, verbose=0)
    tune(config, n_trials=2, epochs_range=(1, 2))
    study = tune(config, n_trials=1, epochs_range=(1, 2))
    assert (home / "tuning" / "studies.db").exists()
    assert len(study.trials) == 3
    loaded = optuna.load_study(study_name="tiny-cnn", storage=f"sqlite:///{home / 'tuning' / 'studies.db'}")
    assert len(loaded.trials) == 3
    for trial in study.trials:
        assert set(trial.params) == {"optimizer", "learning_rate", "epochs"}
        assert trial.params["optimizer"] in {"adam", "sgd", "rmsprop"}

    best = json.loads(best_params_path(tiny, "cnn").read_text())
    assert best["params"] == study.best_params

    # make train picks the tuned parameters up, and says so
    assert main(["train", "--competition", tiny, "--set", "verbose=0"]) == 0
    out = capsys.readouterr().out
    assert "using tuned parameters" in out
    run = out.split("train: ")[-1].split()[0]
    used = json.loads((Path(run) / "config.json").read_text())
    assert used["optimizer"] == best["params"]["optimizer"] and used["epochs"] == best["params"]["epochs"]
