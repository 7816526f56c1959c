import optuna

from kip import main
from tuning.tune_report import top_trials_table


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
    assert len(rows) == 3 and int(rows[0].split("|")[1]) == study.best_trial.number
    assert "| epochs | learning_rate |" in table  # fixed settings shown beside the sampled ones
    assert "trial 1: FloatingPointError: loss became NaN" in table
    assert "4 trials: 3 complete, 1 fail" in table


def test_tune_then_report_from_the_command_line(tiny, home, capsys):
    args = ["--competition", tiny, "--set", "verbose=0", "--space", "epochs=1", "--space", "batch_size=8"]
    assert main(["tune", *args, "--trials", "3", "--space", "optimizer=adam,sgd"]) == 0
    out = capsys.readouterr().out
    assert f"{'optimizer':<18}choice: adam, sgd" in out and f"{'epochs':<18}fixed: 1" in out
    assert "3 trials (3 complete)" in out and "best val_accuracy=" in out

    # changing the choices of a resumed study is refused in one line, with a hint
    assert main(["tune", *args, "--trials", "1"]) == 2
    assert "--study" in capsys.readouterr().err

    assert main(["tune-report", "--competition", tiny]) == 0
    reports = home / "reports" / tiny
    assert (reports / "tune-tiny-cnn.md").read_text().startswith("# Study tiny-cnn")
    for kind in ("history", "importances", "parallel", "slice"):
        assert (reports / f"tune-tiny-cnn-{kind}.png").stat().st_size > 1000
    assert main(["tune-report", "--competition", tiny, "--study", "nope"]) == 2
