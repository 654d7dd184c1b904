"""LogBudget: the first lines of a kind, then one summary per interval of how many more there were."""

from __future__ import annotations

from gateway.log_budget import LogBudget


def test_after_the_first_lines_one_summary_per_interval_counts_the_rest() -> None:
    now = [0.0]
    budget = LogBudget(first=2, interval=10.0, clock=lambda: now[0])
    assert [budget.allow("ignored") for _ in range(5)] == [True, True, False, False, False]
    assert budget.allow("rejected")  # each kind has its own first lines
    assert budget.due() == []  # not before the interval
    now[0] = 10.0
    assert budget.due() == [("ignored", 3)]
    assert not budget.allow("ignored")
    now[0] = 15.0
    assert budget.due() == []  # one summary per interval
    assert budget.due(final=True) == [("ignored", 1)]  # the connection ends: what is left
    assert budget.due(final=True) == []
