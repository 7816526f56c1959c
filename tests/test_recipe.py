import keras
import numpy as np
import tensorflow as tf

from pipelines.config import TrainConfig
from pipelines.recipe import build_for_training, build_training_state


def test_built_before_fit_the_training_step_is_traced_once():
    model, _ = build_for_training(TrainConfig(width_multiplier=0.125), (16, 16, 3), 3, steps_per_epoch=2)
    images = np.random.default_rng(0).random((16, 16, 16, 3), np.float32)
    batches = tf.data.Dataset.from_tensor_slices((images, keras.utils.to_categorical(np.arange(16) % 3, 3)))
    batches = batches.batch(8, drop_remainder=True)
    build_training_state(model, batches.element_spec)
    assert model.optimizer.built and model.optimizer.iterations.numpy() == 0  # built, not stepped
    traced, step = [], model.train_step
    model.train_step = lambda data: traced.append(1) or step(data)
    model.fit(batches, epochs=2, verbose=0, shuffle=False)
    assert len(traced) == 1  # without the build: 2 (the variables were created inside the first trace)
