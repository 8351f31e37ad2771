"""Zero-downtime upgrades of Vigil itself: versions side by side, a verified primary switch,
instant rollback (issue 4)."""
