"""task-dispatch's domain: delegate selection, the task lifecycle, fair ordering."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vigil_dispatch.domain import (
    Candidate,
    IllegalTransition,
    TaskStatus,
    pick,
    round_robin,
    transition,
    why_unassigned,
)


def _c(delegate_id, account="a", running=0, caps=("shell",), selectors=(), max_tasks=0,
       version="v1"):
    return Candidate(delegate_id, account, version, frozenset(caps), running,
                     frozenset(selectors), max_tasks)


def test_a_delegate_of_another_account_is_never_picked_even_when_idle():
    assert pick([_c("other", account="b")], "a", "v1", "shell") is None


def test_the_least_loaded_delegate_with_every_required_selector_is_picked():
    cands = [_c("d1", running=0, selectors=("cluster=eu",)),
             _c("d2", running=1, selectors=("cluster=us", "gpu")),
             _c("d3", running=3, selectors=("cluster=us", "gpu"))]
    assert pick(cands, "a", "v1", "shell", ["cluster=us", "gpu"]).delegate_id == "d2"
    assert pick(cands, "a", "v1", "shell", ["cluster=ap"]) is None


def test_a_delegate_at_its_task_limit_is_skipped():
    cands = [_c("d1", running=2, max_tasks=2), _c("d2", running=5, max_tasks=0)]
    assert pick(cands, "a", "v1", "shell").delegate_id == "d2"
    assert pick([_c("d1", running=2, max_tasks=2)], "a", "v1", "shell") is None


def test_another_vigil_versions_delegate_is_never_picked():
    assert pick([_c("d1", version="v2")], "a", "v1", "shell") is None


def test_the_reason_for_an_unassigned_task_says_what_was_missing():
    assert "no delegate of account 'a' (v1) is connected" in why_unassigned(
        [], "a", "v1", "k8s", [], 300)
    reason = why_unassigned([_c("d1")], "a", "v1", "k8s", ["cluster=eu"], 300)
    assert "capability 'k8s' and selectors cluster=eu" in reason
    assert "1 connected delegate(s) of the account, none with" in reason
    assert "all at their task limit" in why_unassigned(
        [_c("d1", running=1, max_tasks=1)], "a", "v1", "shell", [], 5)


def test_lifecycle_allows_requeue_and_expiry_but_never_leaves_a_terminal_state():
    assert transition(TaskStatus.RUNNING, TaskStatus.QUEUED) is TaskStatus.QUEUED
    assert transition(TaskStatus.QUEUED, TaskStatus.EXPIRED) is TaskStatus.EXPIRED
    with pytest.raises(IllegalTransition, match="SUCCEEDED cannot become RUNNING"):
        transition(TaskStatus.SUCCEEDED, TaskStatus.RUNNING)
    assert all(s.is_terminal for s in (TaskStatus.SUCCEEDED, TaskStatus.FAILED,
                                       TaskStatus.EXPIRED))


def test_round_robin_interleaves_accounts():
    items = [("a", 1), ("a", 2), ("a", 3), ("b", 1), ("c", 1), ("c", 2)]
    assert round_robin(items, key=lambda i: i[0]) == [
        ("a", 1), ("b", 1), ("c", 1), ("a", 2), ("c", 2), ("a", 3)]


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.integers())))
def test_round_robin_keeps_every_item_and_each_accounts_order(items):
    out = round_robin(items, key=lambda i: i[0])
    assert sorted(out) == sorted(items)
    for account in "abcd":
        assert [i for i in out if i[0] == account] == [i for i in items if i[0] == account]
    # Fairness: before any account's (k+1)-th item, every account with k+1 items had k.
    seen: dict[str, int] = {}
    for account, _ in out:
        seen[account] = seen.get(account, 0) + 1
        totals = {a: sum(1 for i in items if i[0] == a) for a in seen}
        assert all(seen[a] >= min(seen[account] - 1, totals[a]) for a in seen)
