import subprocess
import sys

import pytest


def run_cli(*args, home):
    return subprocess.run([sys.executable, "-m", "kip", *args], capture_output=True, text=True,
                          env={"KIP_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home),
                               "KAGGLE_CONFIG_DIR": str(home / "nokaggle")}, cwd=home)


def test_bad_input_gives_one_line_and_a_nonzero_exit_without_traceback(home):
    result = run_cli("train", "--competition", "nope", home=home)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no config for competition 'nope'")


def test_submit_without_a_submission_says_what_to_do(home):
    result = run_cli("submit", "--competition", "digits-demo", home=home)
    assert result.returncode == 2 and "run `make predict` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_setting_is_refused(tiny, home):
    result = run_cli("train", "--competition", "tiny", "--set", "epochs=many", home=home)
    assert result.returncode == 2 and "epochs needs a int" in result.stderr


def test_settings_are_typed_by_the_config(tiny):
    from pipelines.config import parse_settings

    assert parse_settings(["global_pool=false", "rotation=10", "flip=none", "minutes=2.5", "batch_size=32"]) == {
        "global_pool": False, "rotation": 10.0, "flip": "none", "minutes": 2.5, "batch_size": 32}


def test_predict_writes_probabilities_and_prints_the_top_classes_of_an_image(tiny, home, capsys):
    import numpy as np

    from kip import main
    from pipelines.config import TrainConfig
    from pipelines.train import train

    train(TrainConfig(competition=tiny, epochs=1, batch_size=8, minutes=0, verbose=0))
    assert main(["predict", "--competition", tiny, "--tta", "1"]) == 0
    csv = next((home / "submissions").glob("cnn-*.csv"))
    assert np.load(csv.with_suffix(".npz"))["probabilities"].shape == (12, 3)
    image = next((home / "data/raw/tiny/test_images").iterdir())
    assert main(["predict", "--competition", tiny, "--image", str(image)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(lines) == 3


def test_kip_data_detects_an_unknown_competition_caches_it_and_notes_the_missing_test_split(home, capsys):
    import shutil

    from kip import main
    from tests.conftest import write_class_folders

    raw = write_class_folders(home, slug="folders")
    shutil.rmtree(raw / "test")
    assert main(["data", "--competition", "folders"]) == 0
    captured = capsys.readouterr()
    assert 'layout = "folders"' in captured.out and "18 train, 6 val (val split), no test images" in captured.out
    assert "notice: folders has no test split" in captured.err
    assert (home / "data" / "raw" / "folders.ready").exists()
    assert sorted(p.name.split("-")[0] for p in (home / "data" / "cache" / "folders").iterdir()) == ["train", "val"]


def test_kip_report_prints_its_findings(tiny, home, capsys):
    from kip import main

    assert main(["report", "--competition", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "0 blank images" in out and (home / "reports" / "tiny" / "data.md").exists()


@pytest.mark.parametrize("with_config", [True, False])
def test_a_competition_given_as_a_folder_path_trains_then_predicts(home, capsys, with_config):
    import shutil

    from kip import main
    from tests.conftest import write_competition

    raw = write_competition(home, slug="elsewhere")
    if not with_config:
        (raw / "competition.toml").unlink()
    shutil.move(raw, home / "mycomp")
    quick = ["--set", "epochs=1", "--set", "minutes=0", "--set", "batch_size=8", "--set", "verbose=0"]
    assert main(["train", "--competition", "mycomp", *quick]) == 0
    slug = "elsewhere" if with_config else "mycomp"
    assert (home / "runs" / f"latest-{slug}.txt").exists()
    assert main(["predict", "--competition", "mycomp"]) == 0
    assert "rows ->" in capsys.readouterr().out
