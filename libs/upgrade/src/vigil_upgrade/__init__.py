"""Zero-downtime upgrades of Vigil itself: versions side by side, a verified primary switch,
instant rollback (issue 4, docs/upgrades.md).

    domain/      the procedure as decisions (``next_upgrade_action``), no I/O
    adapters/    postgres.py (primary record, version registry), local.py (process sets),
                 k8s.py (Deployments/Services/Ingress per version, primary Service selector)
    procedure.py runs the decisions against one platform (local or Kubernetes)
    router.py    the local "primary Service": a gRPC front forwarding API calls to the primary
"""
