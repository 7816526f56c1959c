"""Model builders, looked up by name from ``MODELS``, in the style of ``keras.applications``.

Every builder takes ``input_shape`` and ``num_classes`` plus full-word keyword options, and
returns an uncompiled ``keras.Model``. Two classes get one sigmoid unit (binary cross-entropy);
more get a softmax. The head is float32 so mixed precision stays numerically safe.
"""
from __future__ import annotations

import inspect

import keras
from keras import layers

from competition.errors import PipelineError


def classifier_head(x, num_classes: int, name: str = "predictions"):
    """One sigmoid unit for two classes, else a softmax over ``num_classes``."""
    if num_classes == 2:
        return layers.Dense(1, activation="sigmoid", dtype="float32", name=name)(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(x)


def conv_block(x, filters: int, name: str, batchnorm: bool = True, kernel_size: int = 3):
    """Conv -> (batch norm) -> ReLU -> 2x2 max pooling."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=not batchnorm, name=f"{name}_conv")(x)
    if batchnorm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def build_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] = (64, 64, 128, 256),
    dense_units: tuple[int, ...] = (256, 256),
    kernel_size: int = 3,
    batchnorm: bool = True,
    global_pool: bool = False,
    dropout_rate: float = 0.3,
) -> keras.Model:
    """The reference CNN: conv 64-64-128-256 (kernel 3, BN, ReLU, max pooling), dense 256-256 with dropout."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, width in enumerate(filters, start=1):
        x = conv_block(x, width, name=f"block{index}", batchnorm=batchnorm, kernel_size=kernel_size)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x) if global_pool else layers.Flatten(name="flatten")(x)
    for index, units in enumerate(dense_units, start=1):
        x = layers.Dense(units, activation="relu", name=f"dense{index}")(x)
        if dropout_rate:
            x = layers.Dropout(dropout_rate, name=f"dense{index}_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="cnn")


def residual_block(x, filters: int, stride: int, name: str):
    """A basic residual block: two 3x3 convs with BN; a 1x1 projection when the shape changes."""
    shortcut = x
    if stride != 1 or x.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_proj")(x)
        shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
    y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False, name=f"{name}_conv1")(x)
    y = layers.BatchNormalization(name=f"{name}_bn1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = layers.BatchNormalization(name=f"{name}_bn2")(y)
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(y)


def build_resnet10(
    input_shape: tuple[int, int, int],
    num_classes: int,
    widths: tuple[int, ...] = (64, 128, 256, 512),
    blocks_per_stage: int = 1,
    stem_stride: int = 1,
    dropout_rate: float = 0.0,
) -> keras.Model:
    """ResNet10 for small images: a 3x3 stem, four stages of basic blocks, global pooling."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Conv2D(widths[0], 3, strides=stem_stride, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for stage, width in enumerate(widths, start=1):
        for block in range(1, blocks_per_stage + 1):
            stride = 2 if stage > 1 and block == 1 else 1
            x = residual_block(x, width, stride, name=f"stage{stage}_block{block}")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    return keras.Model(inputs, classifier_head(x, num_classes), name="resnet10")


MODELS = {"cnn": build_cnn, "resnet10": build_resnet10}


def build_model(arch: str, input_shape, num_classes: int, **options) -> keras.Model:
    """Build a registered model by name, passing only the options its builder accepts."""
    if arch not in MODELS:
        raise PipelineError(f"unknown ARCH '{arch}'; choose one of {', '.join(MODELS)}")
    builder = MODELS[arch]
    accepted = inspect.signature(builder).parameters
    kwargs = {k: v for k, v in options.items() if k in accepted and v is not None}
    return builder(input_shape=tuple(input_shape), num_classes=num_classes, **kwargs)
