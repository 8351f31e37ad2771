"""The upgrade procedure as plain data and decisions (no I/O): see ``plan``."""

from vigil_upgrade.domain.plan import (
    Action,
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
    check_version_name,
    next_upgrade_action,
    plan_finish,
    plan_rollback,
    plan_switch,
    responsible_version,
    version_number,
)

__all__ = [
    "Action", "Done", "Primary", "PrimaryChangeKind", "StartVersion", "StopVersion",
    "SwitchPrimary", "UpgradeError", "VersionView", "Wait", "World", "check_version_name",
    "next_upgrade_action", "plan_finish", "plan_rollback", "plan_switch", "responsible_version",
    "version_number",
]
