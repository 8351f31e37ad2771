"""The upgrade procedure's decisions (issue 4): plain data in, one action out."""

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_upgrade.domain import (
    Done,
    Primary,
    PrimaryChangeKind,
    StartVersion,
    StopVersion,
    SwitchPrimary,
    UpgradeError,
    VersionView,
    Wait,
    World,
    next_upgrade_action,
    plan_finish,
    plan_rollback,
    plan_switch,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _healthy(v: str, executions: int = 0) -> VersionView:
    return VersionView(v, services_serving=True, delegates_connected=1,
                       executions_running=executions)


def test_n_minus_1_is_torn_down_first_when_nothing_runs_on_it():
    world = World(Primary("v2", "v1", 1), {"v1": _healthy("v1"), "v2": _healthy("v2")})
    assert next_upgrade_action(world, "v3") == StopVersion("v1")


def test_n_minus_1_with_a_running_execution_is_waited_for_not_torn_down():
    world = World(Primary("v2", "v1", 1), {"v1": _healthy("v1", 2), "v2": _healthy("v2")})
    action = next_upgrade_action(world, "v3")
    assert isinstance(action, Wait) and action.version == "v1"
    assert "2 execution(s)" in action.reason


def test_then_n_plus_1_is_started_beside_n():
    world = World(Primary("v1"), {"v1": _healthy("v1")})
    assert next_upgrade_action(world, "v2") == StartVersion("v2")


def test_an_unhealthy_n_plus_1_is_waited_for_with_the_reason():
    world = World(Primary("v1"), {"v1": _healthy("v1"),
                                  "v2": VersionView("v2", services_serving=True)})
    action = next_upgrade_action(world, "v2")
    assert isinstance(action, Wait) and "0 of 1 delegates connected" in action.reason


def test_a_healthy_n_plus_1_becomes_primary_and_n_keeps_running():
    world = World(Primary("v1"), {"v1": _healthy("v1", 3), "v2": _healthy("v2")})
    assert next_upgrade_action(world, "v2") == SwitchPrimary("v2", PrimaryChangeKind.SWITCH)
    after = World(Primary("v1").switched_to("v2", PrimaryChangeKind.SWITCH, by="t", reason="",
                                            now=NOW), world.versions)
    assert next_upgrade_action(after, "v2") == Done("v2 is the primary")


def test_upgrading_to_an_older_version_is_refused():
    with pytest.raises(UpgradeError, match="older than the primary v2"):
        next_upgrade_action(World(Primary("v2", "v1")), "v1")


@pytest.mark.parametrize("name", ["2", "V2", "v0", "v2-beta", "", "v1;drop"])
def test_version_names_are_checked(name):
    with pytest.raises(UpgradeError, match="must look like"):
        next_upgrade_action(World(Primary("v1")), name)


def test_switch_refuses_an_unhealthy_version_naming_why():
    world = World(Primary("v1"), {"v2": VersionView("v2", problems=("orchestrator: "
                                                                      "NOT_SERVING",))})
    with pytest.raises(UpgradeError, match="orchestrator: NOT_SERVING"):
        plan_switch(world, "v2")


def test_rollback_flips_to_the_previous_version_while_it_still_runs():
    world = World(Primary("v2", "v1", 2), {"v1": _healthy("v1"), "v2": _healthy("v2")})
    assert plan_rollback(world) == SwitchPrimary("v1", PrimaryChangeKind.ROLLBACK)
    with pytest.raises(UpgradeError, match="no longer running"):
        plan_rollback(World(Primary("v2", "v1", 2), {"v2": _healthy("v2")}))
    with pytest.raises(UpgradeError, match="nothing to roll back to"):
        plan_rollback(World(Primary("v1")))


def test_a_rollback_record_keeps_the_way_forward_as_its_previous_version():
    rolled = Primary("v2", "v1", 2).switched_to("v1", PrimaryChangeKind.ROLLBACK, by="ops",
                                                 reason="bad", now=NOW)
    assert (rolled.version, rolled.previous_version, rolled.generation) == ("v1", "v2", 3)


def test_finish_tears_down_only_versions_without_running_executions():
    world = World(Primary("v3", "v2"), {"v1": _healthy("v1", 1), "v2": _healthy("v2"),
                                        "v3": _healthy("v3")})
    actions = plan_finish(world)
    assert isinstance(actions[0], Wait) and actions[1] == StopVersion("v2")
    assert plan_finish(World(Primary("v3"), {"v3": _healthy("v3")})) == [
        Done("only the primary v3 runs")]


@settings(max_examples=200, deadline=None)
@given(old_execs=st.lists(st.integers(0, 2), min_size=0, max_size=3),
       health_delay=st.integers(0, 4), finish_after=st.integers(0, 6))
def test_the_procedure_converges_and_never_breaks_its_rules(old_execs, health_delay,
                                                            finish_after):
    """Simulated world: old versions' executions finish over time, the new version becomes
    healthy after a delay. The procedure always ends with the target primary, never stops a
    version with running executions and never switches to an unhealthy version."""
    primary = f"v{len(old_execs) + 1}"
    versions = {f"v{i + 1}": _healthy(f"v{i + 1}", n) for i, n in enumerate(old_execs)}
    versions[primary] = _healthy(primary, 1)
    target = f"v{len(old_execs) + 2}"
    world, ticks = World(Primary(primary)), 0
    world = World(world.primary, versions)
    while True:
        ticks += 1
        assert ticks < 50, "did not converge"
        action = next_upgrade_action(world, target)
        if isinstance(action, Done):
            break
        if isinstance(action, StopVersion):
            assert world.view(action.version).executions_running == 0
            assert action.version not in (world.primary.version, target)
            world = world.with_view(VersionView(action.version, running=False))
        elif isinstance(action, StartVersion):
            world = world.with_view(VersionView(target, services_serving=health_delay == 0))
        elif isinstance(action, SwitchPrimary):
            assert world.view(action.version).healthy(world.min_delegates)
            world = World(world.primary.switched_to(action.version, action.kind, by="t",
                                                    reason="", now=NOW), world.versions)
        else:  # Wait: time passes
            if ticks >= finish_after:
                for name, view in world.versions.items():
                    if name != primary and view.executions_running:
                        world = world.with_view(VersionView(name, services_serving=True,
                                                            delegates_connected=1))
            if target in world.versions and ticks >= health_delay:
                world = world.with_view(_healthy(target))
    assert world.primary.version == target and world.primary.previous_version == primary
    assert world.view(primary).running
    assert [v for v in world.versions.values() if v.running and v.version not in
            (primary, target)] == []


def test_the_primary_of_an_inputs_time_acts_on_it():
    from datetime import timedelta

    from vigil_upgrade.domain import responsible_version

    switched = Primary("v2", "v1", 2, changed_at=NOW)
    assert responsible_version(None, NOW) is None
    assert responsible_version(switched, NOW + timedelta(seconds=1)) == "v2"
    assert responsible_version(switched, NOW - timedelta(seconds=1)) == "v1"
    assert responsible_version(switched, NOW - timedelta(seconds=1), frozenset({"v1"})) == "v2"
    assert responsible_version(Primary("v1", changed_at=NOW), NOW - timedelta(days=1)) == "v1"
