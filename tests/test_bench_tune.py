import json
import subprocess
from types import SimpleNamespace

import pytest

from pipelines.config import TrainConfig
from tuning import bench_tune


def test_bench_tune_compares_pruners_on_one_seeded_space_and_writes_its_report(home, capsys):
    assert bench_tune.main(["--minutes", "0.05", "--classes", "3", "--per-class", "10", "--size", "16",
                            "--space", "epochs=1:3", "--space", "batch_size=8"]) == 0
    report = json.loads((home / "reports" / "bench-tune" / "bench-tune.json").read_text())
    assert report["source"].startswith("generated")  # no GIC data in a test home
    results = {r["pruner"]: r for r in report["results"]}
    assert list(results) == ["none", "sha", "median"]
    for r in results.values():
        assert r["trials_finished"] >= 1 and r["failed"] == 0
        assert r["trials_finished"] == r["complete"] + r["pruned"]
        assert r["trials_per_hour"] > 0 and r["wall_seconds"] > 0
    assert results["none"]["pruned"] == 0 and results["none"]["speedup"] == 1.0
    text = (home / "reports" / "bench-tune" / "bench-tune.md").read_text()
    assert "| sha |" in text and "target >= 2x" in text
    assert not (home / "tuning").exists()  # the studies lived in a temporary home
    assert "bench-tune.md" in capsys.readouterr().out


def test_bench_fidelity_trains_each_recipe_at_each_fidelity_and_ranks_them(tiny, home, capsys, monkeypatch):
    import tuning.objective
    from tuning import bench_fidelity

    seen = []

    def stand_in(config, dataset=None, run_dir=None, callbacks=(), **kwargs):
        """train() scoring a recipe by its learning rate, reporting its progress as a trial does (no training: the
        plumbing is under test; trials train for real in test_tuning)."""
        seen.append((config.minutes, len(dataset.train)))
        value = config.learning_rate + len(dataset.train) / 1000
        callbacks[0].on_train_begin()
        callbacks[0].on_epoch_end(config.epochs - 1, {"val_accuracy": value})
        return SimpleNamespace(metrics={"val_accuracy": value, "val_macro_f1": 0.5, "val_log_loss": 1.0,
                                        "epochs_run": config.epochs, "train_seconds": 1.0},
                               history={"loss": [1.0]}, run_dir=run_dir)

    monkeypatch.setattr(tuning.objective, "train", stand_in)
    assert bench_fidelity.main(["--competition", tiny, "--settings", "3", "--fidelity", "minutes=0.05 subset=0.5",
                                "--set", "minutes=0.3", "--set", "verbose=0", "--space", "batch_size=8"]) == 0
    assert seen == [(0.05, 18), (0.3, 36)] * 3  # recipe by recipe, each at every fidelity
    report = json.loads((home / "reports" / "bench-fidelity" / "tiny-cnn.json").read_text())
    default = TrainConfig().learning_rate
    assert report["recipes"][0]["learning_rate"] == default and len(report["recipes"]) == 3  # the default first
    assert set(report["results"]) == {"minutes=0.05 subset=0.5", "final minutes=0.3"}
    for result in report["results"].values():
        assert len(result["values"]) == 3 and result["at_12"] == result["at_36"] == result["values"]
    rows = {r["fidelity"]: r for r in report["rows"]}
    assert rows["minutes=0.05 subset=0.5"]["spearman"] == 1.0 and rows["minutes=0.05 subset=0.5"]["picks_best"]
    text = (home / "reports" / "bench-fidelity" / "tiny-cnn.md").read_text()
    assert "| fidelity | Spearman with the final run |" in text and "| minutes=0.05 subset=0.5 | 1.0 |" in text
    assert "bench-fidelity: " in capsys.readouterr().out


def test_fidelities_are_ranked_by_spearman_against_the_final_run_and_by_the_best_they_pick():
    from tuning.bench_fidelity import summarise

    results = {"low": {"values": [0.5, 0.6, 0.7, None], "seconds": 1, "at_12": [0.1, 0.3, 0.2, None],
                       "at_36": [None] * 4},
               "final": {"values": [0.6, 0.65, 0.8, 0.7], "seconds": 4, "at_12": [0] * 4, "at_36": [0] * 4}}
    rows = {r["fidelity"]: r for r in summarise(results, "final")}
    assert rows["low"]["spearman"] == 1.0 and rows["low"]["spearman_at_12"] == 0.5  # a failed recipe left out
    assert rows["low"]["spearman_at_36"] is None and rows["low"]["picks_best"]  # too few values: no correlation


@pytest.mark.slow
def test_make_bench_tune_transfer_scores_tuned_and_default_on_the_private_split(tiny, home):
    """The real make target, end to end on tiny data: a search, the final check, then both recipes at the final
    budget, scored on the private split."""
    from tests.kaggle_server import client_env, make_command

    command = make_command("bench-tune-transfer", f"COMPETITION={tiny}", "MINUTES=1", "TRIALS=2", "FINAL_MINUTES=0.6",
                           "CHECK=top=1 budget=0.5", "PRUNER=none", "SET=epochs=1 verbose=0", "SPACE=batch_size=8")
    # the timeout is a safety net for a hung process on a loaded machine, not a speed check
    result = subprocess.run(command, capture_output=True, text=True, cwd=home, env=client_env(home), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((home / "reports" / "bench-tune-transfer" / "tiny-cnn.json").read_text())
    assert report["finished"] == 2 and report["private_images"] == 12  # tiny's labelled test split
    assert report["final_minutes"] == 0.6 and report["check"]["check"]["final_minutes"] == 0.6
    private = report["private"]
    assert 0 <= private["default"] <= 1 and 0 <= private["candidate"] <= 1
    expected = private["candidate"] if report["check"]["beats_default"] else private["default"]
    assert private["tuned"] == expected
    assert report["difference_points"] == round(100 * (expected - private["default"]), 2)
    [line] = [line for line in result.stdout.splitlines() if "private hold-out accuracy" in line]
    assert f"tuned {private['tuned']:.4f}" in line and f"default {private['default']:.4f}" in line
    assert f"difference {report['difference_points']:+.2f} points" in line
    assert not (home / "tuning" / "best-tiny-cnn.json").exists()  # the user's tuned settings are left alone
    text = (home / "reports" / "bench-tune-transfer" / "tiny-cnn.md").read_text()
    assert "difference, tuned minus default" in text and "never loses" in text and "target >= 20" in text


def test_the_check_s_whole_runs_are_the_final_runs_and_nothing_is_trained_twice(tmp_path):
    from tuning.bench_transfer import check_runs

    default, winner, other = (tmp_path / name for name in ("cnn-default", "cnn-trial-0004", "cnn-trial-0002"))
    for run in (default, winner, other):
        run.mkdir()
        (run / "model.keras").write_bytes(b"")
    figures = {"kept": True, "default": {"run_dir": str(default)},
               "candidates": [{"trial": 2, "run_dir": str(other)}, {"trial": 4, "run_dir": str(winner)}]}
    assert check_runs({"trial": 4, "check": figures}) == {"default": default, "candidate": winner}
    assert check_runs({"trial": 4, "check": {**figures, "kept": False}}) == {}  # lean runs (budget < 1): trained again
    assert check_runs({"trial": None}) == {}  # no check ran
    (winner / "model.keras").unlink()  # a run that left no model is trained again
    assert check_runs({"trial": 4, "check": figures}) == {"default": default}


def test_make_bench_tune_transfer_hands_on_its_knobs():
    from tests.test_makefile import make_dry_run

    out = make_dry_run("bench-tune-transfer", "COMPETITION=no-such-competition-xyz", "MINUTES=20", "FINAL_MINUTES=6",
                       "HOLDOUT=0.1", "TRIALS=30")
    [line] = [line for line in out.replace("\\\n", " ").splitlines() if "tuning.bench_transfer" in line]
    assert "--minutes 20" in line and "--final-minutes 6" in line and "--holdout 0.1" in line
    assert "--trials 30" in line and "--competition no-such-competition-xyz" in line
    full = make_dry_run("bench-tune-transfer", "COMPETITION=no-such-competition-xyz")
    assert "--minutes 60" in full and "--final-minutes" not in full and "--holdout" not in full
