import json

import pytest

from competition.errors import PipelineError
from submissions.compete import MIN_FOLD_MINUTES, OVERHEAD, RESERVE, compete, make_plan, unfinished_compete


@pytest.mark.parametrize("minutes, slots, archs, folds", [
    (240, 1, ["cnn", "resnet10"], 3),  # a CV per architecture, blended out of fold
    (120, 1, ["cnn", "resnet10"], 1),
    (60, 1, ["cnn", "resnet10"], 1),  # one run each on the validation split, blended there
    (20, 1, ["cnn"], 1),
    (60, 2, ["cnn"], 3),  # folds side by side on a cluster cost what one run does: a CV
    (10, 2, ["cnn"], 2)])
def test_the_plan_fits_the_budget_and_says_why(minutes, slots, archs, folds):
    plan = make_plan(minutes, slots)
    assert plan.archs == archs and plan.folds == folds and plan.why
    left = minutes
    for index, arch in enumerate(plan.archs):  # each CV or run spends its training plus the overhead it assumes
        per_fold = plan.fold_minutes(arch, left, plan.archs[index:], slots)
        assert per_fold >= MIN_FOLD_MINUTES[arch]
        left -= per_fold * -(-plan.folds // slots) / (1 - OVERHEAD)
    assert left == pytest.approx(0, abs=1e-6)  # the whole budget is planned, and no more
    assert any(("no CV" in line) == (folds == 1) for line in plan.why)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_a_measured_overhead_comes_out_of_each_folds_training_time(slots):
    plan, overhead = make_plan(60, slots=2), 1.5  # a 3-fold CV; minutes a fold spends predicting, measured
    per_fold = plan.fold_minutes("cnn", 60, ["cnn"], slots, overhead_minutes=overhead)
    rounds = -(-plan.folds // slots)  # folds side by side share a round
    assert rounds * (per_fold + overhead) == pytest.approx(60 * (1 - RESERVE))
    assert plan.fold_minutes("cnn", 60, ["cnn"], slots, overhead_minutes=0.0) == pytest.approx(per_fold + overhead)


def test_a_budget_too_small_for_one_fold_says_what_it_needs():
    with pytest.raises(PipelineError, match=r"^MINUTES=1 is too small for one cnn run of 4 minutes; give MINUTES=5 or"):
        make_plan(1)
    assert make_plan(5).archs == ["cnn"]


def test_compete_runs_its_plan_resumably_and_writes_a_submission(tiny, home):
    lines = []
    result = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append)
    assert result.submission.path.exists() and 0 <= result.estimate <= 1 and result.estimate_of == "validation"
    [folder] = (home / "runs").glob("compete-*")
    state = json.loads((folder / "plan.json").read_text())
    assert state["done"] and list(state["members"]) == ["cnn"] and state["submission"] == str(result.submission.path)
    assert state["members"]["cnn"]["score"] == result.estimate and "cnn" in state["planned"]
    assert any("refit skipped" in line for line in lines) and "compete: plan for 10 minutes: cnn x 1 run" in lines
    assert unfinished_compete("tiny", 10) is None  # a finished compete is not reopened: the same command starts anew
    (folder / "plan.json").write_text(json.dumps({**state, "done": False}))  # as if killed before its end
    assert unfinished_compete("tiny", 10) == folder and unfinished_compete("tiny", 20) is None  # same budget only
    trained = sorted(p.name for p in (home / "runs").glob("cnn-*"))
    lines.clear()
    again = compete("tiny", 10, ["epochs=1", "batch_size=8", "verbose=0"], say=lines.append)
    assert f"compete: continuing {folder}" in lines and any("run already finished" in line for line in lines)
    assert sorted(p.name for p in (home / "runs").glob("cnn-*")) == trained  # nothing trained again
    assert again.estimate == result.estimate and json.loads((folder / "plan.json").read_text())["done"]
