import json
import subprocess
import sys

import numpy as np
import pytest

from competition.errors import PipelineError
from pipelines.blend import blend, greedy_selection
from tests.conftest import use_home


def test_greedy_selection_leaves_out_a_bad_member_and_is_at_least_the_best_one():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    good = np.full((400, 4), 0.1)
    good[np.arange(400), labels] = 0.7
    good[:100] = np.roll(good[:100], 1, axis=1)  # 75% right
    other = np.full((400, 4), 0.1)
    other[np.arange(400), labels] = 0.7
    other[300:] = np.roll(other[300:], 1, axis=1)  # 75% right, wrong elsewhere: the two help each other
    bad = rng.dirichlet(np.ones(4), 400)  # chance
    counts = greedy_selection([good, bad, other], labels)
    assert counts[1] == 0 and counts[0] > 0 and counts[2] > 0
    blended = (counts[0] * good + counts[2] * other) / (counts[0] + counts[2])
    assert np.mean(blended.argmax(1) == labels) >= np.mean(good.argmax(1) == labels)


@pytest.fixture
def two_cvs(tiny_cvs, monkeypatch):
    use_home(monkeypatch, tiny_cvs[0])
    return tiny_cvs[1].cv_dir, tiny_cvs[2].cv_dir


def test_blending_two_cvs_of_the_same_folds_writes_weights_scores_and_predictions(two_cvs):
    result = blend(list(two_cvs))
    metrics = json.loads((result.blend_dir / "metrics.json").read_text())
    assert set(metrics["weights"]) == {p.name for p in two_cvs} and sum(metrics["weights"].values()) == 1
    assert metrics["oof_accuracy"] >= max(metrics["member_accuracy"].values())
    assert (result.blend_dir / "oof_predictions.npz").exists() and (result.blend_dir / "test_predictions.npz").exists()


def test_a_second_blend_in_the_same_second_gets_its_own_folder(two_cvs, monkeypatch):
    monkeypatch.setattr("competition.settings.stamp", lambda: "20260101-000000")
    first, second = blend(list(two_cvs)), blend(list(two_cvs))
    assert first.blend_dir.name == "blend-20260101-000000" and second.blend_dir.name == "blend-20260101-000000-2"
    assert (first.blend_dir / "metrics.json").exists() and (second.blend_dir / "metrics.json").exists()


def test_members_of_different_folds_or_one_member_are_refused(two_cvs, tiny_cvs):
    home = tiny_cvs[0]
    with pytest.raises(PipelineError, match="was scored on other images|blend members of one CV"):
        blend([two_cvs[0], two_cvs[0] / "fold-1"])  # a fold's run was scored on its held-out half only
    with pytest.raises(PipelineError, match=r"blend: 1 member given"):
        blend([two_cvs[0]])
    with pytest.raises(PipelineError, match="not a run folder"):
        blend([two_cvs[0], home])


def test_make_blend_takes_members_by_the_names_it_printed(two_cvs, tiny_cvs):
    home = tiny_cvs[0]
    result = subprocess.run([sys.executable, "-m", "kip", "blend", "--competition", "tiny", "--runs",
                             two_cvs[0].name, f"runs/{two_cvs[1].name}"], capture_output=True, text=True,
                            env={"KIP_HOME": str(home), "PATH": "/usr/bin:/bin", "HOME": str(home)}, cwd="/")
    assert result.returncode == 0, result.stderr
    assert f"blend: {two_cvs[0].name}  weight" in result.stdout and "rows ->" in result.stdout
