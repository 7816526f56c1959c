import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.data import SplitData
from pipelines.folds import Pool, assign_folds, read_folds, write_folds


def pool(counts=(6, 6, 4), seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    ids = [f"img{i}.png" for i in range(len(labels))]
    images = np.random.default_rng(seed).integers(0, 255, (len(labels), 4, 4, 3), dtype=np.uint8)
    return Pool(ids, images, labels, ["train"] * len(labels), ["cat", "dog", "emu"], SplitData(["t.png"], images[:1]))


def test_folds_are_stratified_seeded_and_cover_every_image_once():
    p = pool()
    folds = assign_folds(p, 2, seed=7)
    assert sorted(set(folds.tolist())) == [0, 1]
    for label in range(3):  # each class split evenly over the folds
        assert np.bincount(folds[p.labels == label]).tolist() == [np.sum(p.labels == label) // 2] * 2
    np.testing.assert_array_equal(folds, assign_folds(p, 2, seed=7))
    assert not np.array_equal(folds, assign_folds(p, 2, seed=8))


@pytest.mark.parametrize("folds, message", [
    (1, "FOLDS=1: a cross-validation needs at least 2 folds"),
    (0, "FOLDS=0: a cross-validation needs at least 2 folds"),
    (5, "FOLDS=5: class 'emu' has only 4 labelled image(s); use FOLDS=4 or fewer"),
])
def test_bad_fold_counts_are_one_line(folds, message):
    with pytest.raises(PipelineError) as err:
        assign_folds(pool(), folds, seed=0)
    assert str(err.value) == message


def test_a_saved_assignment_is_reused_and_must_cover_the_same_images(tmp_path):
    p = pool()
    folds = assign_folds(p, 3, seed=1)
    write_folds(tmp_path / "folds.csv", p, folds)
    np.testing.assert_array_equal(read_folds(tmp_path / "folds.csv", p), folds)
    with pytest.raises(PipelineError, match="cover other images"):
        read_folds(tmp_path / "folds.csv", pool(counts=(6, 6, 5)))
