import json

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from competition.errors import PipelineError
from pipelines.config import TrainConfig
from tuning.space import ARCH_SPACES, build_space, check_compatible, departures, early_tries, starting_point


def test_default_space_per_arch_only_has_trainconfig_fields():
    fields = set(TrainConfig.__dataclass_fields__)
    for arch in ARCH_SPACES:
        space = build_space(arch)
        assert set(space.params) <= fields
        searched = {"optimizer", "learning_rate", "epochs", "batch_size", "dropout_rate", "weight_decay",
                    "label_smoothing", "augment_strength", "schedule", "warmup_epochs"}
        assert searched <= set(space.params) and "minutes" not in space.params  # the budget is not searched
        # every range holds make train's default: trial 0 is the untuned recipe itself
        assert departures(space, TrainConfig(), starting_point(space, TrainConfig())) == []
        # adam with weight decay is adamw in Keras 3: one of the two is searched
        assert set(space.params["optimizer"].choices) == {"adamw", "sgd", "rmsprop"}
        assert space.params["learning_rate"].log
        # names the space knows but TrainConfig lacks are listed, not silently searched
        assert all(name not in fields for name in space.unsupported)
    text = build_space("cnn").describe()
    assert "learning_rate" in text and "(log)" in text and "only when optimizer in sgd, rmsprop" in text


def test_narrow_and_fix_from_command_line():
    space = build_space("cnn", ["learning_rate=1e-3:1e-2", "optimizer=adam,sgd", "epochs=3", "batch_size=16,32",
                                "dropout_rate=0.1:0.2:linear"], fixed={"weight_decay": 0.01, "verbose": 0})
    assert space.params["learning_rate"] == FloatDistribution(1e-3, 1e-2, log=True)  # keeps the log scale
    assert space.params["optimizer"] == CategoricalDistribution(["adam", "sgd"])
    assert space.params["batch_size"] == CategoricalDistribution([16, 32])
    assert space.params["dropout_rate"] == FloatDistribution(0.1, 0.2)
    assert "epochs" not in space.params and space.fixed["epochs"] == 3
    assert space.fixed["weight_decay"] == 0.01 and "weight_decay" not in space.params
    assert "verbose" not in space.fixed  # not a searched setting: stays in the config only


def test_whitening_is_searched_where_the_architecture_takes_it():
    # a per-competition choice (helps colour images, not greyscale), so the search decides it
    for arch in ("cnn", "resnet10"):
        assert build_space(arch).params["whiten"] == CategoricalDistribution([False, True])
    assert "whiten" not in build_space("mobilenetv2").params  # a pretrained stem is not re-initialised
    # "false" is False (bool("false") would be True), both fixed and as a choice
    assert build_space("cnn", ["whiten=false"]).fixed["whiten"] is False
    assert build_space("cnn", ["whiten=off,on"]).params["whiten"] == CategoricalDistribution([False, True])
    with pytest.raises(PipelineError, match="whiten"):
        build_space("cnn", ["whiten=maybe"])


def test_early_tries_turn_each_option_on_over_the_untuned_recipe():
    space = build_space("cnn")
    start = starting_point(space, TrainConfig())
    assert early_tries(space, start) == [{**start, "whiten": True}]
    assert early_tries(build_space("cnn", fixed={"whiten": True}), start) == []  # SET="whiten=true": not searched
    assert early_tries(build_space("cnn", ["whiten=false"]), start) == []  # SPACE= fixed it off
    assert early_tries(build_space("mobilenetv2"), starting_point(build_space("mobilenetv2"), TrainConfig())) == []


def test_space_from_a_file(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text('[space]\noptimizer = ["adamw"]\nepochs = "2:4"\nlearning_rate = {low = 1e-4, high = 1e-3}\n')
    space = build_space("cnn", [str(path)])
    assert space.fixed["optimizer"] == "adamw"
    assert space.params["epochs"] == IntDistribution(2, 4, log=True)  # keeps the default range's log scale
    assert space.params["learning_rate"].high == 1e-3
    json_path = tmp_path / "space.json"
    json_path.write_text(json.dumps({"batch_size": 128}))
    assert build_space("cnn", [str(json_path)]).fixed["batch_size"] == 128


@pytest.mark.parametrize("spec", ["nope=1", "epochs=5:1", "learning_rate=0:1:log", "epochs=x", "optimizer=1:2",
                                  "missing-file.toml", "minutes=1:10"])
def test_bad_space_is_one_line_error(spec):
    with pytest.raises(PipelineError) as err:
        build_space("cnn", [spec])
    assert "\n" not in str(err.value)


def test_conditional_parameters_follow_the_optimizer():
    space = build_space("cnn", ["epochs=1", "schedule=cosine", "warmup_epochs=1"])
    adam = space.sample(optuna.trial.FixedTrial({"optimizer": "adamw", "learning_rate": 1e-3, "batch_size": 32,
                                                 "dropout_rate": 0.1, "weight_decay": 1e-4,
                                                 "label_smoothing": 0.1, "augment_strength": 1.0,
                                                 "whiten": False}))
    assert "momentum" not in adam and adam["weight_decay"] == 1e-4 and adam["epochs"] == 1
    sgd = space.sample(optuna.trial.FixedTrial({"optimizer": "sgd", "learning_rate": 1e-2, "momentum": 0.9,
                                                "batch_size": 32, "dropout_rate": 0.1, "weight_decay": 1e-3,
                                                "label_smoothing": 0.0, "augment_strength": 0.5,
                                                "whiten": True}))
    assert sgd["momentum"] == 0.9 and sgd["weight_decay"] == 1e-3  # every optimizer decays weights
    rmsprop = space.sample(optuna.trial.FixedTrial({**sgd, "optimizer": "rmsprop", "momentum": 0.85}))
    assert rmsprop["momentum"] == 0.85  # rmsprop takes momentum too
    TrainConfig().update(**sgd)  # every sampled name is a training setting


def test_resumed_study_refuses_changed_choices():
    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: build_space("cnn").sample(t)["learning_rate"], n_trials=2)
    check_compatible(study, build_space("cnn", ["learning_rate=1e-3:1e-2"]))  # a narrower range is fine
    with pytest.raises(PipelineError, match="--study"):
        check_compatible(study, build_space("cnn", ["optimizer=adamw,sgd"]))


def test_warmup_is_only_searched_for_the_schedules_that_take_it():
    space = build_space("cnn", ["epochs=1"])
    base = {"optimizer": "adamw", "learning_rate": 1e-3, "batch_size": 32, "dropout_rate": 0.1, "weight_decay": 1e-4,
            "label_smoothing": 0.1, "augment_strength": 1.0, "whiten": False}
    assert space.sample(optuna.trial.FixedTrial({**base, "schedule": "cosine", "warmup_epochs": 2.0}))[
        "warmup_epochs"] == 2.0
    assert "warmup_epochs" not in space.sample(optuna.trial.FixedTrial({**base, "schedule": "onecycle"}))


def test_starting_point_is_the_config_clipped_into_the_space():
    from pipelines.config import TrainConfig
    from tuning.space import starting_point

    space = build_space("cnn", ["epochs=5:40", "batch_size=32,64", "learning_rate=1e-4:1e-3"])
    start = starting_point(space, TrainConfig())
    assert start["epochs"] == 40 and isinstance(start["epochs"], int)  # 60 clipped to the range
    assert start["learning_rate"] == 1e-3 and start["optimizer"] == "adamw"
    assert "batch_size" not in start  # 128 is not offered: the sampler picks
    assert "momentum" not in start  # only searched with sgd
    assert starting_point(space, TrainConfig(optimizer="sgd"))["momentum"] == 0.9


def test_departures_name_what_the_space_moved_away_from_the_untuned_recipe():
    from tuning.space import departures, starting_point

    config = TrainConfig()
    space = build_space("cnn")
    assert departures(space, config, starting_point(space, config)) == []
    narrow = build_space("cnn", ["learning_rate=1e-2:1e-1", "optimizer=sgd,rmsprop", "epochs=5:40"])
    assert departures(narrow, config, starting_point(narrow, config)) == ["epochs", "learning_rate", "optimizer"]
