"""infra/k8s (issue 4): every manifest validates against the Kubernetes schemas; the Strimzi
example has the shape the operator expects; rendered copies match the code that applies them."""

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vigil_upgrade.adapters import k8s

ROOT = Path(__file__).resolve().parents[2] / "infra" / "k8s"
KUBERNETES_VERSION = "1.37"  # as the delegate validates (vigil_delegate.targets.manifests)
STRIMZI = "kafka.strimzi.io/v1beta2"


def _documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(ROOT.rglob("*.yaml")):
        docs += [(str(path.relative_to(ROOT)), d) for d in yaml.safe_load_all(path.read_text())
                 if d]
    return docs


def _validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("where", "obj"), [d for d in _documents()
                                            if d[1]["apiVersion"] != STRIMZI
                                            and d[1]["kind"] != "Kustomization"],
                         ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_every_manifest_in_infra_k8s_validates(where, obj):
    _validate(obj)


def test_objects_of_any_version_and_the_primary_validate():
    for obj in [*k8s.version_objects("v7"), k8s.delegates_ingress("v7"),
                *k8s.primary_objects("v7")]:
        _validate(obj)


def test_the_rendered_manifests_are_what_the_code_applies():
    v1 = [d for w, d in _documents() if w == "versions/v1.yaml"]
    primary = [d for w, d in _documents() if w == "primary.yaml"]
    assert v1 == k8s.version_objects("v1"), "run: python -m vigil_upgrade.adapters.k8s render v1"
    assert primary == k8s.primary_objects("v1")
    ingress = [d for w, d in _documents() if w == "examples/delegates-ingress-v2.yaml"]
    assert ingress == [k8s.delegates_ingress("v2")]


def test_kustomization_lists_files_that_exist():
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    assert all((ROOT / r).exists() for r in kustomization["resources"])


def test_every_deployment_has_probes_resources_and_a_disruption_budget():
    objects = k8s.version_objects("v2")
    budgets = {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"}
    for dep in (o for o in objects if o["kind"] == "Deployment"):
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert {"readinessProbe", "livenessProbe", "startupProbe"} <= container.keys()
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert dep["metadata"]["name"] in budgets
        env = {e["name"]: e for e in container["env"]}
        assert env["VIGIL_VERSION"]["value"] == "v2"
        assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "vigil-database"
        port = next((p["containerPort"] for p in container["ports"] if p["name"] == "grpc"), 0)
        if port:
            assert container["readinessProbe"]["grpc"] == {"port": port}


def test_delegates_are_routed_by_their_vigil_version_header():
    annotations = k8s.delegates_ingress("v2")["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "vigil-version"
    assert annotations["nginx.ingress.kubernetes.io/canary-by-header-value"] == "v2"
    backend = k8s.delegates_ingress("v2")["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "vigil-delegate-gateway-v2"


def test_the_strimzi_example_has_the_shape_the_operator_expects():
    # kubernetes-validate has no schemas for CRDs: the fields Strimzi requires, checked here.
    objs = {d["kind"]: d for w, d in _documents() if d["apiVersion"] == STRIMZI}
    kafka, pool = objs["Kafka"], objs["KafkaNodePool"]
    assert kafka["metadata"]["annotations"]["strimzi.io/node-pools"] == "enabled"
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all({"name", "port", "type", "tls"} <= set(li) for li in listeners)
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(pool["spec"]["roles"]) == {"controller", "broker"}
    assert pool["spec"]["replicas"] >= 3 and pool["spec"]["storage"]["type"] in (
        "jbod", "persistent-claim", "ephemeral")
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    bootstrap = config["data"]["KAFKA_BOOTSTRAP"]
    assert bootstrap.startswith(f"{kafka['metadata']['name']}-kafka-bootstrap."
                                f"{kafka['metadata']['namespace']}.svc:")
    port = int(bootstrap.rsplit(":", 1)[1])
    assert port in [li["port"] for li in listeners]
