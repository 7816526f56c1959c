import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.models import MODELS, build_model


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("num_classes", [2, 5])
def test_every_registered_model_builds_and_predicts(arch, num_classes):
    model = build_model(arch, (16, 16, 3), num_classes, dropout_rate=0.1)
    out = model.predict(np.zeros((2, 16, 16, 3), np.float32), verbose=0)
    assert out.shape == (2, 1 if num_classes == 2 else num_classes)
    assert model.get_layer("predictions").activation.__name__ == ("sigmoid" if num_classes == 2 else "softmax")


def test_cnn_has_the_reference_shape():
    model = build_model("cnn", (64, 64, 3), 100)
    convs = [layer.filters for layer in model.layers if layer.name.endswith("_conv")]
    dense = [layer.units for layer in model.layers if layer.name.startswith("dense") and hasattr(layer, "units")]
    assert convs == [64, 64, 128, 256] and dense == [256, 256]
    assert any("bn" in layer.name for layer in model.layers)


def test_resnet10_has_ten_weighted_layers_on_the_main_path():
    model = build_model("resnet10", (32, 32, 3), 10)
    main = [layer for layer in model.layers
            if layer.name.endswith(("conv", "conv1", "conv2")) or layer.name == "predictions"]
    assert len(main) == 10


def test_unknown_arch_is_a_clear_error():
    with pytest.raises(PipelineError, match="unknown ARCH 'vgg'"):
        build_model("vgg", (8, 8, 3), 3)


def test_cnn_options_cover_the_plain_bn_gap_and_dropout_variants():
    plain = build_model("cnn", (32, 32, 3), 4, batchnorm=False, global_pool=False, dropout_rate=0.0)
    names = [layer.name for layer in plain.layers]
    assert "flatten" in names and not any("bn" in n or "dropout" in n for n in names)
    full = [layer.name for layer in build_model("cnn", (32, 32, 3), 4, dropout_rate=0.3).layers]
    assert "avg_pool" in full and "block1_bn" in full and "dense1_dropout" in full and "flatten" not in full


def test_fused_batch_norm_matches_keras_batch_norm():
    import keras

    from pipelines.models import FusedBatchNormalization

    x = np.random.default_rng(0).normal(2, 3, size=(16, 8, 8, 4)).astype(np.float32)
    fused, plain = FusedBatchNormalization(momentum=0.5), keras.layers.BatchNormalization(momentum=0.5)
    np.testing.assert_allclose(fused(x, training=True), plain(x, training=True), atol=1e-4)
    np.testing.assert_allclose(fused.moving_mean.numpy(), plain.moving_mean.numpy(), atol=1e-4)
    np.testing.assert_allclose(fused.moving_variance.numpy(), plain.moving_variance.numpy(), rtol=2e-2)
    np.testing.assert_allclose(fused(x, training=False), plain(x, training=False), rtol=2e-2, atol=2e-2)


def test_conv_block_pools_before_its_relu_and_computes_what_relu_then_pool_does():
    import keras
    import tensorflow as tf

    from pipelines.models import conv_block

    inputs = keras.Input((8, 8, 3))
    block = keras.Model(inputs, conv_block(inputs, 4, name="b"))
    assert [layer.name for layer in block.layers[1:]] == ["b_conv", "b_bn", "b_pool", "b_relu"]
    x = tf.constant(np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        pooled_first = block(x, training=True)
        relu_first = block.get_layer("b_pool")(tf.nn.relu(block.get_layer("b_bn")(block.get_layer("b_conv")(x),
                                                                                 training=True)))
    np.testing.assert_allclose(pooled_first, relu_first, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(pooled_first, x), tape.gradient(relu_first, x), atol=1e-6)


def test_mobilenetv2_loads_imagenet_style_weights_from_a_local_file(tmp_path):
    import keras

    base = keras.applications.MobileNetV2(input_shape=(32, 32, 3), include_top=False, weights=None, pooling="avg")
    path = tmp_path / "mobilenet_v2_no_top.weights.h5"
    base.save_weights(path)
    model = build_model("mobilenetv2", (32, 32, 3), 3, weights=str(path))
    [inner] = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    for loaded, saved in zip(inner.get_weights(), base.get_weights()):
        np.testing.assert_array_equal(loaded, saved)


def test_mobilenetv2_without_weights_trains_from_scratch_and_says_so(capsys, tmp_path):
    build_model("mobilenetv2", (40, 40, 1), 3)
    assert "training from scratch" in capsys.readouterr().out
    with pytest.raises(PipelineError, match="weights file not found"):
        build_model("mobilenetv2", (32, 32, 3), 3, weights=str(tmp_path / "nope.h5"))


def test_zero_init_residual_starts_each_block_as_the_identity():
    model = build_model("resnet10", (16, 16, 3), 3, zero_init_residual=True)
    gammas = [layer.gamma.numpy() for layer in model.layers if layer.name.endswith("_bn2")]
    assert len(gammas) == 4 and all((g == 0).all() for g in gammas)
    assert (model.get_layer("stem_bn").gamma.numpy() == 1).all()


def test_width_multiplier_scales_the_channels_and_blocks_per_stage_deepens_resnet10():
    convs = [layer.filters for layer in build_model("cnn", (32, 32, 3), 4, width_multiplier=0.5).layers
             if layer.name.endswith("_conv")]
    assert convs == [32, 32, 64, 128]
    assert [layer.filters for layer in build_model("cnn", (32, 32, 3), 4, width_multiplier=1.3).layers
            if layer.name.endswith("_conv")] == [80, 80, 168, 336]  # multiples of 8
    resnet = build_model("resnet10", (32, 32, 3), 10, width_multiplier=0.5, blocks_per_stage=2)
    assert resnet.get_layer("stage4_block2_conv2").filters == 256 and resnet.get_layer("stem_conv").filters == 32
    with pytest.raises(PipelineError, match="blocks_per_stage=2 is not an option of cnn"):
        build_model("cnn", (32, 32, 3), 4, blocks_per_stage=2)


def test_model_size_options_are_training_settings():
    from pipelines.config import TrainConfig

    assert TrainConfig(arch="resnet10", width_multiplier=0.5, blocks_per_stage=2).model_options() == {
        "dropout_rate": 0.3, "width_multiplier": 0.5, "blocks_per_stage": 2}
    problems = TrainConfig(width_multiplier=0, blocks_per_stage=0).problems()
    assert "width_multiplier=0 must be above 0 and at most 8" in problems
    assert "blocks_per_stage=0 must be 1 to 8" in problems
