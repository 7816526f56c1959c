"""The final check: tuned parameters are recommended only when a candidate beats the default at the final budget."""
import json
from types import SimpleNamespace

import optuna
import pytest
from optuna.distributions import FloatDistribution

import tuning.check
from pipelines.config import TrainConfig
from pipelines.tuned import tuned_settings
from tuning.check import candidates, final_check, write_record
from tuning.fidelity import CheckOptions, Fidelity

LR = FloatDistribution(1e-4, 1e-1, log=True)


def study_with(values: list[float]) -> optuna.Study:
    """Trial 0 the untuned recipe; the others each a learning rate, with the search's validation accuracy."""
    study = optuna.create_study(study_name="tiny-cnn", direction="maximize")
    for number, value in enumerate(values):
        attrs = {"start": "make train's defaults", "moved": []} if number == 0 else {}
        study.add_trial(optuna.trial.create_trial(params={"learning_rate": 1e-3 * (number + 1)},
                                                  distributions={"learning_rate": LR}, value=value,
                                                  user_attrs={**attrs, "fixed": {"batch_size": 8}}))
    return study


UNTUNED = TrainConfig(competition="tiny", minutes=18, learning_rate=2e-3)  # the recipe make tune was given


def fake_train(scores: dict[float, float], seen: list):
    """A train() that scores a recipe by its learning rate (the untuned recipe's is 2e-3 here), without training."""
    def train(config, dataset=None, run_dir=None, lean=False, clock=None, **kwargs):
        seen.append((config, lean))
        return SimpleNamespace(metrics={"val_accuracy": scores[round(config.learning_rate, 6)], "val_macro_f1": 0.5,
                                        "epochs_run": 3})
    return train


def run_check(monkeypatch, home, study, scores, check=CheckOptions(top=2, budget=0.5)):
    seen = []
    monkeypatch.setattr(tuning.check, "train", fake_train(scores, seen))
    record = final_check(study, UNTUNED, check, Fidelity().resolve(18), None, home / "runs" / "tune-tiny-cnn")
    write_record(record, "tiny", "cnn")
    assert {lean for _, lean in seen} <= {check.budget < 1}  # whole runs, like make train's, at the whole budget
    return record, [config for config, _ in seen]


def test_candidates_are_the_top_finished_trials_other_than_the_default_one_per_recipe():
    study = study_with([0.9, 0.5, 0.8, 0.7])
    retried = optuna.trial.create_trial(params={"learning_rate": 3e-3}, distributions={"learning_rate": LR},
                                        value=0.85, user_attrs={"fixed": {"batch_size": 8}})
    study.add_trial(retried)  # a retry of trial 2: the same recipe
    assert [t.number for t in candidates(study, 2)] == [4, 3]
    assert [t.number for t in candidates(study, 5)] == [4, 3, 1]


def test_tuned_parameters_are_written_to_win_only_when_a_candidate_beats_the_default(monkeypatch, home, capsys):
    study = study_with([0.6, 0.7, 0.9, 0.8])  # trials 2 and 3 are the candidates
    record, seen = run_check(monkeypatch, home, study, {0.002: 0.60, 0.003: 0.64, 0.004: 0.66})
    assert [c.minutes for c in seen] == [9, 9, 9]  # the default and the 2 candidates at half of 18 minutes
    assert seen[0].learning_rate == 2e-3 and seen[1].batch_size == 8  # the default; a candidate's whole recipe
    assert record["beats_default"] and record["trial"] == 3
    assert record["params"] == {"batch_size": 8, "learning_rate": 0.004}
    assert "trial 3 reached 0.6600 and the untuned recipe 0.6000 (+6.00 points)" in record["why"]
    assert [c["val_accuracy"] for c in record["check"]["candidates"]] == [0.64, 0.66]
    assert study.user_attrs["check"] == json.loads(json.dumps(record))
    assert "tune: make train will use trial 3" in capsys.readouterr().out
    params, said = tuned_settings("tiny", "cnn")  # what make train then does
    assert params == {"batch_size": 8, "learning_rate": 0.004} and "they beat the default recipe" in said


@pytest.mark.parametrize("scores, why", [
    ({0.003: 0.58, 0.004: 0.60}, "the default stays: at 9 of the final run's 18 minutes on the same hold-out, trial 3 "
                                 "reached 0.6000 and the untuned recipe 0.6000 (+0.00 points)"),
    ({0.003: 0.603, 0.004: 0.55}, "(+0.30 points, less than the margin of 0.5 points)"),
])
def test_the_default_stays_when_no_candidate_wins_at_the_final_budget(monkeypatch, home, capsys, scores, why):
    study = study_with([0.6, 0.7, 0.9, 0.8])  # better than the default in the search, not in the check
    record, _ = run_check(monkeypatch, home, study, {0.002: 0.60, **scores})
    assert not record["beats_default"] and why in record["why"]
    assert record["why"].startswith("the default stays")
    assert "the default stays" in capsys.readouterr().out
    params, said = tuned_settings("tiny", "cnn")
    assert params == {} and "not using the tuned parameters" in said and "the default stays" in said
    assert tuned_settings("tiny", "cnn", "1")[0] == record["params"]  # TUNED=1 takes the best candidate anyway


@pytest.mark.parametrize("values, check, why", [
    ([0.9], CheckOptions(), "no trial other than the untuned recipe finished"),
    ([0.6, 0.7], CheckOptions(top=0), "no final check was asked for"),
])
def test_nothing_to_check_keeps_the_default(monkeypatch, home, values, check, why):
    record, seen = run_check(monkeypatch, home, study_with(values), {}, check)
    assert seen == [] and not record["beats_default"] and record["params"] == {} and why in record["why"]
    assert tuned_settings("tiny", "cnn") == ({}, f"train: not using the tuned parameters in "
                                                 f"{home / 'tuning' / 'best-tiny-cnn.json'}: {record['why']}; "
                                                 f"TUNED=1 uses them anyway")


@pytest.mark.parametrize("scores, kept", [({0.002: 0.60, 0.003: 0.70}, "trial-0002"),
                                          ({0.002: 0.60, 0.003: 0.55}, "default")])
def test_at_the_whole_final_budget_the_winner_is_kept_as_the_final_run(monkeypatch, home, capsys, scores, kept):
    study = study_with([0.6, 0.7, 0.9])
    record, seen = run_check(monkeypatch, home, study, scores, CheckOptions())  # the default: top=1, budget=1
    assert [c.minutes for c in seen] == [18, 18] and seen[0] == UNTUNED
    assert record["run"].startswith(str(home / "runs" / "tune-tiny-cnn" / "check-after-3" / "cnn-"))
    assert record["run"].endswith(kept) and record["check"]["candidates"][0]["run_dir"].endswith("trial-0002")
    assert f"is a finished make train run at the final budget: {record['run']}" in capsys.readouterr().out
    half, _ = run_check(monkeypatch, home, study, scores)  # below the whole budget the runs are lean: none kept
    assert half["run"] is None
    assert record["check"]["kept"] and not half["check"]["kept"]  # what make bench-tune-transfer reuses by


def test_a_candidate_that_fails_in_the_check_cannot_win(monkeypatch, home, capsys):
    study = study_with([0.6, 0.7, 0.9, 0.8])
    record, _ = run_check(monkeypatch, home, study, {0.002: 0.60, 0.004: 0.55})  # trial 2 (0.003) raises
    assert not record["beats_default"] and [c["trial"] for c in record["check"]["candidates"]] == [3]
    assert "tune: check: trial 2 failed: KeyError" in capsys.readouterr().out
    record, _ = run_check(monkeypatch, home, study, {0.002: 0.60})  # both fail
    assert not record["beats_default"] and "every candidate failed" in record["why"]


def test_make_train_says_which_parameters_it_uses_and_fits_the_tuned_epochs_to_its_budget(tiny, home):
    from pipelines.tuned import make_config, write_tuned

    path = home / "tuning" / "best-tiny-cnn.json"
    untuned = f"train: the default recipe (no tuned parameters in {path}; `make tune` looks for some)"
    assert make_config(tiny, "cnn") == (TrainConfig(competition=tiny), untuned)
    write_tuned("tiny", "cnn", {"params": {"epochs": 20, "learning_rate": 0.01}, "beats_default": True, "why": "won",
                                "fidelity": Fidelity().resolve(18).identity()})
    config, said = make_config(tiny, "cnn")
    assert (config.epochs, config.learning_rate) == (20, 0.01)
    assert said.endswith("(they beat the default recipe: won): {'epochs': 20, 'learning_rate': 0.01}")
    # the cap binds at the same share of a longer (or shorter) budget than the one the study checked
    config, said = make_config(tiny, "cnn", ["minutes=36"])
    assert config.epochs == 40 and "; epochs 20 was tuned for 18 minutes, so epochs 40 for this run's 36;" in said
    assert make_config(tiny, "cnn", minutes=9)[0].epochs == 10  # a budget the caller plans (a CV fold's) too
    assert make_config(tiny, "cnn", ["minutes=36", "epochs=25"])[0].epochs == 25  # given on its own: kept
    assert make_config(tiny, "cnn", ["minutes=0"])[0].epochs == 20  # no budget: the cap as tuned
    config, said = make_config(tiny, "cnn", tuned="0")
    assert config == TrainConfig(competition=tiny)
    assert said == "train: the default recipe (TUNED=0: tuned parameters are not used)"


def test_a_longer_budget_than_the_default_scales_the_default_caps_so_the_budget_ends_the_run(tiny, home):
    from pipelines.tuned import make_config

    default = TrainConfig()
    config, said = make_config(tiny, "cnn", ["minutes=45"])
    assert (config.epochs, config.patience) == (150, 25)
    assert said.endswith("; the default caps (epochs 60, patience 10) are for 18 minutes, so epochs 150, "
                         "patience 25 for this run's 45")
    assert make_config(tiny, "cnn", minutes=36)[0].epochs == 120  # a budget the caller plans (compete's) too
    config = make_config(tiny, "cnn", ["minutes=45", "epochs=70"])[0]  # given: kept, patience still scaled
    assert (config.epochs, config.patience) == (70, 25)
    for shorter in (["minutes=5"], ["minutes=0"], None):  # the default budget or less, or none: the default caps
        config = make_config(tiny, "cnn", shorter)[0]
        assert (config.epochs, config.patience) == (default.epochs, default.patience)
