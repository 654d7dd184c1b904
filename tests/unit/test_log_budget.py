"""LogBudget: the first lines of a kind, then one summary per interval of how many more there were."""

from __future__ import annotations

from gateway.log_budget import LogBudget, LogBudgets


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


def test_budgets_by_key_forget_one_idle_for_an_interval_and_the_least_recently_used_beyond_their_limit() -> None:
    now = [0.0]
    budgets = LogBudgets(limit=2, first=1, interval=10.0, clock=lambda: now[0])
    assert [budgets.allow(("10.0.0.1", "-"), "bind refused") for _ in range(3)] == [True, False, False]
    assert budgets.allow(("10.0.0.2", "-"), "bind refused")
    assert budgets.allow(("10.0.0.3", "-"), "bind refused")  # a third key: the least recently used is forgotten
    assert budgets.due() == [(("10.0.0.1", "-"), "bind refused", 2)]  # its count reported, not lost
    assert budgets.allow(("10.0.0.1", "-"), "bind refused")  # logged again: a fresh budget
    now[0] = 9.0
    assert not budgets.allow(("10.0.0.1", "-"), "bind refused")
    now[0] = 12.0  # an interval since its budget began: the summary (10.0.0.3, idle since 0, is forgotten)
    assert budgets.due() == [(("10.0.0.1", "-"), "bind refused", 1)]
    assert not budgets.allow(("10.0.0.1", "-"), "bind refused")  # still counted: it was used within the interval
    now[0] = 22.0  # none for an interval: forgotten, its count reported, and its next lines logged again
    assert budgets.due() == [(("10.0.0.1", "-"), "bind refused", 1)]
    assert budgets.allow(("10.0.0.1", "-"), "bind refused")
