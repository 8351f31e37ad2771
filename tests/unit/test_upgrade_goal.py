"""The local control goal file (`var/upgrade/goal.json`) that `vigil upgrade` edits and the
`make run` controller reconciles."""

import pytest

from vigil_upgrade.adapters.local import GoalFile
from vigil_upgrade.domain import UpgradeError


def test_a_missing_goal_file_wants_nothing_and_a_written_one_reads_back(tmp_path):
    goal = GoalFile(tmp_path / "upgrade" / "goal.json")
    assert goal.read() == []
    goal.write(["v1", "v2"])
    assert goal.read() == ["v1", "v2"]
    assert not goal.path.with_suffix(".tmp").exists(), "written by an atomic rename"


@pytest.mark.parametrize(("text", "error"), [
    ("{", "not JSON"),
    ('{"versions": "v1"}', "versions: must be a list"),
    ('["v1"]', "versions: must be a list"),
    ('{"versions": ["v1", "2"]}', "version '2': must look like v1"),
])
def test_a_bad_goal_file_is_refused_naming_the_problem(tmp_path, text, error):
    path = tmp_path / "goal.json"
    path.write_text(text)
    with pytest.raises(UpgradeError, match=error):
        GoalFile(path).read()
