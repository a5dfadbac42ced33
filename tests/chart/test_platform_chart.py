"""The platform chart with the real helm: it lints strictly, renders with its default values and with
every option on, every object validates (core kinds for the current Kubernetes release, our custom
resources against the CRDs, ServiceMonitors against the Prometheus Operator's), pods meet the
`restricted` profile, RBAC grants exactly what the code uses, and the settings it renders are the
ones the gateway and operator read."""

from __future__ import annotations

import base64
import json
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from harness.readme import commands
from harness.schemas import ROOT, load_crds, schema_errors, strict

from kubeclassify.gateway.config import GatewaySettings
from kubeclassify.operator.config import OperatorSettings
from kubeclassify.operator.rbac import rules

CHARTS = ROOT / "charts"
SHARED_SCHEMAS = ROOT.parent / "shared" / "schemas"
NAMESPACE = "kubeclassify"
VALUE_FILES = ["ci/all-on-values.yaml", "profiles/local.yaml", "profiles/gpu.yaml"]
POD_KINDS = {"Deployment", "StatefulSet"}


# A cluster of today: it serves ValidatingAdmissionPolicies (Kubernetes 1.30+), which helm template
# does not assume; the chart leaves them out where the cluster lacks them.
MODERN = ("--api-versions", "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy")


def template(helm: str, chart: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, "template", "kc", str(chart), "--namespace", NAMESPACE, *MODERN, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def render(helm: str, chart: Path, *args: str) -> list[dict[str, Any]]:
    done = template(helm, chart, *args)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def refused(helm: str, chart: Path, *args: str) -> str:
    done = template(helm, chart, *args)
    assert done.returncode != 0, "helm template should have failed"
    return done.stderr


@pytest.fixture(scope="module")
def default(helm: str, chart: Path) -> list[dict[str, Any]]:
    return render(helm, chart)


@pytest.fixture(scope="module")
def all_on(helm: str, chart: Path) -> list[dict[str, Any]]:
    return render(helm, chart, "-f", str(chart / "ci" / "all-on-values.yaml"))


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def external_schema(folder: str, kind: str) -> dict[str, Any]:
    for path in (SHARED_SCHEMAS / folder).glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd  # type: ignore[no-any-return]
    raise KeyError(kind)


def validate(doc: dict[str, Any]) -> list[str]:
    """Every way `doc` is invalid, checked by the right schema for its kind."""
    if doc["apiVersion"].startswith("kubeclassify.io/"):
        return schema_errors(doc, load_crds())
    if doc["apiVersion"].startswith("monitoring.coreos.com/"):
        import jsonschema

        crd = external_schema("prometheus-operator", doc["kind"])
        version = doc["apiVersion"].split("/")[1]
        schema = next(v for v in crd["spec"]["versions"] if v["name"] == version)["schema"]["openAPIV3Schema"]
        errors = jsonschema.Draft7Validator(strict(schema)).iter_errors(doc)
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
    try:
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e)]
    return []


# -- helm itself ---------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, *VALUE_FILES])
def test_helm_lint_strict(helm: str, chart: Path, values: str | None) -> None:
    args = [helm, "lint", "--strict", str(chart), "--namespace", NAMESPACE]
    if values:
        args += ["-f", str(chart / values)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("values", [None, *VALUE_FILES])
def test_every_rendered_object_is_valid(helm: str, chart: Path, values: str | None) -> None:
    docs = render(helm, chart, *(["-f", str(chart / values)] if values else []))
    problems = {f"{d['kind']}/{d['metadata']['name']}": validate(d) for d in docs}
    assert {k: v for k, v in problems.items() if v} == {}


def test_the_default_install_has_every_part(default: list[dict[str, Any]]) -> None:
    assert {
        "CustomResourceDefinition",
        "Deployment",
        "StatefulSet",
        "Service",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "ConfigMap",
        "ServiceAccount",
    } <= kinds(default)
    assert not {"ClusterRole", "ClusterRoleBinding", "ModelDeployment", "ClassificationBatch"} & kinds(
        default
    )
    operator = one(default, "Deployment", "kc-kubeclassify-operator")
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"]["type"] == "Recreate"
    container = operator["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {p["containerPort"] for p in container["ports"]} == {8080, 9090}
    gateway = one(default, "Deployment", "kc-kubeclassify-gateway")["spec"]["template"]["spec"]
    assert {p["name"]: p["containerPort"] for p in gateway["containers"][0]["ports"]} == {
        "http": 8000,
        "metrics": 9090,
    }
    # /metrics on a Service of its own: the API's Service (and an Ingress to it) does not carry it.
    api = one(default, "Service", "kc-kubeclassify-gateway")["spec"]
    assert [p["name"] for p in api["ports"]] == ["http"]
    scrape = one(default, "Service", "kc-kubeclassify-gateway-metrics")["spec"]
    assert scrape.get("type", "ClusterIP") == "ClusterIP" and [p["name"] for p in scrape["ports"]] == [
        "metrics"
    ]


def test_all_on_switches_every_option_on(all_on: list[dict[str, Any]]) -> None:
    assert {
        "ClusterRole",
        "ClusterRoleBinding",
        "Ingress",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "PodMonitor",
        "ModelDeployment",
        "ClassificationBatch",
    } <= kinds(all_on)
    assert "StatefulSet" not in kinds(all_on)  # an external Redis
    gateway = one(all_on, "Deployment", "kc-kubeclassify-gateway")
    assert "replicas" not in gateway["spec"]  # the autoscaler owns it
    monitors = {d["metadata"]["name"]: d["spec"] for d in all_on if d["kind"] == "ServiceMonitor"}
    assert {name: [e["port"] for e in m["endpoints"]] for name, m in monitors.items()} == {
        "kc-kubeclassify-operator": ["metrics"],
        "kc-kubeclassify-gateway": ["metrics"],
    }


def test_the_crd_chart_is_optional(helm: str, chart: Path) -> None:
    assert "CustomResourceDefinition" not in kinds(render(helm, chart, "--set", "crds.enabled=false"))


# -- pods: the restricted profile, resources, checksums --------------------------------------------


def pod_templates(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(d["metadata"]["name"], d["spec"]["template"]) for d in docs if d["kind"] in POD_KINDS]


@pytest.mark.parametrize("fixture", ["default", "all_on"])
def test_every_pod_is_restricted_with_requests_and_limits(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    templates = pod_templates(request.getfixturevalue(fixture))
    assert templates
    for name, template in templates:
        pod = template["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in template["spec"]["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert sc["readOnlyRootFilesystem"] is True, name
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(
                resources["limits"]
            ), name
            assert ":" in container["image"] and not container["image"].endswith(":latest"), name


def test_config_changes_roll_the_pods(helm: str, chart: Path, default: list[dict[str, Any]]) -> None:
    changed = render(
        helm, chart, "--set", "gateway.settings.imageCost=3", "--set", "operator.jobTTLSeconds=60"
    )
    for name in ("kc-kubeclassify-gateway", "kc-kubeclassify-operator"):
        before = one(default, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        after = one(changed, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]
        assert before["checksum/config"] != after["checksum/config"], name


# -- RBAC ------------------------------------------------------------------------------------------


def test_operator_rules_are_exactly_the_ones_the_code_declares(
    default: list[dict[str, Any]], all_on: list[dict[str, Any]]
) -> None:
    assert one(default, "Role", "kc-kubeclassify-operator")["rules"] == rules(cluster_wide=False)
    assert one(all_on, "ClusterRole", "kc-kubeclassify-operator")["rules"] == rules(cluster_wide=True)
    binding = one(default, "RoleBinding", "kc-kubeclassify-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kc-kubeclassify-operator", "namespace": NAMESPACE}
    ]


def test_a_role_in_each_watched_namespace(helm: str, chart: Path) -> None:
    docs = render(helm, chart, "--set", "operator.watch.namespaces={kubeclassify,team-a}")
    roles = {
        (d["metadata"].get("namespace", NAMESPACE), d["kind"])
        for d in docs
        if d["kind"] in ("Role", "RoleBinding")
    }
    assert {("kubeclassify", "Role"), ("team-a", "Role"), ("team-a", "RoleBinding")} <= roles
    config = one(docs, "ConfigMap", "kc-kubeclassify-operator")["data"]
    assert json.loads(config["KUBECLASSIFY_OPERATOR__NAMESPACES"]) == ["kubeclassify", "team-a"]
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] == "NetworkPolicy"} >= {"team-a"}


def test_no_rbac_wildcards_and_the_gateway_gets_only_what_it_sends(all_on: list[dict[str, Any]]) -> None:
    for doc in all_on:
        for rule in doc.get("rules", []) if doc["kind"] in ("Role", "ClusterRole") else []:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], (doc["metadata"]["name"], rule)
    gateway = one(all_on, "Role", "kc-kubeclassify-gateway")["rules"]
    assert {(r["resources"][0], tuple(r["verbs"])) for r in gateway} == {
        ("classificationbatches", ("create", "list", "patch")),
        ("modeldeployments", ("get", "list")),
    }


def test_an_unwatched_gateway_namespace_is_refused(helm: str, chart: Path) -> None:
    error = refused(helm, chart, "--set", "operator.watch.namespaces={team-a}")
    assert "does not watch" in error


# -- secrets and settings ----------------------------------------------------------------------------


def test_no_secret_in_the_default_values_and_none_rendered_when_existing_ones_are_named(
    all_on: list[dict[str, Any]],
) -> None:
    values = yaml.safe_load((CHARTS / "kubeclassify" / "values.yaml").read_text())

    def secrets(node: Any, path: str = "") -> list[str]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in secrets(v, f"{path}.{k}")]
        leaf = path.rsplit(".", 1)[-1].lower()
        secretive = re.fullmatch(r"\w*(password|token|secret|key)\w*", leaf) and not re.match(
            r"existing|imagepull|tokenttl|key$", leaf
        )
        return [path] if secretive and isinstance(node, str) and node else []

    assert secrets(values) == []
    assert [d["metadata"]["name"] for d in all_on if d["kind"] == "Secret"] == ["daily-webhook"]  # generated


def test_generated_secrets_are_random_and_never_in_the_pod_spec(helm: str, chart: Path) -> None:
    first, second = render(helm, chart), render(helm, chart)
    for name, key in (
        ("kc-kubeclassify-gateway", "token-secret"),
        ("kc-kubeclassify-admin", "password"),
        ("kc-kubeclassify-redis", "password"),
    ):
        a, b = one(first, "Secret", name)["data"][key], one(second, "Secret", name)["data"][key]
        assert a != b and len(a) >= 40
    for _, template in pod_templates(first):
        for container in template["spec"]["containers"]:
            for env in container.get("env", []):
                assert "value" not in env or "PASSWORD" not in env["name"] or "$(" in env["value"], env


def container_env(docs: list[dict[str, Any]], deployment: str) -> dict[str, str]:
    """The environment a container would see, with every Secret reference filled in by a test value."""
    container = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], item["value"])
        elif not item["valueFrom"]["secretKeyRef"].get("optional"):
            env[item["name"]] = "redis://:pw@redis:6379/0" if "URL" in item["name"] else "s" * 40
    return env


def test_the_rendered_settings_are_what_the_gateway_reads(
    default: list[dict[str, Any]], all_on: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in container_env(default, "kc-kubeclassify-gateway").items():
        monkeypatch.setenv(name, value)
    config = GatewaySettings().gateway
    assert (config.batch_backend, config.models_source, config.namespace) == (
        "kubernetes",
        "kubernetes",
        NAMESPACE,
    )
    assert config.redis_url.get_secret_value() == f"redis://:{'s' * 40}@kc-kubeclassify-redis:6379/0"
    assert (config.max_csv_bytes, config.starting_credits, config.manifest) == (8388608, 0, None)
    assert (config.registration, config.trusted_proxies) == ("admin-only", [])  # no ingress, no proxy
    assert config.metrics_port == 9090  # the container's `metrics` port

    monkeypatch.delenv("KUBECLASSIFY_GATEWAY__REDIS_URL")
    for name, value in container_env(all_on, "kc-kubeclassify-gateway").items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings()
    config = settings.gateway
    assert config.starting_credits == 10 and config.default_model == "digits"
    assert (config.registration, config.trusted_proxies) == ("open", ["10.42.0.0/16"])  # the ingress'
    assert config.manifest is not None and config.manifest.uri == "s3://incoming/metadata.csv"
    assert config.cors_origins == ["https://app.example.com"] and config.admin_username == "root"
    assert [str(n) for n in config.fetch_allowed_networks] == ["10.30.0.0/16"]
    assert settings.s3.endpoint_url == "http://seaweedfs.storage.svc:8333"
    env = container_env(all_on, "kc-kubeclassify-gateway")
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"]  # boto3 reads them


def test_the_rendered_settings_are_what_the_operator_reads(
    all_on: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in container_env(all_on, "kc-kubeclassify-operator").items():
        monkeypatch.setenv(name, value)
    config = OperatorSettings().operator
    assert config.namespaces == [] and config.default_deployment_mode == "Knative"
    assert config.inference_image == "ghcr.io/kubeclassify/inference:0.1.0"
    assert [str(n) for n in config.webhook_allowed_networks] == ["10.20.0.0/16"] and config.retry_delay == 30
    operator = one(all_on, "Deployment", "kc-kubeclassify-operator")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert operator["args"] == ["--all-namespaces"]


def test_generated_secrets_keep_their_values_on_upgrade(helm: str, chart: Path, kube_api: Any) -> None:
    """Rendered against a cluster (the API emulator) that holds the Secrets of an earlier install, as
    `helm upgrade` does: each generated value is the one already there, never a new one."""
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(str(kube_api.kubeconfig)))
    namespace = f"up-{secrets.token_hex(3)}"
    kept = {
        "kc-kubeclassify-gateway": "token-secret",
        "kc-kubeclassify-admin": "password",
        "kc-kubeclassify-redis": "password",
    }
    for name, key in kept.items():
        api.create_namespaced_secret(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": name,
                    "labels": {"app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {
                        "meta.helm.sh/release-name": "kc",
                        "meta.helm.sh/release-namespace": namespace,
                    },
                },
                "data": {key: base64.b64encode(f"{name} from the first install".encode()).decode()},
            },
        )
    done = subprocess.run(
        [
            helm,
            "template",
            "kc",
            str(chart),
            "--namespace",
            namespace,
            "--set",
            f"operator.watch.namespaces={{{namespace}}}",
            "--set",
            "crds.enabled=false",  # the emulator has them already
            "--dry-run=server",
            "--disable-openapi-validation",
            "--kubeconfig",
            str(kube_api.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rendered = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Secret"
    }
    for name, key in kept.items():
        assert base64.b64decode(rendered[name]["data"][key]).decode() == f"{name} from the first install"


# -- network policies --------------------------------------------------------------------------------


def test_default_deny_and_only_what_the_platform_needs(default: list[dict[str, Any]]) -> None:
    deny = one(default, "NetworkPolicy", "kc-kubeclassify-default-deny")["spec"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": "kc"}}
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    redis = one(default, "NetworkPolicy", "kc-kubeclassify-redis")["spec"]
    assert (
        redis["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        == "gateway"
    )
    assert "egress" not in redis
    gateway = one(default, "NetworkPolicy", "kc-kubeclassify-gateway")["spec"]
    assert [[p["port"] for p in rule["ports"]] for rule in gateway["ingress"]] == [[8000], [9090]]
    assert gateway["ingress"][1]["from"] == [{"namespaceSelector": {}}]  # metricsFrom's default
    public = [r for r in gateway["egress"] if any("except" in p.get("ipBlock", {}) for p in r["to"])]
    assert public and "169.254.0.0/16" in public[0]["to"][0]["ipBlock"]["except"]
    batch = one(default, "NetworkPolicy", "kc-kubeclassify-batch")["spec"]
    assert (
        batch["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "batch"
        and "ingress" not in batch
    )


def _matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and Exists only: what the chart writes) against labels."""
    if selector is None:
        return True
    wanted = selector.get("matchLabels") or {}
    exists = [e["key"] for e in selector.get("matchExpressions") or [] if e["operator"] == "Exists"]
    return all(labels.get(k) == v for k, v in wanted.items()) and all(k in labels for k in exists)


def _peer_matches(peer: dict[str, Any], other: dict[str, Any], namespace: str) -> bool:
    """Whether a NetworkPolicy peer of a policy in `namespace` matches `other` ({"namespace",
    "labels"} for a pod, {"ip"} for an address)."""
    import ipaddress

    if "ipBlock" in peer:
        if "ip" not in other:
            return False
        ip = ipaddress.ip_address(other["ip"])

        def inside(cidr: str) -> bool:
            net = ipaddress.ip_network(cidr)
            return ip.version == net.version and ip in net

        block = peer["ipBlock"]
        return inside(block["cidr"]) and not any(inside(e) for e in block.get("except", []))
    if "ip" in other:
        return False
    ns_ok = (
        _matches(peer["namespaceSelector"], {"kubernetes.io/metadata.name": other["namespace"]})
        if "namespaceSelector" in peer
        else other["namespace"] == namespace
    )
    return ns_ok and _matches(peer.get("podSelector"), other.get("labels", {}))


def _allows(
    docs: list[dict[str, Any]],
    pod: dict[str, str],
    namespace: str,
    other: dict[str, Any],
    port: int,
    way: str,
) -> bool:
    """Whether the NetworkPolicies of `namespace` let traffic between a pod with labels `pod` and
    `other` on TCP `port` through, `way` "Egress" (the pod sends) or "Ingress" (it receives), as
    Kubernetes decides: allowed when any policy selecting the pod for that way has a matching rule."""
    policies = [
        d["spec"]
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"].get("namespace", NAMESPACE) == namespace
        and _matches(d["spec"]["podSelector"], pod)
        and way in d["spec"]["policyTypes"]
    ]
    assert policies, f"no policy selects {pod}"
    peers = "to" if way == "Egress" else "from"
    return any(
        any(p.get("port") == port for p in rule.get("ports", [{"port": port}]))
        and any(_peer_matches(peer, other, namespace) for peer in rule.get(peers, [{}]))
        for spec in policies
        for rule in spec.get(way.lower()) or []
    )


def allows_egress(
    docs: list[dict[str, Any]], pod: dict[str, str], namespace: str, to: dict[str, Any], port: int
) -> bool:
    """Whether a pod with labels `pod` in `namespace` may reach `to` on TCP `port`."""
    return _allows(docs, pod, namespace, to, port, "Egress")


def allows_ingress(
    docs: list[dict[str, Any]], pod: dict[str, str], namespace: str, source: dict[str, Any], port: int
) -> bool:
    """Whether `source` may reach a pod with labels `pod` in `namespace` on TCP `port`."""
    return _allows(docs, pod, namespace, source, port, "Ingress")


def test_only_the_gateway_batch_pods_and_the_serving_ingress_reach_predictors(
    default: list[dict[str, Any]],
) -> None:
    """Predictors have no auth: any other pod that reaches them classifies without paying."""
    predictor = {"app.kubernetes.io/part-of": "kubeclassify", "app.kubernetes.io/component": "predictor"}
    gateway = {
        "namespace": NAMESPACE,
        "labels": {
            "app.kubernetes.io/name": "kubeclassify",
            "app.kubernetes.io/instance": "kc",
            "app.kubernetes.io/component": "gateway",
        },
    }
    batch = {
        "namespace": NAMESPACE,
        "labels": {"app.kubernetes.io/part-of": "kubeclassify", "app.kubernetes.io/component": "batch"},
    }
    activator = {"namespace": "knative-serving", "labels": {"app": "activator"}}
    for source in (gateway, batch, activator):
        assert allows_ingress(default, predictor, NAMESPACE, source, 8080), source
    assert allows_ingress(default, predictor, NAMESPACE, activator, 8012), "Knative's queue-proxy"
    for stranger in (
        {"namespace": NAMESPACE, "labels": {"app": "curious"}},
        {
            "namespace": "team-b",
            "labels": {"app.kubernetes.io/part-of": "kubeclassify", "app.kubernetes.io/component": "batch"},
        },
        {"namespace": "team-b", "labels": {"app.kubernetes.io/component": "gateway"}},
    ):
        assert not allows_ingress(default, predictor, NAMESPACE, stranger, 8080), stranger


def test_the_readme_install_reaches_every_peer_it_configures(helm: str, chart: Path) -> None:
    """The README's install command (S3 in the cluster, in namespace storage): the gateway and the
    batch pods may reach it, the gateway its Redis, and neither anything else private."""
    command = next(
        c.line
        for c in commands()
        if c.readme == "README.md" and c.line.startswith("helm install kubeclassify ")
    )
    flags = re.findall(r"--set (\S+)", command)
    assert "s3.endpointUrl=http://minio.storage.svc:9000" in flags
    docs = render(helm, chart, *[a for f in flags for a in ("--set", f)])
    release = {"app.kubernetes.io/instance": "kc", "app.kubernetes.io/part-of": "kubeclassify"}
    gateway = {**release, "app.kubernetes.io/name": "kubeclassify", "app.kubernetes.io/component": "gateway"}
    batch = {"app.kubernetes.io/part-of": "kubeclassify", "app.kubernetes.io/component": "batch"}
    minio = {"namespace": "storage", "labels": {"app": "minio"}}
    redis = {"namespace": NAMESPACE, "labels": {**gateway, "app.kubernetes.io/component": "redis"}}
    for pod in (gateway, batch):
        assert allows_egress(docs, pod, NAMESPACE, minio, 9000), pod
        assert not allows_egress(docs, pod, NAMESPACE, minio, 9001)
        assert not allows_egress(docs, pod, NAMESPACE, {"namespace": "other", "labels": {}}, 9000)
        # private addresses stay closed (on 80: the gateway's rule for the Kubernetes API opens 443 and
        # 6443 to any address unless networkPolicy.kubeApi.cidrs names the API server's)
        assert not allows_egress(docs, pod, NAMESPACE, {"ip": "10.1.2.3"}, 80)
        assert allows_egress(docs, pod, NAMESPACE, {"ip": "93.184.216.34"}, 443)  # image URLs
    assert allows_egress(docs, gateway, NAMESPACE, redis, 6379)
    assert not allows_egress(docs, batch, NAMESPACE, redis, 6379)


def test_an_external_redis_and_s3_elsewhere_are_reachable_as_configured(helm: str, chart: Path) -> None:
    gateway = {"app.kubernetes.io/instance": "kc", "app.kubernetes.io/component": "gateway"}
    gateway |= {"app.kubernetes.io/name": "kubeclassify", "app.kubernetes.io/part-of": "kubeclassify"}
    external = ["--set", "redis.enabled=false", "--set", "redis.external.existingSecret=redis-url"]
    cases = [  # (extra values, a peer the gateway must reach, its port)
        (["--set", "redis.external.address=redis.data.svc.cluster.local:6380"],
         {"namespace": "data", "labels": {}}, 6380),
        (["--set", "redis.external.address=10.9.8.7:6379"], {"ip": "10.9.8.7"}, 6379),
        (["--set", "redis.external.address=redis:6379"], {"namespace": NAMESPACE, "labels": {}}, 6379),
        (["--set", "s3.endpointUrl=https://s3.example.com:9443"], {"ip": "93.184.216.34"}, 9443),
        (["--set", "s3.endpointUrl=http://10.0.0.5:8333"], {"ip": "10.0.0.5"}, 8333),
    ]  # fmt: skip
    for values, peer, port in cases:
        docs = render(helm, chart, *external, *values)
        assert allows_egress(docs, gateway, NAMESPACE, peer, port), values
        assert not allows_egress(docs, gateway, NAMESPACE, peer, port + 1), values
    installed = subprocess.run(
        [helm, "install", "kc", str(chart), "-n", NAMESPACE, "--dry-run=client", *external],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "redis.external.address is empty" in installed.stdout, installed.stdout[-2000:]


def test_the_pdb_only_with_two_replicas_redis_memory_and_pinned_images(helm: str, chart: Path) -> None:
    assert "PodDisruptionBudget" not in kinds(render(helm, chart, "--set", "gateway.replicas=1"))
    assert "PodDisruptionBudget" in kinds(render(helm, chart, "--set", "gateway.replicas=2"))
    digest = "sha256:" + "ab" * 32
    docs = render(
        helm, chart, "--set", f"gateway.image.digest={digest}", "--set", "redis.resources.limits.memory=1Gi"
    )
    image = one(docs, "Deployment", "kc-kubeclassify-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == f"ghcr.io/kubeclassify/gateway@{digest}"
    redis = one(docs, "StatefulSet", "kc-kubeclassify-redis")["spec"]["template"]["spec"]["containers"][0]
    assert "--maxmemory 805306368 --maxmemory-policy noeviction" in redis["args"][0]  # 75% of 1 GiB
    assert "digest" in refused(helm, chart, "--set", "gateway.image.digest=latest")
    ingress = one(
        render(helm, chart, "--set", "gateway.ingress.enabled=true"), "Ingress", "kc-kubeclassify-gateway"
    )
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "12m"
    account = one(
        render(
            helm, chart, "--set", "gateway.serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:x"
        ),
        "ServiceAccount",
        "kc-kubeclassify-gateway",
    )
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:x"}


# -- defaults, monitoring, notes -------------------------------------------------------------------


def test_default_resources_are_post_install_hooks(all_on: list[dict[str, Any]]) -> None:
    md = one(all_on, "ModelDeployment", "digits")
    cb = one(all_on, "ClassificationBatch", "daily")
    assert md["metadata"]["annotations"]["helm.sh/hook"] == "post-install"
    assert int(md["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        cb["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    assert cb["spec"]["modelRef"]["name"] == md["metadata"]["name"]
    webhook = one(all_on, "Secret", cb["spec"]["webhook"]["secretName"])
    assert "helm.sh/hook" not in webhook["metadata"].get("annotations", {})  # the release keeps it
    assert len(webhook["data"]["secret"]) >= 40


def test_the_dashboard_queries_metrics_the_code_exports(all_on: list[dict[str, Any]]) -> None:
    from prometheus_client import REGISTRY

    import kubeclassify.gateway.metrics
    import kubeclassify.inference.predictor.metrics
    import kubeclassify.operator.metrics  # noqa: F401  (registers them)

    exported = {family.name for family in REGISTRY.collect()}
    dashboard = json.loads(one(all_on, "ConfigMap", "kc-kubeclassify-dashboard")["data"]["kubeclassify.json"])
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"kubeclassify_\w+", target["expr"])
    }
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in queried}
    assert queried and families <= exported, families - exported


def test_notes_walk_through_log_in_model_and_batch(helm: str, chart: Path) -> None:
    done = subprocess.run(
        [helm, "install", "kc", str(chart), "--namespace", NAMESPACE, "--dry-run=client"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "port-forward svc/kc-kubeclassify-gateway" in notes
    assert "get secret kc-kubeclassify-admin -o jsonpath='{.data.password}'" in notes
    assert "examples/modeldeployment-digits.yaml" in notes and "examples/batch-daily.yaml" in notes
    for example in re.findall(r"examples/[\w.-]+\.yaml", notes):
        assert (ROOT / example).exists(), example


def test_bad_values_are_refused_by_the_schema(helm: str, chart: Path) -> None:
    assert "additional properties" in refused(helm, chart, "--set", "gateway.replica=3")
    assert "gateway" in refused(helm, chart, "--set", "gateway.settings.startingCredits=-1")


def test_the_chart_readme_describes_every_value() -> None:
    schema = json.loads((CHARTS / "kubeclassify" / "values.schema.json").read_text())
    readme = (CHARTS / "kubeclassify" / "README.md").read_text()

    def leaves(node: dict[str, Any], path: str = "") -> list[str]:
        props = node.get("properties")
        if not props or path.endswith(".resources"):  # requests and limits are one value
            return [path]
        return [
            leaf for key, child in props.items() for leaf in leaves(child, f"{path}.{key}" if path else key)
        ]

    def described(node: dict[str, Any]) -> bool:
        return "description" in node and all(described(c) for c in node.get("properties", {}).values())

    assert schema["additionalProperties"] is False and all(
        described(v) for v in schema["properties"].values()
    )
    missing = [
        leaf
        for leaf in leaves(schema)
        if leaf not in ("global", "kubeclassify-crds") and f"`{leaf}`" not in readme
    ]
    assert missing == []


def test_the_rbac_files_match_the_operator_command() -> None:
    for scope, cluster in (("namespaced", False), ("cluster", True)):
        path = CHARTS / "kubeclassify" / "files" / f"operator-rbac-{scope}.yaml"
        assert yaml.safe_load(path.read_text()) == rules(cluster_wide=cluster), (
            f"run `make chart-files` ({path})"
        )


# -- skaffold -------------------------------------------------------------------------------------------


def test_skaffold_builds_our_dockerfiles_and_deploys_our_chart() -> None:
    config = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    assert config["apiVersion"].startswith("skaffold/v4")
    images = {a["image"]: a for a in config["build"]["artifacts"]}
    values = yaml.safe_load((CHARTS / "kubeclassify" / "values.yaml").read_text())
    assert set(images) == {
        values["operator"]["image"]["repository"],
        values["gateway"]["image"]["repository"],
        values["operator"]["inferenceImage"]["repository"],
    }
    for artifact in images.values():
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    release = config["deploy"]["helm"]["releases"][0]
    assert (ROOT / release["chartPath"] / "Chart.yaml").is_file()
    for key, template in release["setValueTemplates"].items():
        section, *rest = key.split(".")
        node = values[section]
        for part in rest:
            node = node[part]  # every key set by skaffold exists in values.yaml
        image = re.search(r"IMAGE_(?:REPO|TAG)_(\w+)", template)
        assert image and any(re.sub(r"\W", "_", name) == image.group(1) for name in images), template
    profiles = {p["name"]: p for p in config["profiles"]}
    assert set(profiles) == {"local", "gpu"}
    gpu = {p["path"]: p["value"] for p in profiles["gpu"]["patches"]}
    assert gpu["/build/artifacts/2/docker/buildArgs/VARIANT"] == "gpu"
    assert config["build"]["artifacts"][2]["image"].endswith("/inference")
    for profile in profiles.values():
        for patch in profile["patches"]:
            if patch["path"].endswith("valuesFiles"):
                assert all((ROOT / f).is_file() for f in patch["value"])
