"""The time budget with steps of changing cost (progressive resizing): a fixed part plus the rest by the pixels."""
import numpy as np
import pytest

from pipelines.budget import Budget, TimeBudget
from pipelines.resize import SizeSchedule
from tests.conftest import FakeClock


class Model:
    stop_training = False


def run_budget(budget: Budget, step_seconds) -> tuple[TimeBudget, float, int]:
    """Drive a TimeBudget through a whole fit as Keras would; ``step_seconds(fraction)`` is what each step takes.
    Returns the callback, the seconds spent and the steps trained."""
    clock = FakeClock()
    callback = TimeBudget(budget, schedule=None, plan_path=None, verbose=0, clock=clock)
    callback.set_model(Model())
    callback.on_train_begin()
    steps, started = 0, clock.now
    for epoch in range(budget.max_epochs):
        callback.on_epoch_begin(epoch)
        for batch in range(budget.steps_per_epoch):
            clock.now += step_seconds(steps / callback.planned_steps)
            steps += 1
            callback.on_train_batch_end(batch)
            if callback.model.stop_training:
                break
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            break
    return callback, clock.now - started, steps


@pytest.mark.parametrize("fixed", [0.0, 0.25, 0.5])
def test_a_small_step_is_costed_as_a_fixed_part_plus_its_pixels_and_the_budget_is_spent(fixed):
    sizes = SizeSchedule(full=(64, 64), share=0.5, start=0.5, smallest=16)

    def step_seconds(fraction):  # 1 s at full size; a fixed part plus the rest by the pixels
        return fixed + (1 - fixed) * float(sizes.relative_cost(np.array([fraction]))[0])

    callback, spent, steps = run_budget(Budget(seconds=2000, steps_per_epoch=20, max_epochs=1000,
                                               cost=sizes.relative_cost, overhead=fixed), step_seconds)
    assert 0.95 * 2000 <= spent <= 2000  # the budget is spent, and no more
    # what the plan expected the steps to cost is what they cost
    expected = sum(float(callback.step_cost(np.array([s / steps]))[0]) for s in range(steps))
    assert expected == pytest.approx(spent, rel=0.02)
    assert float(callback.step_cost(np.array([0.0]))[0]) == pytest.approx(fixed + (1 - fixed) * 0.25)


def test_a_first_epoch_longer_than_the_budget_stops_part_way():
    # 1 s a step, 100 steps an epoch, a 60 s budget: the plan made at step 14 leaves room for the validation (an
    # estimated tenth of an epoch) within the 58.8 s planned
    callback, spent, steps = run_budget(Budget(seconds=60, steps_per_epoch=100, max_epochs=10), lambda f: 1.0)
    assert steps == callback.planned_steps == 48 and "the first epoch does not fit" in callback.why
    assert spent + 0.1 * 100 <= 0.98 * 60
