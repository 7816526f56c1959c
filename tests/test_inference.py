import numpy as np
import pytest

from pipelines.evaluate import evaluate
from pipelines.inference import TTA_CHOICES, view


def ramp(n=2, size=8):
    """Images whose pixel values say where they are: row * 16 + column, in every channel."""
    grid = (np.arange(size)[:, None] * 16 + np.arange(size)[None, :]).astype(np.uint8)
    return np.repeat(np.repeat(grid[None, :, :, None], 3, axis=-1), n, axis=0)


def test_views_mirror_and_shift_as_documented():
    images = ramp()
    assert view(images, "identity") is images
    np.testing.assert_array_equal(view(images, "mirror")[0, :, :, 0], images[0, :, ::-1, 0])
    right = view(images, "right")[0, :, :, 0]  # content moves right by one pixel (3% of 8, at least 1)
    np.testing.assert_array_equal(right[:, 1:], images[0, :, :-1, 0])
    down = view(images, "down")[0, :, :, 0]
    np.testing.assert_array_equal(down[1:], images[0, :-1, :, 0])
    np.testing.assert_array_equal(view(images, "mirror-left"), view(view(images, "mirror"), "left"))
    assert view(images, "up").shape == images.shape and view(images, "up").dtype == np.uint8
    down_right = view(images, "down-right")[0, :, :, 0]  # one pixel down and one right: the diagonal neighbour
    np.testing.assert_array_equal(down_right[1:, 1:], images[0, :-1, :-1, 0])
    np.testing.assert_array_equal(view(images, "up-left"), view(view(images, "up"), "left"))


def test_the_documented_order_of_views():
    assert TTA_CHOICES["none"] == ("identity",)
    assert TTA_CHOICES["flip"] == ("identity", "mirror")
    shifts = ("right", "left", "down", "up", "down-right", "down-left", "up-right", "up-left")
    assert TTA_CHOICES["shift"] == ("identity", *shifts)
    assert TTA_CHOICES["flip+shift"] == ("identity", "mirror", *shifts, *(f"mirror-{s}" for s in shifts))


class SeesColumn0:
    """A stand-in model: a weak class 0 for a dark top-left pixel, a strong class 1 for a bright one (only the
    mirror of these images has one)."""

    def predict(self, dataset, verbose=0):
        out = []
        for batch in dataset:
            bright = np.asarray(batch)[:, 0, 0, 0] > 0
            out.append(np.where(bright[:, None], [0.05, 0.95], [0.55, 0.45]).astype(np.float32))
        return np.concatenate(out)


@pytest.mark.parametrize("labels, expected", [([0, 0], "none"), ([1, 1], "flip")])
def test_a_tta_choice_is_taken_only_when_it_validates_better(labels, expected):
    from pipelines.normalize import Standardizer

    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[:, :, -1] = 255  # bright last column: only the mirror makes the first column bright
    identity = Standardizer(mean=np.zeros((1, 1, 3), np.float32), scale=np.ones((1, 1, 3), np.float32))
    found = evaluate(SeesColumn0(), images, np.array(labels), identity, [0, 1])
    assert found.tta == expected and set(found.accuracy_by_tta) == set(TTA_CHOICES)
    assert found.scores["accuracy"] == 1.0 and found.accuracy_by_tta["none"] == (expected == "none")


def test_views_go_to_the_model_together_and_come_back_each_under_its_name():
    from pipelines.inference import view_probabilities
    from pipelines.normalize import Standardizer

    class Counting(SeesColumn0):
        calls = 0

        def predict(self, dataset, verbose=0):
            Counting.calls += 1
            return super().predict(dataset, verbose)

    images = np.zeros((2, 8, 8, 3), np.uint8)
    images[:, :, -1] = 255
    identity = Standardizer(mean=np.zeros((1, 1, 3), np.float32), scale=np.ones((1, 1, 3), np.float32))
    views = TTA_CHOICES["flip+shift"]
    together = view_probabilities(Counting(), images, identity, views)
    assert Counting.calls == 1 and list(together) == list(views)
    Counting.calls = 0
    apart = view_probabilities(Counting(), images, identity, views, images_per_call=3)  # one view (2 images) a call
    assert Counting.calls == len(views)
    for name in views:
        np.testing.assert_array_equal(together[name], apart[name])
    assert together["mirror"][0, 1] == pytest.approx(0.95) and together["identity"][0, 1] == pytest.approx(0.45)
