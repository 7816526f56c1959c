"""Model builders, looked up by name from ``MODELS``, in the style of ``keras.applications``.

Every builder takes ``input_shape`` and ``num_classes`` plus full-word keyword options, and
returns an uncompiled ``keras.Model``. Two classes get one sigmoid unit (binary cross-entropy);
more get a softmax. The head is float32 so mixed precision stays numerically safe.
"""
from __future__ import annotations

import inspect
from pathlib import Path

import keras
import tensorflow as tf
from keras import layers

from competition.errors import PipelineError


@keras.saving.register_keras_serializable(package="kip")
class FusedBatchNormalization(layers.BatchNormalization):
    """``BatchNormalization`` whose training pass runs TensorFlow's fused kernel on 4-D channels-last input.

    Keras 3 computes batch norm from separate moments, normalize and cast ops (in float32 even under mixed
    precision); the fused kernel (oneDNN on x86) does it in one pass in the compute dtype. Same layer, same
    weights, same inference path; about this network's speed only.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (training and mask is None and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
                   and self.axis in (3, -1) and self.center and self.scale)
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, tf.cast(self.gamma.value, "float32"), tf.cast(self.beta.value, "float32"),
            epsilon=self.epsilon, data_format="NHWC", is_training=True)
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs


def batch_norm(name: str, fused: bool = True, momentum: float = 0.9, zero: bool = False):
    """A batch-norm layer: the fused one for speed, or Keras's own (``fused=False``).

    Momentum 0.9 (PyTorch's default) rather than Keras's 0.99: the moving statistics used at evaluation
    settle within tens of steps, which matters for the short runs a CPU time budget allows.
    """
    layer = FusedBatchNormalization if fused else layers.BatchNormalization
    return layer(momentum=momentum, name=name, gamma_initializer="zeros" if zero else "ones")


def classifier_head(x, num_classes: int, name: str = "predictions"):
    """One sigmoid unit for two classes, else a softmax over ``num_classes``."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name=name)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def scaled_width(channels: int, width_multiplier: float) -> int:
    """``channels`` times ``width_multiplier``, in multiples of 8 (what oneDNN's kernels block by), at least 8."""
    return max(8, int(round(channels * width_multiplier / 8)) * 8) if width_multiplier != 1 else channels


def conv_block(x, filters: int, name: str, batchnorm: bool = True, kernel_size: int = 3, fused: bool = True):
    """Conv -> (batch norm) -> 2x2 max pooling -> ReLU.

    The same function as ReLU before pooling (ReLU is monotonic, so it commutes with a max, and so do their
    gradients), on a quarter of the values: the first block's ReLU ran on 64x64 maps."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batchnorm, name=f"{name}_conv")(x)
    if batchnorm:
        x = batch_norm(f"{name}_bn", fused)(x)
    x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] = (64, 64, 128, 256),
    dense_units: tuple[int, ...] = (256, 256),
    kernel_size: int = 3,
    batchnorm: bool = True,
    global_pool: bool = True,
    dropout_rate: float = 0.3,
    fused_batchnorm: bool = True,
    width_multiplier: float = 1.0,
) -> keras.Model:
    """The reference CNN: conv 64-64-128-256 (kernel 3, ReLU, max pooling), dense 256-256.

    ``batchnorm=False, global_pool=False, dropout_rate=0`` is the plain published network; the default
    adds batch norm, global average pooling instead of flattening, and dropout after each dense layer.
    ``width_multiplier`` scales the convolutions' filters (0.5: 32-32-64-128).
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = conv_block(x, scaled_width(width, width_multiplier), name=f"block{index}", batchnorm=batchnorm,
                       kernel_size=kernel_size, fused=fused_batchnorm)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x) if global_pool else layers.Flatten(name="flatten")(x)
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate, name=f"dense{index}_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn")


def residual_block(x, filters: int, stride: int, name: str, fused: bool = True, zero_init: bool = False):
    """A basic residual block: two 3x3 convs with BN; a 1x1 projection when the shape changes. ``zero_init`` starts
    the last BN's scale at 0, so each block begins as the identity (Goyal et al., 2017)."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = batch_norm(f"{name}_proj_bn", fused)(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = batch_norm(f"{name}_bn1", fused)(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = batch_norm(f"{name}_bn2", fused, zero=zero_init)(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_resnet10(
    input_shape: tuple[int, int, int],
    num_classes: int,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    blocks_per_stage: int = 1,
    stem_stride: int | None = None,
    dropout_rate: float = 0.0,
    fused_batchnorm: bool = True,
    zero_init_residual: bool = False,
    width_multiplier: float = 1.0,
) -> keras.Model:
    """ResNet10 for small images: a 3x3 stem, four stages of basic blocks, global pooling.

    ``stem_stride=None`` picks 2 for images of 64 pixels and more (the four stages then run at 32..4 pixels,
    about 4x less work than a full-resolution stem), else 1. ``width_multiplier`` scales every stage's width (0.5:
    32-64-128-256, about a quarter of the work); ``blocks_per_stage=2`` is a ResNet18.
    """
    widths = tuple(scaled_width(width, width_multiplier) for width in widths)
    inputs = keras.Input(shape=input_shape, name="image")
    if stem_stride is None:
        stem_stride = default_stem_stride(input_shape)
    x = layers.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = batch_norm("stem_bn", fused_batchnorm)(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, width in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = residual_block(x, width, stride, name=f"stage{stage}_block{block}", fused=fused_batchnorm,
                               zero_init=zero_init_residual)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="resnet10")


def build_mobilenetv2(
    input_shape: tuple[int, int, int],
    num_classes: int,
    weights: str | None = None,
    width_multiplier: float = 1.0,
    dropout_rate: float = 0.2,
) -> keras.Model:
    """``keras.applications.MobileNetV2`` with a new head; ImageNet weights from a local file.

    ``weights`` is a path to Keras's no-top weights file (e.g. ``mobilenet_v2_weights_tf_dim_ordering_tf_kernels_
    1.0_224_no_top.h5``), since nothing can be downloaded here; without one the network trains from scratch and
    says so. Grey images are repeated to three channels; images under 32 pixels are upscaled to 32.
    """
    if weights and not Path(weights).is_file():
        raise PipelineError(f"{weights}: weights file not found; give WEIGHTS=<path to the no-top .h5> or leave it out")
    if not weights:
        print("mobilenetv2: no WEIGHTS file given; training from scratch (random initial weights)")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if input_shape[-1] == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    size = (max(32, input_shape[0]), max(32, input_shape[1]))
    if size != tuple(input_shape[:2]):
        x = layers.Resizing(*size, name="upscale")(x)
    base = keras.applications.MobileNetV2(input_shape=(*size, 3), alpha=width_multiplier, include_top=False,
                                          weights=str(weights) if weights else None, pooling="avg")
    x = base(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="mobilenetv2")


MODELS = {"cnn": build_cnn, "resnet10": build_resnet10, "mobilenetv2": build_mobilenetv2}
# the smallest image side each network takes: the cnn halves it four times (valid pooling), resnet10 pads
SMALLEST_SIDE = {"cnn": 16, "resnet10": 8, "mobilenetv2": 32}


def default_stem_stride(input_shape) -> int:
    """resnet10's stem stride for images of this shape: 2 from 64 pixels (the stages then run at 32..4), else 1."""
    return 2 if min(input_shape[:2]) >= 64 else 1


def any_size_input(arch: str, input_shape, options: dict) -> tuple[tuple, dict]:
    """The input shape and options of a model that takes images of any size (progressive resizing): height and
    width left open, and what the builder would have chosen from the full size fixed (resnet10's stem stride)."""
    if arch == "resnet10" and options.get("stem_stride") is None:
        options = {**options, "stem_stride": default_stem_stride(input_shape)}
    return (None, None, input_shape[-1]), options


def option_problems(arch: str, options: dict) -> list[str]:
    """The options that ``arch``'s builder does not take, each as one line (set options only, not defaults)."""
    if arch not in MODELS:
        return []
    accepted = set(inspect.signature(MODELS[arch]).parameters) - {"input_shape", "num_classes"}
    return [f"{name}={value!r} is not an option of {arch} (it takes {', '.join(sorted(accepted))})"
            for name, value in options.items() if name not in accepted and value is not None]


def build_model(arch: str, input_shape, num_classes: int, **options) -> keras.Model:
    """Build a registered model by name; an option its builder does not take is an error, not ignored."""
    if arch not in MODELS:
        raise PipelineError(f"unknown ARCH '{arch}'; choose one of {', '.join(MODELS)}")
    problems = option_problems(arch, options)
    if problems:
        raise PipelineError("; ".join(problems))
    kwargs = {k: v for k, v in options.items() if v is not None}
    return MODELS[arch](input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)


def load_model(path) -> keras.Model:
    """A saved ``model.keras``, for prediction. Loading through this module registers its custom layers (the fused
    batch norm), which a process that never built a model would not know."""
    return keras.models.load_model(path, compile=False)
