"""The watcher's goal file parsing and restart backoff."""

import sys

import pytest

from vigil_delegate.watcher import GoalError, backoff_seconds, parse_goal


def test_a_goal_defaults_the_command_and_names_the_process_in_its_environment() -> None:
    goals = parse_goal('{"delegates": [{"name": "d-v1", "version": "v1", "env": {"A": "1"}}]}')
    goal = goals["d-v1"]
    assert goal.command == (sys.executable, "-m", "vigil_delegate")
    assert goal.environment({"PATH": "/bin", "A": "0"}) == {
        "PATH": "/bin", "DELEGATE_NAME": "d-v1", "VIGIL_VERSION": "v1", "A": "1"}


def test_any_change_of_an_entry_changes_its_fingerprint() -> None:
    one = parse_goal('{"delegates": [{"name": "d", "version": "v1"}]}')["d"]
    two = parse_goal('{"delegates": [{"name": "d", "version": "v2"}]}')["d"]
    same = parse_goal('{"delegates": [{"name": "d", "version": "v1"}]}')["d"]
    assert one.fingerprint == same.fingerprint != two.fingerprint


@pytest.mark.parametrize(("text", "error"), [
    ("not json", "not JSON"),
    ('{"delegates": {}}', "delegates: must be a list"),
    ('{"delegates": [{"name": "a b", "version": "v1"}]}', r"delegates\[0\].name"),
    ('{"delegates": [{"name": "a", "version": ""}]}', r"delegates\[0\].version"),
    ('{"delegates": [{"name": "a", "version": "v1", "command": []}]}', r"\.command"),
    ('{"delegates": [{"name": "a", "version": "v1", "envv": {}}]}', "unknown field"),
    ('{"delegates": [{"name": "a", "version": "v1"}, {"name": "a", "version": "v2"}]}',
     r"delegates\[1\].name: duplicate 'a'"),
])
def test_an_invalid_goal_is_refused_naming_the_field(text: str, error: str) -> None:
    with pytest.raises(GoalError, match=error):
        parse_goal(text)


def test_backoff_doubles_from_the_initial_delay_up_to_the_cap() -> None:
    assert [backoff_seconds(n, 1.0, 10.0) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
