import json

import pytest

from competition.errors import PipelineError
from submissions.compete import MIN_FOLD_MINUTES, OVERHEAD, RESERVE, compete, make_plan, unfinished_compete


@pytest.mark.parametrize("minutes, archs, folds", [(120, ["cnn", "resnet10"], 3), (60, ["cnn"], 3), (10, ["cnn"], 2)])
def test_the_plan_fits_the_budget_and_says_why(minutes, archs, folds):
    plan = make_plan(minutes)
    assert plan.archs == archs and plan.folds == folds and plan.why
    left = minutes
    for index, arch in enumerate(plan.archs):  # each CV spends its folds' training plus the overhead it assumes
        per_fold = plan.fold_minutes(arch, left, plan.archs[index:])
        assert per_fold >= MIN_FOLD_MINUTES[arch]
        left -= per_fold * plan.folds / (1 - OVERHEAD)
    assert left == pytest.approx(0, abs=1e-6)  # the whole budget is planned, and no more


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_a_measured_overhead_comes_out_of_each_folds_training_time(slots):
    plan, overhead = make_plan(60), 1.5  # minutes a fold spends predicting, measured
    per_fold = plan.fold_minutes("cnn", 60, ["cnn"], slots, overhead_minutes=overhead)
    rounds = -(-plan.folds // slots)  # folds side by side share a round
    assert rounds * (per_fold + overhead) == pytest.approx(60 * (1 - RESERVE))
    assert plan.fold_minutes("cnn", 60, ["cnn"], slots, overhead_minutes=0.0) == pytest.approx(per_fold + overhead)


def test_a_budget_too_small_for_one_fold_says_what_it_needs():
    with pytest.raises(PipelineError, match=r"^MINUTES=1 is too small for one CV of 2 folds of cnn .* give MINUTES=9"):
        make_plan(1)


def test_compete_runs_its_plan_resumably_and_writes_a_submission(tiny, home):
    lines = []
    made, estimate, spent = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append)
    assert made.path.exists() and 0 <= estimate <= 1
    [folder] = (home / "runs").glob("compete-*")
    state = json.loads((folder / "plan.json").read_text())
    assert state["done"] and list(state["cvs"]) == ["cnn"] and state["submission"] == str(made.path)
    assert any("refit skipped" in line for line in lines)
    assert unfinished_compete("tiny", 10) is None  # a finished compete is not reopened: the same command starts anew
    (folder / "plan.json").write_text(json.dumps({**state, "done": False}))  # as if killed before its end
    assert unfinished_compete("tiny", 10) == folder and unfinished_compete("tiny", 20) is None  # same budget only
