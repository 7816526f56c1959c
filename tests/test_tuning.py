import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import tensorflow as tf
from optuna.trial import TrialState

import tuning.objective
from competition.errors import PipelineError
from competition.registry import load_competition
from kip import main
from pipelines.config import TrainConfig
from pipelines.data import load_dataset
from tests.conftest import FakeClock
from tuning.fidelity import CheckOptions, Fidelity
from tuning.objective import make_objective
from tuning.search import TuneOptions, best_params_path, tune
from tuning.space import build_space
from tuning.storage import open_storage

QUICK = ["epochs=1", "batch_size=8"]  # tiny data, one epoch: each trial takes a few seconds


def quick_config(slug: str, **changes) -> TrainConfig:
    """make train's defaults capped at one epoch, so the final check's runs are as short as the trials."""
    return TrainConfig(competition=slug, verbose=0, epochs=1, **changes)


def db_url(home: Path) -> str:
    return f"sqlite:///{home / 'tuning' / 'studies.db'}"


def test_study_is_stored_in_sqlite_and_resumes_then_checks_before_recommending(tiny, home, capsys):
    config = quick_config(tiny)
    space = build_space("cnn", QUICK)
    tune(config, space, TuneOptions(trials=2, check=CheckOptions(top=0)))  # the check runs once, below
    study = tune(config, space, TuneOptions(trials=1, check=CheckOptions(top=1)))
    assert (home / "tuning" / "studies.db").exists()
    assert len(study.trials) == 3
    loaded = optuna.load_study(study_name="tiny-cnn", storage=db_url(home))
    assert len(loaded.trials) == 3
    assert len({tuple(sorted(t.params.items())) for t in loaded.trials}) == 3  # the resumed sampler moved on
    # the first trial of a new study is make train's untuned recipe
    peak = TrainConfig().learning_rate
    assert study.trials[0].params == {"optimizer": "adamw", "learning_rate": peak, "weight_decay": 0.05,
                                      "schedule": "cosine", "warmup_epochs": 1.0, "dropout_rate": 0.3,
                                      "label_smoothing": 0.1, "augment_strength": 1.0, "whiten": False}
    # the next is the same recipe with whitening on: an option that helps only some data is measured from the start
    assert study.trials[1].params == {**study.trials[0].params, "whiten": True}
    assert study.trials[1].user_attrs["tries"] == "whiten=True"
    for trial in study.trials:
        assert {"optimizer", "learning_rate", "dropout_rate"} <= set(trial.params)
        assert trial.params["optimizer"] in {"adam", "adamw", "sgd", "rmsprop"}
    out = capsys.readouterr().out
    assert "search space for cnn" in out and "learning_rate" in out  # the space is printed at start
    assert "fidelity minutes=3 subset=0.5 scale=1 (final run 18 minutes)" in out
    assert "final check at 18 of the final run's 18 minutes" in out

    best = json.loads(best_params_path(tiny, "cnn").read_text())
    check = study.user_attrs["check"]
    assert best == json.loads(json.dumps(check))  # the record make train reads is the check's
    best_other = max(study.trials[1:], key=lambda t: (t.value, -t.number))
    assert [c["trial"] for c in check["check"]["candidates"]] == [best_other.number]  # never the untuned recipe
    winner = max(check["check"]["candidates"], key=lambda c: c["val_accuracy"])
    assert best["trial"] == winner["trial"]
    # the recipe make train gets: what the trial sampled and what the space held fixed
    assert best["params"] == {**study.trials[winner["trial"]].params, "epochs": 1, "batch_size": 8}
    gain = winner["val_accuracy"] - check["check"]["default"]["val_accuracy"]
    assert best["beats_default"] == (gain >= 0.005)
    # the check ran at the whole final budget: its winner is make train's run, what make predict now picks up
    kept = winner["run_dir"] if best["beats_default"] else check["check"]["default"]["run_dir"]
    assert best["run"] == kept and (Path(kept) / "val_predictions.npz").is_file()
    assert (home / "runs" / "latest-tiny.txt").read_text().strip() == kept  # never a trial's run
    assert "is a finished make train run at the final budget" in out
    assert main(["predict", "--competition", tiny]) == 0
    assert [p.name.split("-val")[0] for p in (home / "submissions").glob("*.csv")] == [Path(kept).name]

    # TUNED=1: make train uses the check's best candidate whether or not it won, and says so
    assert main(["train", "--competition", tiny, "--tuned", "1", "--set", "verbose=0", "--set", "minutes=0"]) == 0
    out = capsys.readouterr().out
    assert "using tuned parameters" in out and "(TUNED=1)" in out
    run = out.split("train: ")[-1].split()[0]
    used = json.loads((Path(run) / "config.json").read_text())
    assert used["optimizer"] == best["params"]["optimizer"] and used["epochs"] == 1
    assert used["learning_rate"] == pytest.approx(best["params"]["learning_rate"])


def write_tuned_record(home, beats: bool, slug: str = "tiny"):
    path = home / "tuning" / f"best-{slug}-cnn.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"study": "tiny-cnn", "trial": 3, "val_accuracy": 0.9, "beats_default": beats,
                                "why": "val_accuracy 0.9 vs 0.8" if beats else "the untuned recipe is the best trial",
                                "params": {"optimizer": "sgd", "learning_rate": 0.05}, "fixed": {"epochs": 2}}))


@pytest.mark.parametrize("beats, mode, used", [
    (True, "auto", True), (False, "auto", False), (False, "1", True), (True, "0", False)])
def test_tuned_parameters_are_used_only_when_they_beat_the_default_or_when_asked(tiny, home, beats, mode, used):
    from pipelines.tuned import tuned_settings

    write_tuned_record(home, beats)
    params, said = tuned_settings("tiny", "cnn", mode)
    assert params == ({"optimizer": "sgd", "learning_rate": 0.05} if used else {})
    assert ("using tuned" in said) == used and ("TUNED=1 uses them anyway" in said) == (mode == "auto" and not used)
    assert "epochs" not in params  # a fixed condition of the search is never handed on


def test_the_demo_never_uses_tuned_parameters(home, monkeypatch):
    import submissions.make

    seen = []

    def stop(config, **kwargs):
        seen.append(config)
        raise KeyboardInterrupt

    monkeypatch.setattr(submissions.make, "run_demo", stop)
    write_tuned_record(home, beats=True, slug="digits-demo")
    assert main(["demo", "--tuned", "1"]) == 130
    assert seen[0].optimizer == "adamw"  # the default, not the record's sgd


def test_failing_trials_are_recorded_with_their_reason_and_the_study_goes_on(tiny, home, monkeypatch):
    real_train, calls = tuning.objective.train, []

    def flaky_train(config, **kwargs):
        calls.append(config)
        if len(calls) == 1:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape [8,64,16,16]")
        if len(calls) == 2:  # a learning rate this large makes the loss NaN; TerminateOnNaN stops the run
            return real_train(config.update(optimizer="sgd", learning_rate=1e12, momentum=0.9), **kwargs)
        return real_train(config, **kwargs)

    monkeypatch.setattr(tuning.objective, "train", flaky_train)
    study = tune(quick_config(tiny), build_space("cnn", QUICK), TuneOptions(trials=3, check=CheckOptions(top=0)))
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.COMPLETE]
    assert "ResourceExhaustedError" in study.trials[0].user_attrs["fail_reason"]
    assert "NaN" in study.trials[1].user_attrs["fail_reason"]
    assert best_params_path(tiny, "cnn").exists()


def test_progress_is_reported_in_percent_of_the_run_and_the_pruner_stops_a_trial(tiny, home):
    config = TrainConfig(competition=tiny, verbose=0, minutes=0)
    dataset = load_dataset(load_competition(tiny), seed=config.seed, progress=False)
    space = build_space("cnn", ["epochs=3", "batch_size=8"])
    untimed = Fidelity(minutes=0, subset=1).resolve(0)
    keep = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    keep.optimize(make_objective(config, space, dataset, home / "kept", untimed), n_trials=1)
    # 3 epochs: a third of the run each; the step an epoch skipped holds the accuracy known there
    values = keep.trials[0].intermediate_values
    assert sorted(values) == list(range(30, 101, 5))
    assert all(values[step] == values[30] for step in range(30, 65, 5))
    assert all(values[step] == values[65] for step in range(65, 100, 5))
    # a pruner that stops every trial below accuracy 2.0 at its first report
    prune = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    prune.optimize(make_objective(config, space, dataset, home / "pruned", untimed), n_trials=1)
    assert prune.trials[0].state == TrialState.PRUNED and list(prune.trials[0].intermediate_values) == [30]
    assert "pruned at 30% of its run" in prune.trials[0].user_attrs["pruned"]
    assert (home / "kept" / "trial-0000" / "model.keras").exists()
    assert not (home / "pruned" / "trial-0000" / "model.keras").exists()  # a pruned trial keeps no model
    # a trial at the end of its run is never pruned: stopping it would save nothing
    end = optuna.create_study(direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=2.0))
    end.optimize(make_objective(config, build_space("cnn", QUICK), dataset, home / "end", untimed), n_trials=1)
    assert end.trials[0].state == TrialState.COMPLETE and list(end.trials[0].intermediate_values) == [100]


def test_a_time_budgeted_trial_reports_its_share_of_the_budget(tiny, home, monkeypatch):
    from tests.conftest import ticking

    clock = FakeClock()
    real_train = tuning.objective.train

    def train_with_ticks(config, **kwargs):  # every training step costs 1 fake second
        kwargs["callbacks"] = [ticking(clock, lambda epoch: 1.0), *kwargs["callbacks"]]
        return real_train(config, **kwargs)

    monkeypatch.setattr(tuning.objective, "train", train_with_ticks)
    config = TrainConfig(competition=tiny, verbose=0, minutes=0.6)  # a trial gets 0.1 minutes: 6 fake seconds
    dataset = load_dataset(load_competition(tiny), seed=config.seed, progress=False)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    fidelity = Fidelity(subset=1).resolve(config.minutes)
    study.optimize(make_objective(config, build_space("cnn", ["batch_size=8"]), dataset, home / "t", fidelity,
                                  clock=clock), n_trials=1)
    [trial] = study.trials
    steps = sorted(trial.intermediate_values)
    # 36 images in batches of 8: 4 fake seconds an epoch of a 6-second budget; the cap alone would say 10%
    assert trial.state == TrialState.COMPLETE and steps[0] >= 50
    assert trial.user_attrs["epochs_run"] < 10  # the time budget, not the cap of 60 x 0.1/0.6 = 10, ended it


def tune_command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "kip", "tune", "--competition", "tiny", "--set", "verbose=0", "--set", "epochs=1",
            "--heartbeat", "1", "--pruner", "none", "--check", "top=0", *[a for s in QUICK for a in ("--space", s)],
            *args]


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_sigkill_mid_study_loses_no_finished_trial_and_resumes(tiny, home):
    env = {**os.environ, "KIP_HOME": str(home), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(tune_command(home, "--trials", "50", "--space", "epochs=2"), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = open_storage(db_url(home), heartbeat=1)
    deadline = time.time() + 900  # a safety net on a loaded machine, not a speed check
    try:
        while time.time() < deadline:  # wait for a finished trial and a second well under way
            time.sleep(0.5)
            try:
                trials = optuna.load_study(study_name="tiny-cnn", storage=storage).get_trials()
            except KeyError:
                continue
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            if done and running and time.time() - running[0].datetime_start.timestamp() > 1.0:
                break
        else:
            pytest.fail("the tuning process never finished a trial")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    before = optuna.load_study(study_name="tiny-cnn", storage=storage).get_trials()
    finished = {t.number: (t.value, t.params) for t in before if t.state == TrialState.COMPLETE}
    stale = [t for t in before if t.state == TrialState.RUNNING]
    assert len(stale) == 1  # the trial the kill interrupted

    time.sleep(3.5)  # the grace period (3 heartbeats) passes
    subprocess.run(tune_command(home, "--trials", "1"), env=env, check=True, capture_output=True)
    after = {t.number: t for t in optuna.load_study(study_name="tiny-cnn", storage=storage).get_trials()}
    for number, (value, params) in finished.items():  # no finished trial lost or changed
        assert after[number].state == TrialState.COMPLETE
        assert (after[number].value, after[number].params) == (value, params)
    assert after[stale[0].number].state == TrialState.FAIL  # marked failed by the heartbeat check
    retried = [t for t in after.values()
               if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == stale[0].number]
    assert len(retried) == 1 and retried[0].params == stale[0].params and retried[0].state == TrialState.COMPLETE
    assert len(after) == len(before) + 1  # the study continued: the new trial re-ran the killed one's settings


def test_two_local_workers_share_one_study(tiny, home):
    study = tune(quick_config(tiny), build_space("cnn", QUICK),
                 TuneOptions(trials=4, workers=2, check=CheckOptions(top=0)))
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes ran trials
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # seeded per worker: no repeated trial
    record = json.loads(best_params_path(tiny, "cnn").read_text())
    assert record["study"] == "tiny-cnn" and "no final check was asked for" in record["why"]  # by the main process


def test_minutes_budget_stops_starting_trials(tiny, home):
    # an injected clock that moves 1 s at every reading; no final check, so the trials get the whole budget
    clock = FakeClock(step=1.0)
    study = tune(quick_config(tiny, minutes=0.6), build_space("cnn", QUICK),
                 TuneOptions(trials=None, minutes=0.5, check=CheckOptions(top=0)), clock=clock)
    assert 1 <= len(study.trials) < 30  # no trial limit: the budget ended the search
    assert all(t.state == TrialState.COMPLETE for t in study.trials)  # a trial under way is let finish its epochs
    assert "no final check was asked for" in study.user_attrs["check"]["why"]


def test_a_trial_running_past_the_minutes_budget_is_pruned_at_the_end_of_its_epoch(tiny, home):
    space = build_space("cnn", ["epochs=50", "batch_size=8"])
    # the budget is gone by the end of the first epoch: opening the study took it all, yet one trial runs
    clock = FakeClock(step=1.0)
    study = tune(TrainConfig(competition=tiny, verbose=0, minutes=0), space,
                 TuneOptions(trials=None, minutes=0.5 / 60, pruner="none", fidelity=Fidelity(subset=1),
                             check=CheckOptions(top=0)), clock=clock)
    # started within the budget, stopped after it; trial 1 (the early try) still waits for a resumed study
    [trial] = [t for t in study.trials if t.state != TrialState.WAITING]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # pruned at the end of its first epoch (2% of 50), not after 50
    assert "tuning budget ran out after epoch 1" in trial.user_attrs["pruned"]


def test_minutes_smaller_than_a_trial_and_the_check_is_one_line_and_writes_nothing(tiny, home):
    with pytest.raises(PipelineError) as err:
        tune(quick_config(tiny), build_space("cnn", QUICK), TuneOptions(trials=None, minutes=20))
    message = str(err.value)
    assert "\n" not in message and message.startswith("MINUTES=20 holds no trial")
    assert "one 3-minute trial plus the final check (2 runs of 18 minutes) needs about 39 minutes" in message
    assert not (home / "tuning").exists()  # no study, no record
