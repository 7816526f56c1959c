from pipelines.evaluate import EVALUATION_SHARE, affordable, tta_within_budget

ALL = ("none", "flip", "shift", "flip+shift")  # 1, 2, 10 and 18 views together


def test_affordable_takes_the_cheapest_choices_whose_views_fit():
    assert affordable(ALL, view_seconds=1.0, seconds=100) == (ALL, ())
    assert affordable(ALL, view_seconds=1.0, seconds=10) == (("none", "flip", "shift"), ("flip+shift",))
    assert affordable(ALL, view_seconds=1.0, seconds=9.5) == (("none", "flip"), ("shift", "flip+shift"))
    assert affordable(("none", "shift"), view_seconds=1.0, seconds=8) == (("none",), ("shift",))
    assert affordable(("shift",), view_seconds=5.0, seconds=1) == (("shift",), ())  # the cheapest, always


def test_the_choice_of_tta_after_a_budget_may_take_a_share_of_it_and_says_what_it_skipped():
    assert tta_within_budget(ALL, view_seconds=None, budget_seconds=60) == (ALL, "")  # no validation measured
    assert tta_within_budget(ALL, view_seconds=100.0, budget_seconds=None) == (ALL, "")  # no budget: epochs
    budget = 300.0  # 5 minutes: 30 s to choose the TTA
    assert EVALUATION_SHARE * budget == 30
    tried, why = tta_within_budget(ALL, view_seconds=17.0, budget_seconds=budget)
    assert tried == ("none",)
    assert why == "TTA flip, shift, flip+shift not tried: its views take more than the 30 s (10% of the budget) " \
                  "at 17.0 s a view"
