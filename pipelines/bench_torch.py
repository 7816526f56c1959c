"""The peer that ``make bench-train`` measures against: our two architectures in PyTorch, trained the way a timm or
fastai user on a CPU would (bf16 autocast, channels-last, AdamW), on the same uint8 images.

Benchmark only: PyTorch is not a dependency of the pipeline (``pip install -e '.[bench]'`` adds it).
"""
from __future__ import annotations

import os
import time

import numpy as np

from pipelines.config import TrainConfig


def available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def build(arch: str, num_classes: int, size: int):
    """The PyTorch twin of ``pipelines.models``' ``cnn`` (BN + GAP + dropout defaults) or ``resnet10``."""
    from torch import nn

    if arch == "cnn":
        layers, channels = [], 3
        for width in (64, 64, 128, 256):
            layers += [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True),
                       nn.MaxPool2d(2)]
            channels = width
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        for units in (256, 256):
            layers += [nn.Linear(channels, units), nn.ReLU(True), nn.Dropout(0.3)]
            channels = units
        return nn.Sequential(*layers, nn.Linear(channels, num_classes))

    class Block(nn.Module):
        def __init__(self, inputs: int, width: int, stride: int):
            super().__init__()
            self.conv1 = nn.Conv2d(inputs, width, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.project = None
            if stride != 1 or inputs != width:
                self.project = nn.Sequential(nn.Conv2d(inputs, width, 1, stride, bias=False), nn.BatchNorm2d(width))

        def forward(self, x):
            y = self.bn2(self.conv2(nn.functional.relu(self.bn1(self.conv1(x)))))
            return nn.functional.relu(y + (x if self.project is None else self.project(x)))

    stem_stride = 2 if size >= 64 else 1
    layers = [nn.Conv2d(3, 64, 3, stem_stride, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
    channels = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        layers.append(Block(channels, width, 1 if stage == 0 else 2))
        channels = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))


def images_per_second(arch: str, x: np.ndarray, y: np.ndarray, num_classes: int, epochs: int = 2,
                      batch_size: int = 128) -> float:
    """Training images/s over ``epochs`` timed epochs after a warm-up one: bf16 autocast, channels-last, AdamW
    with make train's default rate, weight decay and label smoothing, standardized on the fly from uint8, as our step
    does."""
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    model = build(arch, num_classes, x.shape[1]).to(memory_format=torch.channels_last)
    recipe = TrainConfig()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # uint8 NCHW
    labels = torch.from_numpy(y.astype(np.int64))
    mean, std = images.float().mean((0, 2, 3), keepdim=True), images.float().std((0, 2, 3), keepdim=True)
    steps = len(x) // batch_size
    model.train()
    seconds = []
    for _ in range(epochs + 1):
        order = torch.randperm(len(x))
        started = time.perf_counter()
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            batch = ((images[index].float() - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = loss_fn(model(batch), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - started)
    return steps * batch_size * epochs / sum(seconds[1:])
