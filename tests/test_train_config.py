import subprocess
import sys
from pathlib import Path

import pytest

from competition.errors import PipelineError
from pipelines.config import ARCHS, TrainConfig, parse_settings

REPO = Path(__file__).resolve().parents[1]


def test_the_defaults_are_sound_and_every_arch_is_a_model():
    from pipelines.models import MODELS

    assert TrainConfig().problems() == []
    assert set(ARCHS) == set(MODELS)


@pytest.mark.parametrize("setting, message", [
    ("learning_rate=-1", "learning_rate=-1.0 must be above 0"),
    ("minutes=-1", "minutes=-1.0 must be 0 (no budget) or more"),
    ("dropout_rate=1.5", "dropout_rate=1.5 must be in [0, 1)"),
    ("optimizer=lion", "unknown optimizer 'lion'"),
    ("arch=vgg", "unknown arch 'vgg'"),
    ("epochs=0", "epochs=0 must be at least 1"),
    ("label_smoothing=1", "label_smoothing=1.0 must be in [0, 1)"),
    ("zoom=2", "zoom=2.0 must be in [0, 1)"),
    ("flip=diagonal", "unknown flip 'diagonal'"),
    ("momentum=1.2", "momentum=1.2 must be in [0, 1)"),
    ("weights=/no/such.h5", "weights='/no/such.h5' is not a file"),
])
def test_each_bad_setting_is_named(setting, message):
    problems = TrainConfig().update(**parse_settings([setting])).problems()
    assert len(problems) == 1 and problems[0].startswith(message)


def test_every_bad_setting_is_listed_at_once():
    config = TrainConfig().update(**parse_settings(["learning_rate=-1", "minutes=-1", "dropout_rate=1.5"]))
    with pytest.raises(PipelineError) as err:
        config.validate()
    text = str(err.value)
    assert "learning_rate=-1.0" in text and "minutes=-1.0" in text and "dropout_rate=1.5" in text
    assert "\n" not in text


def run_kip(home, *args):
    return subprocess.run([sys.executable, "-m", "kip", *args], capture_output=True, text=True, cwd=home,
                          env={"KIP_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home),
                               "PYTHONPATH": str(REPO)})


def test_bad_settings_train_nothing_and_leave_no_run_folder(tiny, home):
    result = run_kip(home, "train", "--competition", tiny, "--set", "learning_rate=-1", "--set", "dropout_rate=1.5")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: bad training setting(s): ") and line.endswith("nothing was trained")
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


@pytest.mark.parametrize("extra", [
    ["--set", "minutes=-1"],
    ["--arch", "vgg"],
    ["--arch", "resnet10", "--set", "global_pool=false"],
    ["--set", "optimizer=lion"],
])
def test_each_bad_training_setting_is_one_line_from_the_command(tiny, home, extra, capsys):
    from kip import main  # in this process: the command above shows the exit code and stderr of a real one

    assert main(["train", "--competition", tiny, *extra]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: bad training setting(s): ") and line.endswith("nothing was trained")
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())


def test_a_model_option_the_builder_does_not_take_is_refused(tiny):
    from pipelines.models import option_problems

    config = TrainConfig(arch="resnet10").update(**parse_settings(["global_pool=false"]))
    assert option_problems(config.arch, config.model_options()) == [
        "global_pool=False is not an option of resnet10 (it takes blocks_per_stage, dropout_rate, fused_batchnorm, "
        "stem_stride, width_multiplier, widths, zero_init_residual)"]
    assert option_problems("cnn", TrainConfig().model_options()) == []  # defaults are left to the builder


def test_settings_are_typed_and_an_empty_value_clears_an_optional_one():
    assert parse_settings(["batchnorm=false", "weights=", "translation=0.2", "nesterov=no"]) == {
        "batchnorm": False, "weights": None, "translation": 0.2, "nesterov": False}
    with pytest.raises(PipelineError, match="batchnorm needs a bool"):
        parse_settings(["batchnorm=maybe"])


@pytest.mark.parametrize("settings, expected", [
    ([], ("none", "flip", "shift", "flip+shift")),
    (["flip=none"], ("none", "shift")),
    (["augment=none"], ("none", "shift")),
    (["flip=vertical"], ("none", "shift")),  # the mirror TTA is horizontal
    (["flip=horizontal_and_vertical"], ("none", "flip", "shift", "flip+shift")),
    (["flip=none", "tta=flip"], ("flip",)),  # asked for by name: tried even so
])
def test_auto_tta_tries_mirror_views_only_when_training_flipped_horizontally(settings, expected):
    assert TrainConfig().update(**parse_settings(settings)).tta_choices() == expected
