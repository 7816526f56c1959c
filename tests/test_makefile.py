import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_dry_run(*args: str) -> str:
    """The commands ``make -n`` would run (nothing is run), for a competition with no files, runs or venv."""
    env = {k: v for k, v in os.environ.items() if k != "KIP_HOME"}  # a test's home is given as an argument
    result = subprocess.run(["make", "-n", "-C", str(REPO), "VENV=/nonexistent-venv", *args], capture_output=True,
                            text=True, check=True, env=env)
    return result.stdout


def test_help_lists_every_target_with_a_description():
    out = subprocess.run(["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, check=True).stdout
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", (REPO / "Makefile").read_text(), re.S | re.M).group(1)
    for target in phony.replace("\\", " ").split():
        assert re.search(rf"\b{re.escape(target)}\b", out), target


def test_predict_on_a_fresh_clone_trains_with_the_given_minutes_and_tuned_mode():
    out = make_dry_run("predict", "COMPETITION=no-such-competition-xyz", "MINUTES=3", "TUNED=0")
    [train] = [line for line in out.splitlines() if " train " in line]
    assert "--set minutes=3" in train and "--tuned 0" in train


def test_submit_on_a_fresh_clone_trains_with_the_given_minutes():
    out = make_dry_run("submit", "COMPETITION=no-such-competition-xyz", "MINUTES=2")
    [train] = [line for line in out.splitlines() if " train " in line]
    assert "--set minutes=2" in train


def test_predict_with_named_runs_trains_nothing_first():
    out = make_dry_run("predict", "COMPETITION=no-such-competition-xyz", "RUNS=runs/cv-cnn-20260101-000000")
    assert " train " not in out and " data " not in out
    assert "predict --competition no-such-competition-xyz --runs runs/cv-cnn-20260101-000000" in out


def test_the_stage_files_are_looked_for_under_kip_home(tmp_path):
    for name in ("data/raw/comp.ready", "runs/latest-comp.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    out = make_dry_run("predict", "COMPETITION=comp", f"KIP_HOME={tmp_path}")
    assert " train " not in out and " data " not in out and " predict --competition comp" in out
    out = make_dry_run("predict", "COMPETITION=comp")  # the same files are not under the project: train first
    assert " train " in out
