"""Delegate settings, read from the environment once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vigil_common.config import ConfigError, get_float, get_int, get_str


def _list(environ: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in get_str(environ, name, default).split(",") if v.strip())


@dataclass(frozen=True)
class Settings:
    # DELEGATE_GATEWAY, default 127.0.0.1:50061: gateway address(es), comma-separated
    # host:port; the agent connects to any of them and moves on to the next when one fails.
    gateways: tuple[str, ...]
    account_id: str  # DELEGATE_ACCOUNT, required: the account this delegate serves
    token: str  # DELEGATE_TOKEN, required: the account's delegate token
    name: str  # DELEGATE_NAME, default "delegate-1": unique within the account
    version: str  # VIGIL_VERSION, default "v1": sent as the vigil-version header
    capabilities: tuple[str, ...]  # DELEGATE_CAPABILITIES, default "local-process,shell"
    # DELEGATE_SELECTORS, default empty: comma-separated tags, e.g. "cluster=prod-eu,gpu";
    # a task may require some (DispatchTask.selectors).
    selectors: tuple[str, ...]
    workdir: Path  # DELEGATE_WORKDIR, default ./var/delegate
    max_tasks: int  # DELEGATE_MAX_TASKS, default 4: tasks run at once (told to task-dispatch)
    heartbeat_seconds: float  # DELEGATE_HEARTBEAT_SECONDS, default 10
    # DELEGATE_TLS_CA, default unset (plaintext): PEM file of the CA that signed the gateways'
    # certificates; set it to connect with TLS.
    tls_ca: Path | None
    # DELEGATE_TLS_SERVER_NAME, default unset: name to verify in the gateway's certificate
    # when it differs from the host in DELEGATE_GATEWAY.
    tls_server_name: str
    log_level: str  # LOG_LEVEL, default INFO
    # DELEGATE_KUBECONFIG, default "": kubeconfig for Kubernetes tasks; empty means the
    # in-cluster service account, else $KUBECONFIG or ~/.kube/config.
    kubeconfig: str = ""
    # DELEGATE_METRICS_BATCH_INTERVALS, default 1: a health-collection task sends its metrics
    # every this many intervals (each "minute bucket") while the window runs, so the metric
    # analyzer can fail early; CollectHealthData.batch_intervals overrides it per task.
    metrics_batch_intervals: int = 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        account, token = environ.get("DELEGATE_ACCOUNT", ""), environ.get("DELEGATE_TOKEN", "")
        if not account or not token:
            raise ConfigError("DELEGATE_ACCOUNT and DELEGATE_TOKEN must be set")
        gateways = _list(environ, "DELEGATE_GATEWAY", "127.0.0.1:50061")
        if not gateways:
            raise ConfigError("DELEGATE_GATEWAY: at least one host:port")
        max_tasks = get_int(environ, "DELEGATE_MAX_TASKS", 4)
        if max_tasks < 1:
            raise ConfigError(f"DELEGATE_MAX_TASKS={max_tasks}: must be 1 or more")
        batch = get_int(environ, "DELEGATE_METRICS_BATCH_INTERVALS", 1)
        if batch < 1:
            raise ConfigError(f"DELEGATE_METRICS_BATCH_INTERVALS={batch}: must be 1 or more")
        ca = environ.get("DELEGATE_TLS_CA", "")
        # DELEGATE_KUBERNETES_CLUSTERS, default empty: names of the clusters this delegate
        # reaches (as pipelines name them in `infrastructure.cluster`); each is announced as
        # the selector k8s-cluster=<name>, and the kubernetes capability comes with them.
        clusters = _list(environ, "DELEGATE_KUBERNETES_CLUSTERS", "")
        capabilities = _list(environ, "DELEGATE_CAPABILITIES", "local-process,shell")
        if clusters and "kubernetes" not in capabilities:
            capabilities = (*capabilities, "kubernetes")
        selectors = _list(environ, "DELEGATE_SELECTORS", "")
        selectors = (*selectors, *(f"k8s-cluster={c}" for c in clusters
                                   if f"k8s-cluster={c}" not in selectors))
        return cls(
            gateways=gateways, account_id=account, token=token,
            name=get_str(environ, "DELEGATE_NAME", "delegate-1"),
            version=get_str(environ, "VIGIL_VERSION", "v1"),
            capabilities=capabilities, selectors=selectors,
            workdir=Path(get_str(environ, "DELEGATE_WORKDIR", "var/delegate")).resolve(),
            max_tasks=max_tasks,
            heartbeat_seconds=get_float(environ, "DELEGATE_HEARTBEAT_SECONDS", 10.0),
            tls_ca=Path(ca) if ca else None,
            tls_server_name=get_str(environ, "DELEGATE_TLS_SERVER_NAME", ""),
            log_level=get_str(environ, "LOG_LEVEL", "INFO").upper(),
            kubeconfig=get_str(environ, "DELEGATE_KUBECONFIG", ""),
            metrics_batch_intervals=batch,
        )
