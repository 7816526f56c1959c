"""make bench-recipe: the default and each variant trained alike and scored on a private hold-out."""
import json
from pathlib import Path

import pytest

from competition.errors import PipelineError
from pipelines import bench_recipe

TINY = ["--set", "epochs=1", "--set", "batch_size=8", "--set", "verbose=0", "--minutes", "0"]


def test_each_recipe_is_trained_per_seed_and_scored_on_the_private_hold_out(tiny, home, capsys):
    assert bench_recipe.main(["--competition", tiny, *TINY, "--seeds", "2",
                              "--variant", "label_smoothing=0  dropout_rate=0.1"]) == 0
    result = json.loads((home / "reports" / "bench-recipe" / "tiny-cnn.json").read_text())
    assert list(result["runs"]) == ["default", "label_smoothing=0 dropout_rate=0.1"]
    for runs in result["runs"].values():
        assert [r["seed"] for r in runs] == [42, 43] and all(0 <= r["private"] <= 1 for r in runs)
    assert result["private_images"] == 12 and result["summary"]["default"]["points_vs_default"] == 0
    run = Path(result["runs"]["label_smoothing=0 dropout_rate=0.1"][1]["run"])
    variant = json.loads((run / "config.json").read_text())
    assert (variant["label_smoothing"], variant["dropout_rate"], variant["seed"]) == (0, 0.1, 43)
    assert not (home / "runs" / "latest-tiny.txt").exists()  # not what make predict uses
    assert "| label_smoothing=0 dropout_rate=0.1 |" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--variant", "no_such=1"], "bad setting 'no_such=1'"),
    (["--variant", "learning_rate=-1"], "learning_rate=-1.0 must be above 0"),
    (["--variant", " "], "VARIANTS: an empty variant"),
    (["--seeds", "0"], "SEEDS=0: give 1 or more")])
def test_a_bad_variant_or_seed_count_is_refused_before_anything_trains(tiny, home, extra, message):
    with pytest.raises(PipelineError, match=message):
        bench_recipe.main(["--competition", tiny, *TINY, *extra])
    assert not (home / "runs").exists() or not list((home / "runs").glob("bench-recipe-*"))


def test_make_bench_recipe_splits_its_variants_on_semicolons():
    from tests.test_makefile import make_dry_run

    out = make_dry_run("bench-recipe", "COMPETITION=no-such-competition-xyz", "MINUTES=20", "SEEDS=2",
                       "VARIANTS=progressive=0.5;schedule=linear batch_size=64")
    [line] = [line for line in out.replace("\\\n", " ").splitlines() if "pipelines.bench_recipe" in line]
    assert "--minutes 20" in line and "--seeds 2" in line
    assert "--variant 'progressive=0.5' --variant 'schedule=linear batch_size=64'" in line
