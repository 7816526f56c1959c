"""Trials as smaller copies of the final run: the fidelity's parsing, scaling and data, and what a study records."""
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

import tuning.check
import tuning.objective
from competition.errors import PipelineError
from competition.registry import load_competition
from kip import main
from pipelines.config import TrainConfig
from pipelines.data import load_dataset
from tuning.fidelity import CheckOptions, Fidelity, parse_options, reduce_dataset, search_minutes
from tuning.search import TuneOptions, tune
from tuning.space import build_space

QUICK = ["epochs=1", "batch_size=8"]


def test_parse_and_resolve_a_fidelity():
    assert parse_options("", Fidelity, "FIDELITY") == Fidelity()
    fidelity = parse_options("minutes=2 subset=0.25, scale=0.5", Fidelity, "FIDELITY")
    assert fidelity == Fidelity(minutes=2.0, subset=0.25, scale=0.5)
    assert parse_options("top=3 budget=1", CheckOptions, "CHECK") == CheckOptions(top=3, budget=1.0)
    default = Fidelity().resolve(18)
    assert (default.minutes, default.subset, default.scale, default.final_minutes) == (3.0, 0.5, 1.0, 18.0)
    # a trial fits a third of the final run's epochs: a sixth of the time, each epoch over half the data
    assert default.epoch_scale == pytest.approx(1 / 3)
    trial = default.apply(TrainConfig(epochs=60, warmup_epochs=1.5, minutes=18))
    assert (trial.minutes, trial.epochs, trial.warmup_epochs, trial.patience) == (3.0, 20, pytest.approx(0.5), 4)
    assert fidelity.resolve(18).epoch_scale == pytest.approx((2 / 18) / (0.25 * 0.25))
    untimed = Fidelity().resolve(0)  # a final run without a time budget: trials run the epochs, unscaled
    assert untimed.minutes == 0 and untimed.epoch_scale == 1
    assert untimed.apply(TrainConfig(epochs=7, minutes=0)).epochs == 7
    assert "minutes=3 subset=0.5 scale=1 (final run 18 minutes)" == default.describe()


@pytest.mark.parametrize("text, kind, message", [
    ("epochs=3", Fidelity, "FIDELITY: unknown option 'epochs=3'; use minutes=... subset=... scale=..."),
    ("minutes", Fidelity, "FIDELITY: unknown option 'minutes'"),
    ("subset=half", Fidelity, "FIDELITY: subset='half' needs a number"),
    ("subset=1.5", Fidelity, "FIDELITY: subset=1.5 must be in (0, 1]"),
    ("scale=0", Fidelity, "FIDELITY: scale=0 must be in (0, 1]"),
    ("minutes=-1", Fidelity, "FIDELITY: minutes=-1 must be 0"),
    ("top=1.5", CheckOptions, "CHECK: top='1.5' needs an integer"),
    ("budget=2", CheckOptions, "CHECK: budget=2 must be a fraction"),
    ("tops=2", CheckOptions, "CHECK: unknown option 'tops=2'; use top=... budget=... margin=..."),
])
def test_bad_fidelity_or_check_is_one_line(text, kind, message):
    with pytest.raises(PipelineError) as err:
        parse_options(text, kind, kind.__name__ == "Fidelity" and "FIDELITY" or "CHECK")
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_fidelity_option_from_the_command_line_writes_nothing(tiny, home, capsys):
    assert main(["tune", "--competition", tiny, "--fidelity", "minutes=1 speed=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: FIDELITY: unknown option 'speed=2'") and err.count("\n") == 1
    assert not (home / "tuning").exists()


def test_search_minutes_leave_the_final_check_its_share():
    fidelity, check = Fidelity().resolve(18), CheckOptions(top=2, budget=0.5)
    assert search_minutes(None, fidelity, check) is None
    assert search_minutes(60, fidelity, CheckOptions()) == 24  # the default: 1 candidate and the default at 18
    assert search_minutes(60, fidelity, check) == 33  # 3 runs of 9 minutes for the check
    assert search_minutes(30, fidelity, check) == 3  # exactly one trial
    assert search_minutes(5, fidelity, CheckOptions(top=0)) == 5
    with pytest.raises(PipelineError, match=r"MINUTES=29 holds no trial: .* needs about 30 minutes; give MINUTES=30"):
        search_minutes(29, fidelity, check)
    with pytest.raises(PipelineError, match=r"MINUTES=2 holds no trial: one 3-minute trial needs about 3 minutes"):
        search_minutes(2, fidelity, CheckOptions(top=0))


def test_reduced_data_is_a_stratified_subset_at_a_smaller_size_with_the_whole_hold_out(tiny):
    dataset = load_dataset(load_competition(tiny), seed=42, progress=False)
    half = reduce_dataset(dataset, Fidelity(subset=0.5, scale=0.5), seed=42)
    assert len(half.train) == len(dataset.train) // 2 and half.test is None
    assert np.bincount(half.train.labels).tolist() == [6, 6, 6]  # 12 a class -> 6 a class
    assert set(half.train.ids) <= set(dataset.train.ids)
    assert half.train.images.shape[1:] == (8, 8, 3) and half.train.images.dtype == np.uint8
    assert half.val.ids == dataset.val.ids and half.val.images.shape == (len(dataset.val), 8, 8, 3)
    assert reduce_dataset(dataset, Fidelity(subset=1), 42).train.images is dataset.train.images  # nothing copied
    with pytest.raises(PipelineError, match="subset=0.05 keeps too few of the 36 train images for 3 classes"):
        reduce_dataset(dataset, Fidelity(subset=0.05), 42)


@pytest.fixture
def trained(monkeypatch):
    """What trials (``trial``) and the final check (``check``) train, each as (config, train size, val size, input
    shape), scored by a stand-in for train(): the plumbing is under test here, not the training."""
    seen = {"trial": [], "check": []}

    def stand_in(kind):
        def train(config, dataset=None, run_dir=None, **kwargs):
            seen[kind].append((config, len(dataset.train), len(dataset.val), dataset.input_shape))
            metrics = {"val_accuracy": 0.5 + 0.01 * len(seen[kind]), "val_macro_f1": 0.5, "val_log_loss": 1.0,
                       "epochs_run": config.epochs, "train_seconds": 1.0}
            return SimpleNamespace(metrics=metrics, history={"loss": [1.0]}, run_dir=run_dir)
        return train

    monkeypatch.setattr(tuning.objective, "train", stand_in("trial"))
    monkeypatch.setattr(tuning.check, "train", stand_in("check"))
    return seen


def test_trials_run_the_budgeted_recipe_at_the_fidelity_and_the_check_at_the_final_budget(tiny, home, trained):
    config = TrainConfig(competition=tiny, verbose=0, epochs=4, minutes=12, warmup_epochs=1)
    tune(config, build_space("cnn", ["batch_size=8", "epochs=2:4"]),
         TuneOptions(trials=3, pruner="none", fidelity=Fidelity(minutes=2, subset=0.5),
                     check=CheckOptions(top=1, budget=0.25)))
    seen = trained
    k = (2 / 12) / 0.5  # a trial's share of the final run's epochs (smaller images: tested above, the cnn needs 16)
    for trial_config, train_size, val_size, shape in seen["trial"]:
        assert trial_config.minutes == 2 and (train_size, val_size, shape) == (18, 12, (16, 16, 3))
    first = seen["trial"][0][0]  # trial 0: make train's recipe, epochs 4 and warm-up 1, scaled
    assert first.epochs == np.ceil(4 * k) and first.warmup_epochs == pytest.approx(k)
    [(default, *default_data), (candidate, *candidate_data)] = seen["check"]
    assert default.minutes == candidate.minutes == 3  # a quarter of the final 12 minutes, on the full data
    assert default_data == candidate_data == [36, 12, (16, 16, 3)]
    assert (default.epochs, default.warmup_epochs) == (1, 0.25)  # scaled to the check's quarter of the budget


def test_a_study_refuses_another_fidelity_with_a_hint_and_keeps_its_trials(tiny, home, trained):
    config, space = TrainConfig(competition=tiny, verbose=0, epochs=1), build_space("cnn", QUICK)
    study = tune(config, space, TuneOptions(trials=1, check=CheckOptions(top=0)))
    assert study.user_attrs["fidelity"] == {"minutes": 3.0, "subset": 0.5, "scale": 1.0, "final_minutes": 18.0}
    for options in (TuneOptions(trials=1, fidelity=Fidelity(subset=1)), TuneOptions(trials=1)):
        other = config.update(minutes=12) if options.fidelity == Fidelity() else config
        with pytest.raises(PipelineError) as err:
            tune(other, space, options)
        assert "ran its trials at fidelity minutes=3 subset=0.5 scale=1 (final run 18 minutes)" in str(err.value)
        assert "start a new study with STUDY=<name>" in str(err.value) and "\n" not in str(err.value)
    kept = optuna.load_study(study_name="tiny-cnn", storage=f"sqlite:///{home}/tuning/studies.db").trials
    assert [t.state.name for t in kept] == ["COMPLETE", "WAITING"]  # trial 0 kept; the early try still waits
    tune(config, space, TuneOptions(trials=1, check=CheckOptions(top=0), study="tiny-full"))  # a new study runs


def test_a_study_from_before_fidelities_is_refused(tiny, home):
    from tuning.storage import open_study

    old = open_study("tiny-cnn")
    old.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5))
    with pytest.raises(PipelineError, match="holds trials from before trials had a fidelity.*STUDY=<name>"):
        tune(TrainConfig(competition=tiny, verbose=0, epochs=1), build_space("cnn", QUICK), TuneOptions(trials=1))


def test_a_space_that_excludes_the_default_is_a_notice_and_the_study_runs(tiny, home, capsys, trained):
    space = build_space("cnn", [*QUICK, "learning_rate=1e-2:1e-1", "optimizer=sgd,rmsprop"])
    study = tune(TrainConfig(competition=tiny, verbose=0, epochs=1), space,
                 TuneOptions(trials=1, check=CheckOptions(top=0)))
    out = capsys.readouterr().out
    [notice] = [line for line in out.splitlines() if "notice" in line]
    default = TrainConfig().learning_rate
    assert notice.startswith(f"tune: notice: the search space excludes make train's default learning_rate={default}")
    assert "optimizer='adamw'" in notice and "the final check still trains the default itself" in notice
    assert study.trials[0].params["learning_rate"] == 1e-2  # trial 0 starts from the nearest point
    assert study.trials[0].state.name == "COMPLETE" and trained["trial"][0][0].learning_rate == 1e-2
