"""Progressive resizing: the size schedule, the resize step of the input pipeline, and a run that uses them."""
import json

import numpy as np
import pytest
import tensorflow as tf

from pipelines.config import TrainConfig
from pipelines.resize import SizeSchedule, resize_batch, size_schedule
from pipelines.train import train
from tests.conftest import FakeClock


def test_the_size_grows_in_steps_of_8_pixels_to_full_size_at_its_share_of_the_plan():
    sizes = SizeSchedule(full=(64, 64), share=0.5, start=0.5, smallest=16)
    assert [sizes.size_at(f) for f in (0.0, 0.125, 0.25, 0.375, 0.5, 0.9)] == [
        (32, 32), (40, 40), (48, 48), (56, 56), (64, 64), (64, 64)]
    np.testing.assert_allclose(sizes.relative_cost([0.0, 0.25, 0.75]), [0.25, 0.5625, 1.0])
    assert SizeSchedule(full=(28, 28), share=1.0, start=0.25, smallest=16).size_at(0.0) == (16, 16)  # no smaller


def test_a_config_asks_for_a_schedule_only_when_it_changes_the_size():
    assert size_schedule(TrainConfig(), (64, 64, 3)) is None  # off by default
    assert size_schedule(TrainConfig(progressive=0.5), (64, 64, 3)).size_at(0.0) == (32, 32)
    assert size_schedule(TrainConfig(progressive=0.5), (16, 16, 3)) is None  # the cnn takes nothing under 16
    assert size_schedule(TrainConfig(arch="resnet10", progressive=0.5), (16, 16, 3)).size_at(0.0) == (8, 8)


@pytest.mark.parametrize("settings, problem", [
    (dict(progressive=1.5), "progressive=1.5 must be in [0, 1]"),
    (dict(progressive=0.5, progressive_scale=0.1), "progressive_scale=0.1 must be in [0.25, 1]"),
    (dict(progressive=0.5, global_pool=False), "needs a model that takes any image size (cnn with global pooling, "
                                               "resnet10), not cnn without global_pool"),
    (dict(progressive=0.5, arch="mobilenetv2"), "not mobilenetv2")])
def test_bad_progressive_settings_are_named(settings, problem):
    assert any(problem in line for line in TrainConfig(**settings).problems())


def test_the_resize_step_follows_its_variable_and_leaves_full_size_batches_alone():
    size = tf.Variable([8, 8], dtype=tf.int32)
    resize = resize_batch(size, (16, 16))
    images = tf.random.uniform((4, 16, 16, 3))
    small, labels = resize(images, tf.zeros(4))
    assert small.shape == (4, 8, 8, 3) and labels.shape == (4,)
    size.assign([16, 16])
    same, _ = resize(images, tf.zeros(4))
    np.testing.assert_array_equal(same.numpy(), images.numpy())


def test_a_budgeted_run_grows_its_images_and_plans_the_cheaper_steps_it_can_afford(tiny, monkeypatch):
    import keras

    import pipelines.train

    made = []
    monkeypatch.setattr(pipelines.train, "size_variable", lambda s: made.append(tf.Variable(s.size_at(0.0))) or made[0])

    class Tick(keras.callbacks.Callback):  # a step costs 2 s at full size, its share of the pixels when smaller
        def on_train_batch_end(self, batch, logs=None):
            height, width = made[0].numpy() if made else (16, 16)
            clock.advance(2 * height * width / 256)

    settings = dict(competition=tiny, arch="resnet10", width_multiplier=0.25, epochs=500, batch_size=9, minutes=0.5,
                    patience=1000, tta="none", verbose=0)
    clock = FakeClock()
    plain = train(TrainConfig(**settings), callbacks=[Tick()], clock=clock)
    assert not made and "image_sizes" not in plain.metrics
    clock = FakeClock()
    result = train(TrainConfig(**settings, progressive=0.5, progressive_scale=0.5), callbacks=[Tick()], clock=clock)
    plan = json.loads((result.run_dir / "plan.json").read_text())
    plain_plan = json.loads((plain.run_dir / "plan.json").read_text())
    assert result.metrics["image_sizes"] == [[8, 8], [16, 16]]
    assert 0.9 * 30 <= plan["spent_seconds"] <= 30  # the budget is spent, and no more
    # 8 pixels (a quarter of the cost) for the first quarter of the plan, then 16: about 1.23x the steps
    assert plan["steps"] >= plain_plan["steps"] * 1.15
    model = keras.models.load_model(result.run_dir / "model.keras", compile=False)
    assert model.input_shape == (None, None, None, 3)
    assert model.predict(np.zeros((2, 16, 16, 3)), verbose=0).shape == (2, 3)
