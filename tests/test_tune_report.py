import optuna

from kip import main
from tuning.tune_report import importances, top_trials_table


def test_top_trials_table_lists_best_first_and_failures():
    study = optuna.create_study(study_name="s", direction="maximize")

    def objective(trial):
        trial.set_user_attr("fixed", {"epochs": 3})
        x = trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)
        if trial.number == 1:
            trial.set_user_attr("fail_reason", "FloatingPointError: loss became NaN/inf at epoch 1")
            raise FloatingPointError("nan")
        return x

    study.optimize(objective, n_trials=4, catch=(FloatingPointError,))
    table = top_trials_table(study)
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert "Fidelity of the trials: not recorded" in table and "Not run yet" in table
    assert len(rows) == 3 and int(rows[0].split("|")[1]) == study.best_trial.number
    assert "| epochs | learning_rate |" in table  # fixed settings shown beside the sampled ones
    assert "trial 1: FloatingPointError: loss became NaN" in table
    assert "4 trials: 3 complete, 1 fail" in table


def test_report_shows_the_fidelity_the_final_check_and_the_importance_of_each_parameter():
    study = optuna.create_study(study_name="s", direction="maximize", pruner=optuna.pruners.ThresholdPruner(0.3),
                                sampler=optuna.samplers.RandomSampler(seed=0))  # unseeded, 12 trials can rank wd first
    study.set_user_attr("fidelity", {"minutes": 3.0, "subset": 0.5, "scale": 1.0, "final_minutes": 18.0})

    def objective(trial):
        lr, wd = trial.suggest_float("learning_rate", 0.0, 1.0), trial.suggest_float("weight_decay", 0.0, 1.0)
        trial.report(lr, 15)
        if trial.should_prune():
            raise optuna.TrialPruned()
        return lr + 0.01 * wd

    study.optimize(objective, n_trials=12)
    study.set_user_attr("check", {
        "beats_default": True, "trial": 3, "why": "at 9 of the final run's 18 minutes, trial 3 reached 0.71",
        "check": {"minutes": 9, "final_minutes": 18, "margin": 0.005, "budget": 0.5,
                  "default": {"val_accuracy": 0.69, "epochs_run": 10},
                  "candidates": [{"trial": 3, "search_value": 0.6, "val_accuracy": 0.71, "epochs_run": 10}]}})
    table = top_trials_table(study)
    assert "Fidelity of the trials: minutes=3 subset=0.5 scale=1 (final run 18 minutes)" in table
    assert "Tuned parameters win: at 9 of the final run's 18 minutes, trial 3 reached 0.71." in table
    assert "| untuned recipe | | 0.6900 | 10 |" in table and "| trial 3 | 0.6000 | 0.7100 | 10 |" in table
    importance = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in table.splitlines()
                  if line.startswith("| learning_rate |") or line.startswith("| weight_decay |")}
    assert importance["learning_rate"] > importance["weight_decay"]  # pruned trials count at their last value
    study.set_user_attr("check", {"beats_default": False, "trial": None, "params": {},
                                  "why": "the default stays: no trial other than the untuned recipe finished"})
    assert "The default stays: no trial other than the untuned recipe finished." in top_trials_table(study)


def test_tune_then_report_from_the_command_line(tiny, home, capsys):
    args = ["--competition", tiny, "--set", "verbose=0", "--set", "epochs=1", "--space", "epochs=1",
            "--space", "batch_size=8", "--check", "top=0"]  # the final check has tests of its own
    assert main(["tune", *args, "--trials", "3", "--space", "optimizer=adam,sgd"]) == 0
    out = capsys.readouterr().out
    assert f"{'optimizer':<18}choice: adam, sgd" in out and f"{'epochs':<18}fixed: 1" in out
    assert "3 trials (3 complete)" in out and "best trial in the search:" in out
    assert "tune: make train keeps its default recipe" in out and "no final check was asked for" in out

    # changing the choices of a resumed study is refused in one line, with a hint
    assert main(["tune", *args, "--trials", "1"]) == 2
    assert "--study" in capsys.readouterr().err

    assert main(["tune-report", "--competition", tiny]) == 0
    reports = home / "reports" / tiny
    text = (reports / "tune-tiny-cnn.md").read_text()
    assert text.startswith("# Study tiny-cnn") and "## Final check" in text and "## Parameter importance" in text
    for kind in ("history", "parallel", "slice"):
        assert (reports / f"tune-tiny-cnn-{kind}.png").stat().st_size > 1000
    # three 1-epoch trials on 6 images can all score the same, and then no importance can be measured
    plot = reports / "tune-tiny-cnn-importances.png"
    assert plot.exists() != ("values that differ" in text)
    assert main(["tune-report", "--competition", tiny, "--study", "nope"]) == 2


def test_no_importance_when_every_trial_reached_the_same_value():
    study = optuna.create_study(study_name="s", direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: 0 * trial.suggest_float("learning_rate", 0.0, 1.0) + 1 / 3, n_trials=4)
    assert importances(study) is None
    assert "values that differ" in top_trials_table(study)
