import numpy as np
import pytest

from pipelines.config import TrainConfig
from pipelines.data import SplitData
from pipelines.fold import overhead_seconds
from pipelines.folds import Pool
from pipelines.inference import TTA_CHOICES


def test_a_folds_overhead_is_its_predictions_under_every_view_timed_here_plus_the_fixed_part():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 16, 16, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(2), 10)
    pool = Pool([f"{i}.png" for i in range(20)], images, labels, ["train"] * 20, ["a", "b"],
                SplitData(["t0.png", "t1.png", "t2.png"], images[:3]))
    ticks = iter([10.0, 12.0])  # the timed pass: 2 s for 8 images
    seconds = overhead_seconds(TrainConfig(competition="tiny", arch="cnn"), pool, held_out=10, sample=8, fixed=5.0,
                               clock=lambda: next(ticks))
    views = len({v for choice in TTA_CHOICES.values() for v in choice})
    assert views == 18  # the image, its mirror, 8 shifts of each
    assert seconds == pytest.approx(2.0 / 8 * views * (10 + 3) + 5.0)  # a fold predicts its 10 held out and 3 test
