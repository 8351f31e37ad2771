"""The delegate's settings: what it announces at registration (capabilities, selectors)."""

import pytest

from vigil_common.config import ConfigError
from vigil_delegate.config import Settings

BASE = {"DELEGATE_ACCOUNT": "acme", "DELEGATE_TOKEN": "vgl_x"}


def test_the_clusters_it_reaches_are_announced_as_selectors_with_the_kubernetes_capability():
    s = Settings.from_env({**BASE, "DELEGATE_KUBERNETES_CLUSTERS": "prod-eu, staging",
                           "DELEGATE_SELECTORS": "team=web,k8s-cluster=staging"})

    assert s.capabilities == ("local-process", "shell", "kubernetes")
    assert s.selectors == ("team=web", "k8s-cluster=staging", "k8s-cluster=prod-eu")


def test_without_clusters_nothing_is_added():
    s = Settings.from_env({**BASE, "DELEGATE_CAPABILITIES": "shell,prometheus"})

    assert (s.capabilities, s.selectors) == (("shell", "prometheus"), ())


def test_a_delegate_without_account_or_token_is_a_configuration_error():
    with pytest.raises(ConfigError, match="DELEGATE_ACCOUNT and DELEGATE_TOKEN"):
        Settings.from_env({"DELEGATE_ACCOUNT": "acme"})
