"""The plan of make compete: pure arithmetic on the budget."""
import pytest

from competition.errors import PipelineError
from submissions.compete_plan import MIN_FOLD_MINUTES, OVERHEAD, REFIT_RATIO, RESERVE, make_plan


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


@pytest.mark.parametrize("minutes, slots", [(120, 1), (20, 1), (240, 1), (60, 2)])
def test_a_refit_plan_leaves_room_for_each_refit_in_the_same_budget(minutes, slots):
    plain, plan = make_plan(minutes, slots), make_plan(minutes, slots, refit=True)
    assert plan.refit and (plan.archs, plan.folds) == (plain.archs, plain.folds)
    assert not any(line.startswith("refit skipped") for line in plan.why)
    assert any(line.startswith("refit (REFIT=1): each ") for line in plan.why)
    left = minutes
    for index, arch in enumerate(plan.archs):  # the folds' rounds and the refit (1.25 folds' training) fit
        per_fold = plan.fold_minutes(arch, left, plan.archs[index:], slots)
        assert per_fold < plain.fold_minutes(arch, left, plan.archs[index:], slots)  # cut to leave room
        left -= per_fold * (-(-plan.folds // slots) + REFIT_RATIO) / (1 - OVERHEAD)
    assert left == pytest.approx(0, abs=1e-6)
    rounds = -(-plan.folds // slots)  # with measured costs: the overhead of each round and of the refit too
    per_fold = plan.fold_minutes("cnn", minutes, ["cnn"], slots, overhead_minutes=1.0, refit_ratio=1.2)
    assert (rounds + 1.2) * per_fold + (rounds + 1) * 1.0 == pytest.approx(minutes * (1 - RESERVE))


def test_a_refit_needs_a_larger_smallest_budget():
    assert make_plan(5).archs == ["cnn"]
    with pytest.raises(PipelineError, match=r"^MINUTES=5 is too small for one cnn run of 4 minutes and its refit; "
                                            r"give MINUTES=11 or more"):
        make_plan(5, refit=True)
