import json

import keras
import pandas as pd
import pytest

from competition.errors import PipelineError
from pipelines import runs
from pipelines.config import TrainConfig
from pipelines.train import train


class StopAfter(keras.callbacks.Callback):
    """Simulates a killed run: raises after ``epochs`` epochs (BackupAndRestore has saved them by then)."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


def killed_run(tiny, home):
    config = TrainConfig(competition=tiny, epochs=3, batch_size=8, minutes=0, verbose=0)
    with pytest.raises(KeyboardInterrupt):
        train(config, callbacks=[StopAfter(1)])
    [run] = [p for p in (home / "runs").iterdir() if p.is_dir()]
    return config, run


def test_a_run_another_process_is_training_is_never_resumed(tiny, home):
    config, run = killed_run(tiny, home)
    live = runs.RunLock.try_claim(run)  # as a second `make train` still training in it would hold it
    assert live is not None and runs.RunLock.try_claim(run) is None
    assert runs.unfinished_run(config) is None
    second = train(config)
    assert second.run_dir != run  # a new folder: the live run's history and metrics stay its own
    assert not (run / "metrics.json").exists() and pd.read_csv(run / "history.csv").epoch.tolist() == [0]
    live.release()  # the other process ended (killed or not): its folder is resumed
    third = train(config)
    assert third.run_dir == run and pd.read_csv(run / "history.csv").epoch.tolist() == [0, 1, 2]


def test_a_named_run_folder_in_use_is_refused(tiny, home):
    config, run = killed_run(tiny, home)
    with runs.RunLock.try_claim(run):
        with pytest.raises(PipelineError, match="another process is training in this run folder"):
            train(config, run_dir=run)


def test_new_runs_started_in_the_same_second_get_their_own_folders(home):
    first, second = runs.new_run("cnn"), runs.new_run("cnn")
    assert first.run_dir != second.run_dir and first.run_dir.parent == home / "runs"
    first.release(), second.release()


def test_reading_a_run(tiny, home):
    result = train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0))
    assert runs.read_config(result.run_dir)["slug"] == "tiny"
    assert runs.read_metrics(result.run_dir) == result.metrics
    assert runs.latest_run("tiny") == result.run_dir
    (result.run_dir / "config.json").write_text("{not json")
    with pytest.raises(PipelineError, match="not valid JSON"):
        runs.read_config(result.run_dir)
    with pytest.raises(PipelineError, match="not a run folder"):
        runs.read_config(home)
    assert json.loads((result.run_dir / "metrics.json").read_text())["epochs_run"] == 1


def test_a_run_is_found_by_path_by_path_from_the_project_home_or_by_name(home, tmp_path_factory, monkeypatch):
    run = home / "runs" / "cnn-20260101-000000"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    assert runs.resolve_run("cnn-20260101-000000") == run  # the name `make train` printed
    assert runs.resolve_run(run) == run
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # make run from the clone, KIP_HOME elsewhere
    assert runs.resolve_run("runs/cnn-20260101-000000") == home / "runs" / "cnn-20260101-000000"
    assert runs.find_runs(["cnn-20260101-000000"], "tiny") == [run]
    assert runs.resolve_run("runs/nope") == runs.Path("runs/nope")  # as given, for the error that names it


def test_run_summary_says_why_a_run_ended_before_its_plan():
    metrics = {"epochs_run": 28, "train_seconds": 40.4}
    assert runs.run_summary(metrics) == "28 epochs, 40 s"
    metrics.update(stopped_early="no better val_accuracy in the last 10 epochs", best_epoch=18)
    assert runs.run_summary(metrics) == ("28 epochs, 40 s; stopped early: no better val_accuracy in the last 10 "
                                         "epochs, best epoch 18")
