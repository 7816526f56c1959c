"""``make bench-scale``'s arithmetic and its reduced-run knobs (the benchmark itself is run by hand)."""
import numpy as np

from pipelines.bench_scale import generated_pool, projection, subset
from tests.test_makefile import make_dry_run


def test_the_projection_uses_the_measured_cost_of_a_fold_and_of_sending_the_arrays():
    measured = {"setting": "1x2", "folds": 4, "wall_seconds": 410.0, "send_seconds": 10.0}  # 100 s a fold
    rows = {row["machines"]: row for row in projection(measured, 4)}
    assert rows[1]["folds_per_hour_4"] == round(4 / (10 + 4 * 100) * 3600, 1)
    assert rows[2]["folds_per_hour_4"] == round(4 / (2 * 10 + 2 * 100) * 3600, 1)
    assert rows[8]["folds_per_hour_4"] == round(4 / (8 * 10 + 1 * 100) * 3600, 1)  # idle machines still get the data
    assert rows[8]["folds_per_hour_16"] == round(16 / (8 * 10 + 2 * 100) * 3600, 1)


def test_a_reduced_run_takes_a_subset_of_generated_images():
    pool = generated_pool(classes=3, per_class=4, test=5, size=16, seed=0)
    assert pool.images.shape == (12, 16, 16, 3) and pool.images.dtype == np.uint8 and len(pool.test.ids) == 5
    small = subset(pool, 6, seed=0)
    assert len(small) == 6 and set(small.ids) <= set(pool.ids) and small.test is pool.test
    assert [pool.labels[pool.ids.index(i)] for i in small.ids] == small.labels.tolist()


def test_make_passes_the_reduced_run_knobs():
    out = make_dry_run("bench-scale", "EPOCHS=1", "BENCH_SCALE_ARGS=--generated --settings 1x1")
    assert "-m pipelines.bench_scale --epochs 1 --generated --settings 1x1" in out
