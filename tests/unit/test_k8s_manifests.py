"""deploy/k8s renders, every Kubernetes resource is valid, and the deployment invariants hold.

Renders the base and the production overlay with the real kustomize binary (installed by
`bash deploy/k8s/install-tools.sh` into .local/bin), validates each built-in resource against the
Kubernetes OpenAPI schemas that the `kubernetes-validate` package ships (strict: unknown fields are
errors), validates every custom resource (Strimzi Kafka, KafkaNodePool, KafkaTopic, KafkaUser;
CloudNativePG Cluster) against the `openAPIV3Schema` of the operators' published CRDs, read from
../shared/standards (strict as kubectl's field validation; CEL rules are not evaluated), and checks
the invariants deploy/README.md promises, against the code they depend on: settings
(services/*/settings.py), topics (shared/topics.py), principals and ACLs (shared/acl.py),
subscriptions (services/*/app.py).
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from services.budget import config as budget_config
from services.budget.settings import BudgetSettings
from services.eligibility.parameters import ParameterStore
from services.eligibility.settings import EligibilitySettings
from services.intake.settings import IntakeSettings
from services.notify.settings import NotifySettings
from services.opendata.settings import OpenDataSettings
from shared.acl import AGENCY_READER, OPERATOR, grants
from shared.schemes import FAMILIES, family_group, parse_families
from shared.topics import TOPIC_SPECS, Topic

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes the manifests promise to work on
LAYERS = ("base", "overlays/production")
STANDARDS = ROOT.parent / "shared" / "standards"
CRD_FILES = (
    "strimzi/040-Crd-kafka.yaml",
    "strimzi/043-Crd-kafkatopic.yaml",
    "strimzi/044-Crd-kafkauser.yaml",
    "strimzi/045-Crd-kafkanodepool.yaml",
    "cloudnative-pg/postgresql.cnpg.io_clusters.yaml",
)
CRD_GROUPS = ("kafka.strimzi.io", "postgresql.cnpg.io")
APP_NAMESPACE = "clustergrants"
KAFKA_NAMESPACE = "kafka"
KAFKA_CLUSTER = "clustergrants"
DB_CLUSTER = "clustergrants-db"

SETTINGS: dict[str, type[BaseSettings]] = {
    "intake": IntakeSettings,
    "eligibility": EligibilitySettings,
    "budget": BudgetSettings,
    "notify": NotifySettings,
    "opendata": OpenDataSettings,
}
SERVICES = tuple(SETTINGS)

#: Settings a pod deliberately leaves at the code's default, with the reason. A setting added to a
#: service must be decided: set in deploy/k8s (ConfigMap or Secret) or listed here.
DEFAULTS_ACCEPTED: dict[str, str] = {
    "NOTIFY_FAULT_EXIT_AFTER_SENDS": "crash tests only; 0 (off) in a cluster",
    "CLUSTERGRANTS_FAULT_EXIT_AFTER_COMMITS": "crash tests only; 0 (off) in a cluster",
    "KAFKA_SSL_CERTFILE": "only for mutual TLS (the services authenticate with SCRAM)",
    "KAFKA_SSL_KEYFILE": "only for mutual TLS (the services authenticate with SCRAM)",
}


# --- rendering ------------------------------------------------------------------------------------


def kustomize_binary() -> str:
    local = str(ROOT / ".local" / "bin" / "kustomize")
    candidates = [os.environ.get("KUSTOMIZE", ""), local, shutil.which("kustomize")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    pytest.fail("kustomize is not installed: run `bash deploy/k8s/install-tools.sh` (builds it into .local/bin)")


@functools.cache
def render(layer: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run(
        [kustomize_binary(), "build", str(K8S / layer)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kustomize build {layer} failed:\n{result.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(result.stdout) if d)
    assert docs, f"kustomize build {layer} rendered nothing"
    return docs


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    found = {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}
    return found


def one(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert name in found, f"no {kind} {name!r} (have {sorted(found)})"
    return found[name]


def service_of(deployment: dict[str, Any]) -> str:
    """The service a Deployment runs (eligibility runs one Deployment per scheme family)."""
    return str(deployment["metadata"]["labels"]["app.kubernetes.io/name"])


def deployments_of(docs: tuple[dict[str, Any], ...], service: str) -> dict[str, dict[str, Any]]:
    found = {name: d for name, d in of_kind(docs, "Deployment").items() if service_of(d) == service}
    assert found, f"no Deployment of {service}"
    return found


def deployment_names() -> set[str]:
    """intake, budget, notify, and eligibility-<family> for each scheme family."""
    return {s for s in SERVICES if s != "eligibility"} | {f"eligibility-{f}" for f in FAMILIES}


def configmap(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, Any]:
    """A ConfigMap by the name a pod references (kustomize adds a content hash to generated names)."""
    return one(docs, "ConfigMap", name)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container per pod expected"
    return containers[0]


def pod_env(docs: tuple[dict[str, Any], ...], pod: dict[str, Any]) -> tuple[dict[str, str], dict[str, tuple[str, str]]]:
    """(plain values from env and ConfigMaps, {name: (secret, key)} of secret references)."""
    c = pod["containers"][0]
    values: dict[str, str] = {}
    secrets: dict[str, tuple[str, str]] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            values.update(configmap(docs, source["configMapRef"]["name"])["data"])
        else:
            assert "secretRef" in source, f"unexpected envFrom {source}"
    for var in c.get("env", []):
        if "value" in var:
            values[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            secrets[var["name"]] = (ref["name"], ref["key"])
            values.pop(var["name"], None)
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            values[var["name"]] = configmap(docs, ref["name"])["data"][ref["key"]]
        else:
            pytest.fail(f"env {var['name']}: unsupported source {var}")
    return values, secrets


def mounted_file(docs: tuple[dict[str, Any], ...], pod: dict[str, Any], path: str) -> str:
    """The content a pod sees at `path` when it comes from a ConfigMap volume."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in pod["containers"][0].get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = volumes[mount["name"]]
            assert "configMap" in volume, f"{path} is mounted from {volume}, not a ConfigMap"
            data = configmap(docs, volume["configMap"]["name"])["data"]
            key = path.removeprefix(prefix)
            assert key in data, f"{path}: ConfigMap {volume['configMap']['name']} has no key {key!r}"
            return data[key]
    pytest.fail(f"{path} is not mounted")


def port_number(c: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    assert port in named, f"probe port {port!r} is not a named port of {c['name']}"
    return named[port]


def input_topics(service: str) -> set[Topic]:
    """The topics a service subscribes to, read off its real runtime (as the AsyncAPI document is)."""
    from tools.asyncapi import consumers

    topics = set(consumers()[service])
    assert topics, f"services/{service} subscribes to no topic"
    return topics


# --- schema validation ----------------------------------------------------------------------------


def is_custom(doc: dict[str, Any]) -> bool:
    return doc["apiVersion"].split("/")[0] in CRD_GROUPS


@pytest.mark.parametrize("layer", LAYERS)
def test_every_builtin_resource_is_valid_against_the_kubernetes_schema(layer: str) -> None:
    problems = []
    validated = 0
    for doc in render(layer):
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        if is_custom(doc):
            continue  # against the operators' CRDs below
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{what}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{what}: {doc['apiVersion']} is not a Kubernetes {KUBERNETES_VERSION} API")
    assert not problems, "\n".join(problems)
    assert validated >= 30


def test_the_validation_catches_a_broken_resource() -> None:
    """The schemas really are applied: a misspelt field and a wrong type are refused."""
    deployment = copy.deepcopy(one(render("base"), "Deployment", "intake"))
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, KUBERNETES_VERSION, strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, KUBERNETES_VERSION, strict=True)


# --- custom resources against the operators' CRDs ------------------------------------------------


def _strict(schema: Any) -> Any:
    """kubectl's strict field validation: an object schema with `properties` refuses other fields,
    unless the CRD preserves unknown fields there or types them with additionalProperties."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _strict(value) for key, value in schema.items()}
    if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict JSON schema, for every version the CRDs in ../shared/standards serve."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for name in CRD_FILES:
        path = STANDARDS / name
        if not path.exists():
            pytest.fail(f"{path} is missing: the operators' CRDs are read from ../shared/standards (never copied here)")
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["properties"]["apiVersion"] = {"const": f"{group}/{version['name']}"}
                schema["properties"]["kind"] = {"const": kind}
                schema["properties"]["metadata"] = {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"}},
                }
                schema.setdefault("required", [])
                schema["required"] = sorted({*schema["required"], "apiVersion", "kind", "metadata"})
                found[(f"{group}/{version['name']}", kind)] = schema
    return found


def crd_problems(doc: dict[str, Any]) -> list[str]:
    what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    schema = crd_schemas().get((doc.get("apiVersion", ""), doc.get("kind", "")))
    if schema is None:
        return [f"{what}: {doc.get('apiVersion')} {doc.get('kind')} is not served by the CRDs in ../shared/standards"]
    validator = jsonschema.Draft7Validator(schema)
    return [f"{what}: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("layer", LAYERS)
def test_every_custom_resource_is_valid_against_its_operators_crd(layer: str) -> None:
    custom = [doc for doc in render(layer) if is_custom(doc)]
    problems = [problem for doc in custom for problem in crd_problems(doc)]
    assert not problems, "\n".join(problems)
    kinds = {doc["kind"] for doc in custom}
    assert {"KafkaTopic", "KafkaUser", "Cluster"} <= kinds
    if layer == "overlays/production":
        assert {"Kafka", "KafkaNodePool"} <= kinds


def test_the_crd_validation_catches_a_broken_resource() -> None:
    """A resource the operators would refuse fails: wrong enum, misspelt field, wrong type, missing
    required field, a version the CRDs no longer serve."""
    docs = render("overlays/production")
    user = one(docs, "KafkaUser", "intake")
    topic = next(iter(of_kind(docs, "KafkaTopic").values()))
    kafka = one(docs, "Kafka", KAFKA_CLUSTER)
    cluster = one(docs, "Cluster", DB_CLUSTER)
    assert not crd_problems(user) and not crd_problems(topic) and not crd_problems(kafka) and not crd_problems(cluster)

    def broken(doc: dict[str, Any], change: Any) -> list[str]:
        copied = copy.deepcopy(doc)
        change(copied)
        return crd_problems(copied)

    assert broken(user, lambda d: d["spec"]["authentication"].update(type="scram-sha-256"))
    assert broken(user, lambda d: d["spec"].update(authorisation=d["spec"].pop("authorization")))
    assert broken(user, lambda d: d["spec"]["authorization"]["acls"][0].update(operations=["Reed"]))
    assert broken(topic, lambda d: d["spec"].update(partitions="6"))
    assert broken(topic, lambda d: d.update(apiVersion="kafka.strimzi.io/v1beta2"))
    assert broken(kafka, lambda d: d["spec"]["kafka"]["listeners"][0].pop("tls"))
    assert broken(kafka, lambda d: d["spec"]["kafka"]["listeners"][0]["authentication"].update(type="scram-sha-256"))
    assert broken(cluster, lambda d: d["spec"].update(instances="3"))
    assert broken(cluster, lambda d: d["spec"].update(enableSuperuserAcess=False))


@pytest.mark.parametrize("layer", LAYERS)
def test_only_expected_kinds_and_namespaces(layer: str) -> None:
    for doc in render(layer):
        what = f"{doc['kind']}/{doc['metadata']['name']}"
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] == "Namespace":
            assert namespace is None
        elif doc["kind"] in ("KafkaTopic", "Kafka", "KafkaNodePool"):
            assert namespace == KAFKA_NAMESPACE, what
        else:
            assert namespace == APP_NAMESPACE, what
    assert one(render(layer), "Namespace", APP_NAMESPACE)


# --- secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_no_secret_is_committed(layer: str) -> None:
    docs = render(layer)
    assert not of_kind(docs, "Secret"), "Secrets are created on the cluster (deploy/README.md), never committed"
    for path in K8S.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (isinstance(doc, dict) and doc.get("kind") == "Secret"), f"{path} holds a Secret"
    for path in K8S.rglob("kustomization.yaml"):
        assert "secretGenerator" not in yaml.safe_load(path.read_text()), f"{path} generates a Secret"


@pytest.mark.parametrize("layer", LAYERS)
def test_secret_settings_come_from_secrets_and_all_settings_are_decided(layer: str) -> None:
    docs = render(layer)
    cnpg_secret = f"{DB_CLUSTER}-app"
    for deployment in of_kind(docs, "Deployment").values():
        service = service_of(deployment)
        settings_class = SETTINGS[service]
        pod = deployment["spec"]["template"]["spec"]
        values, secret_refs = pod_env(docs, pod)
        fields = {name.upper(): field for name, field in settings_class.model_fields.items()}

        unknown = (set(values) | set(secret_refs)) - set(fields)
        assert not unknown, f"{service}: {sorted(unknown)} are no settings of {settings_class.__name__} (typo?)"

        secret_fields = {n for n, f in fields.items() if "SecretStr" in repr(f.annotation)}
        leaked = secret_fields & set(values)
        assert not leaked, f"{service}: {sorted(leaked)} hold secrets: take them from a Secret (secretKeyRef)"

        undecided = set(fields) - set(values) - set(secret_refs) - set(DEFAULTS_ACCEPTED)
        assert not undecided, (
            f"{service}: settings {sorted(undecided)} are neither set in deploy/k8s nor listed in DEFAULTS_ACCEPTED: "
            "decide their value for a cluster (their defaults suit a laptop)"
        )

        assert secret_refs["DATABASE_URL"] == (cnpg_secret, "uri"), f"{service}: DATABASE_URL from the CNPG app secret"
        assert values["OPS_HTTP_HOST"] == "0.0.0.0", f"{service}: ops endpoints must listen on the pod address"
        assert values["LOG_FORMAT"] == "json"
        assert values["TOPIC_PREFIX"] == ""

        # The values parse as the service's settings (types, bounds).
        env = {**values, **{name: "placeholder-secret-value-0123456789" for name in secret_refs}}
        settings = settings_class.model_validate({k.lower(): v for k, v in env.items()})
        for name in secret_refs:
            assert isinstance(getattr(settings, name.lower()), SecretStr | str)


@pytest.mark.parametrize("layer", LAYERS)
def test_operator_files_are_mounted_and_valid_for_the_services(layer: str, tmp_path: Path) -> None:
    docs = render(layer)
    files = {
        "eligibility": ("ELIGIBILITY_OPERATOR_PARAMETERS_FILE", lambda p: ParameterStore.load(operator_file=p)),
        "budget": ("BUDGET_POTS_FILE", budget_config.load),
    }
    for service, (setting, load) in files.items():
        pod = next(iter(deployments_of(docs, service).values()))["spec"]["template"]["spec"]
        values, _ = pod_env(docs, pod)
        content = mounted_file(docs, pod, values[setting])
        local = tmp_path / f"{service}.yaml"
        local.write_text(content)
        load(local)  # raises with file, key and problem, as the service would at start-up
    pod = one(docs, "Deployment", "notify")["spec"]["template"]["spec"]
    values, _ = pod_env(docs, pod)
    if values.get("NOTIFY_WEBHOOKS_FILE"):
        from services.notify.webhooks import load_subscriptions

        local = tmp_path / "webhooks.yaml"
        local.write_text(mounted_file(docs, pod, values["NOTIFY_WEBHOOKS_FILE"]))
        subscriptions = load_subscriptions(local, {})
        assert not subscriptions.subscriptions, "a committed subscription needs its secret set: document it first"


# --- Deployments, probes, resources, security -----------------------------------------------------


def pod_templates(docs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, Any]]:
    pods = {f"Deployment/{n}": d["spec"]["template"] for n, d in of_kind(docs, "Deployment").items()}
    pods |= {f"Job/{n}": d["spec"]["template"] for n, d in of_kind(docs, "Job").items()}
    return pods


@pytest.mark.parametrize("layer", LAYERS)
def test_every_pod_runs_restricted(layer: str) -> None:
    pods = pod_templates(render(layer))
    assert len(pods) == len(deployment_names()) + 1
    for what, template in pods.items():
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, what
        assert spec["securityContext"]["runAsUser"] > 0, what
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", what
        assert spec["automountServiceAccountToken"] is False, what
        assert not spec.get("hostNetwork"), what
        assert not spec.get("hostPID"), what
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, what
            assert sc["allowPrivilegeEscalation"] is False, what
            assert sc["capabilities"]["drop"] == ["ALL"], what
            assert not sc["capabilities"].get("add"), what
            assert not sc.get("privileged"), what
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert resource in c.get("resources", {}).get(kind, {}), f"{what}: no {kind}.{resource}"


@pytest.mark.parametrize("layer", LAYERS)
def test_every_service_has_its_deployment_probes_autoscaler_and_disruption_budget(layer: str) -> None:
    docs = render(layer)
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == deployment_names()
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    pdbs = of_kind(docs, "PodDisruptionBudget")
    images = set()
    for name, deployment in deployments.items():
        service = service_of(deployment)
        pod = deployment["spec"]["template"]
        c = container(deployment)
        images.add(c["image"])
        assert c["command"] == ["python", "-m", f"services.{service}"], service
        values, _ = pod_env(docs, pod["spec"])
        ops_port = int(values["OPS_HTTP_PORT"])
        serving = {ops_port}
        if service == "intake":
            serving.add(int(values["INTAKE_HTTP_PORT"]))
            assert {p["containerPort"] for p in c["ports"] if p["name"] == "http"} == {int(values["INTAKE_HTTP_PORT"])}
        assert {p["containerPort"] for p in c["ports"] if p["name"] == "ops"} == {ops_port}, service

        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet")
            assert get is not None, f"{service}: no HTTP {probe}"
            assert get["path"] == path, f"{service}: {probe} on {get['path']}, not {path}"
            assert port_number(c, get["port"]) in serving, f"{service}: {probe} on a port the service does not serve"

        # The HPA owns the replica count; a fixed `replicas` would be reset by every apply.
        assert "replicas" not in deployment["spec"], f"{service}: leave replicas to the HorizontalPodAutoscaler"
        hpa = hpas.get(name)
        assert hpa is not None, f"{name}: no HorizontalPodAutoscaler"
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]

        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        matching = [p for p in pdbs.values() if p["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(matching) == 1, f"{service}: {len(matching)} PodDisruptionBudgets select its pods"

    assert len(images) == 1, f"one image for every service, not {images}"
    job = one(docs, "Job", "clustergrants-migrate")
    jc = job["spec"]["template"]["spec"]["containers"][0]
    assert jc["image"] in images, "the migrations Job runs the services' image"
    assert jc["command"] == ["python", "-m", "shared.migrate"]
    assert pod_env(docs, job["spec"]["template"]["spec"])[1]["DATABASE_URL"] == (f"{DB_CLUSTER}-app", "uri")


def test_production_names_a_pinned_image() -> None:
    docs = render("overlays/production")
    for what, template in pod_templates(docs).items():
        image = template["spec"]["containers"][0]["image"]
        assert "/" in image, f"{what}: {image} names no registry"
        assert "@sha256:" in image or (":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")), (
            f"{what}: {image} is not pinned to a tag or digest"
        )


@pytest.mark.parametrize("layer", LAYERS)
def test_intake_is_reachable_through_its_service(layer: str) -> None:
    docs = render(layer)
    service = one(docs, "Service", "intake")
    c = container(one(docs, "Deployment", "intake"))
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert port_number(c, ports["http"]["targetPort"]) == 8080
    assert port_number(c, ports["metrics"]["targetPort"]) == 8081
    assert (
        service["spec"]["selector"].items() <= one(docs, "Deployment", "intake")["spec"]["template"]["metadata"]["labels"].items()
    )


# --- scaling against the topics -------------------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_no_autoscaler_goes_beyond_the_partitions_of_its_input_topics(layer: str) -> None:
    """A consumer replica beyond the largest input topic's partition count gets no partition: idle."""
    docs = render(layer)
    topics = {t["spec"]["topicName"]: t for t in of_kind(docs, "KafkaTopic").values()}
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    for name, deployment in of_kind(docs, "Deployment").items():
        service = service_of(deployment)
        partitions = {t: topics[t.value]["spec"]["partitions"] for t in input_topics(service)}
        most = max(partitions.values())
        assert hpas[name]["spec"]["maxReplicas"] <= most, (
            f"{name}: maxReplicas {hpas[name]['spec']['maxReplicas']} > {most} partitions of {partitions}"
        )


@pytest.mark.parametrize("layer", LAYERS)
def test_postgres_connections_fit_at_full_scale(layer: str) -> None:
    """Pools at HPA maximum, plus one surge pod per Deployment, plus the migrations, plus a reserve."""
    docs = render(layer)
    cluster = one(docs, "Cluster", DB_CLUSTER)
    max_connections = int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    total = 1 + 10  # the migrations Job; superuser_reserved_connections, CNPG's own, psql
    for service, deployment in of_kind(docs, "Deployment").items():
        pool_max = int(pod_env(docs, deployment["spec"]["template"]["spec"])[0]["DB_POOL_MAX"])
        surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        total += (hpas[service]["spec"]["maxReplicas"] + surge) * pool_max
    assert total <= max_connections, f"{total} connections at full scale > max_connections {max_connections}"


# --- Kafka topics (Strimzi) -----------------------------------------------------------------------


def test_topic_file_is_generated_from_topic_specs() -> None:
    from deploy.k8s.kafka_topics import TOPICS_FILE
    from deploy.k8s.kafka_topics import render as render_topics

    assert TOPICS_FILE.read_text() == render_topics(), (
        "deploy/k8s/base/kafka/topics.yaml is stale: run `python -m deploy.k8s.kafka_topics`"
    )


@pytest.mark.parametrize("layer", LAYERS)
def test_every_topic_is_a_kafka_topic_with_the_declared_partitions_and_retention(layer: str) -> None:
    topics = of_kind(render(layer), "KafkaTopic")
    by_name = {t["spec"]["topicName"]: t for t in topics.values()}
    assert set(by_name) == {t.value for t in Topic}, "KafkaTopics and shared/topics.py disagree"
    for topic in Topic:
        resource = by_name[topic.value]
        spec = resource["spec"]
        assert resource["apiVersion"] == "kafka.strimzi.io/v1"  # Strimzi 1.0 and later serve only v1
        assert resource["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER, topic.value
        assert spec["partitions"] == TOPIC_SPECS[topic].partitions, topic.value
        assert int(spec["config"]["retention.ms"]) == TOPIC_SPECS[topic].retention_ms, topic.value
        assert isinstance(spec["replicas"], int)
        assert spec["replicas"] >= 1
        assert 1 <= int(spec["config"]["min.insync.replicas"]) <= spec["replicas"]
        assert set(spec) <= {"topicName", "partitions", "replicas", "config"}, f"{topic.value}: unknown spec field"
    if layer == "overlays/production":
        assert {t["spec"]["replicas"] for t in topics.values()} == {3}
        assert {int(t["spec"]["config"]["min.insync.replicas"]) for t in topics.values()} == {2}


# --- Kafka principals, authentication and TLS (Strimzi) -------------------------------------------


def mounted_secret(pod: dict[str, Any], path: str) -> tuple[str, str]:
    """(Secret, key) a pod sees at `path` when it comes from a Secret volume."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in pod["containers"][0].get("volumeMounts", []):
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            volume = volumes[mount["name"]]
            assert "secret" in volume, f"{path} is mounted from {volume}, not a Secret"
            assert mount.get("readOnly") is True, f"{path}: mount it read-only"
            name = path.removeprefix(prefix)
            items = volume["secret"].get("items")
            if items is None:
                return volume["secret"]["secretName"], name
            keys = [item["key"] for item in items if item["path"] == name]
            assert keys, f"{path}: Secret {volume['secret']['secretName']} projects no {name!r}"
            assert len(items) == 1, f"{path}: mount only the certificate, never the CA's key"
            return volume["secret"]["secretName"], keys[0]
    pytest.fail(f"{path} is not mounted")


def acls_of(user: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    return {
        (acl["resource"]["type"], acl["resource"]["name"], acl["resource"].get("patternType", "literal"), operation)
        for acl in user["spec"]["authorization"]["acls"]
        for operation in acl["operations"]
        if acl.get("type", "allow") == "allow"
    }


def table_acls(principal: str) -> set[tuple[str, str, str, str]]:
    return {(g.resource, g.name, g.pattern, g.operation) for g in grants(principal)}


def test_the_kafka_users_file_is_generated_from_the_acl_table() -> None:
    from deploy.k8s.kafka_users import USERS_FILE
    from deploy.k8s.kafka_users import render as render_users

    assert USERS_FILE.read_text() == render_users(), (
        "deploy/k8s/base/kafka-users/users.yaml is stale: run `python -m deploy.k8s.kafka_users`"
    )


@pytest.mark.parametrize("layer", LAYERS)
def test_every_principal_is_a_kafka_user_with_exactly_the_table_s_acls(layer: str) -> None:
    users = of_kind(render(layer), "KafkaUser")
    assert set(users) == {*SERVICES, AGENCY_READER, OPERATOR}, "one KafkaUser per principal (portals are added per agency)"
    for name, user in users.items():
        assert user["metadata"]["namespace"] == APP_NAMESPACE, f"{name}: its Secret must be where the pods are"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER, name
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}, name
        assert user["spec"]["authorization"]["type"] == "simple", name
        assert acls_of(user) == table_acls(name), f"{name}: KafkaUser ACLs and shared/acl.py disagree"
        for acl in user["spec"]["authorization"]["acls"]:
            if acl["resource"]["type"] == "topic":
                assert acl["resource"]["name"] in {t.value for t in Topic}, f"{name}: ACL on an unknown topic"


def test_a_portal_kafka_user_comes_from_the_same_table() -> None:
    from deploy.k8s import kafka_users

    user = kafka_users.resource("portal-acme")
    assert not crd_problems(user)
    assert acls_of(user) == table_acls("portal-acme")
    assert {acl[1] for acl in acls_of(user)} == {Topic.APPLICATION_SUBMITTED.value, Topic.ASSESSMENT_SUBMITTED.value}
    assert {acl[3] for acl in acls_of(user)} == {"Write"}


@pytest.mark.parametrize("layer", LAYERS)
def test_every_service_authenticates_as_its_own_kafka_user_over_verified_tls(layer: str) -> None:
    docs = render(layer)
    users = of_kind(docs, "KafkaUser")
    for deployment in of_kind(docs, "Deployment").values():
        service = service_of(deployment)
        pod = deployment["spec"]["template"]["spec"]
        values, secrets = pod_env(docs, pod)
        assert values["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", service
        assert values["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", service
        assert values["KAFKA_SASL_USERNAME"] == service and service in users, f"{service}: its own KafkaUser"
        assert secrets["KAFKA_SASL_PASSWORD"] == (service, "password"), f"{service}: the User Operator's Secret"
        assert values["KAFKA_BOOTSTRAP_SERVERS"] == f"{KAFKA_CLUSTER}-kafka-bootstrap.{KAFKA_NAMESPACE}.svc:9093"
        assert mounted_secret(pod, values["KAFKA_SSL_CAFILE"]) == (f"{KAFKA_CLUSTER}-kafka-ca", "ca.crt"), service
        assert values["DATABASE_SSL_MODE"] == "verify-full", service
        assert mounted_secret(pod, values["DATABASE_SSL_ROOT_CERT"]) == (f"{DB_CLUSTER}-ca", "ca.crt"), service
    job = one(docs, "Job", "clustergrants-migrate")["spec"]["template"]["spec"]
    values, _ = pod_env(docs, job)
    assert values["DATABASE_SSL_MODE"] == "verify-full"
    assert mounted_secret(job, values["DATABASE_SSL_ROOT_CERT"]) == (f"{DB_CLUSTER}-ca", "ca.crt")


def test_production_runs_a_kafka_whose_listener_requires_authentication() -> None:
    docs = render("overlays/production")
    kafka = one(docs, "Kafka", KAFKA_CLUSTER)["spec"]
    port = int(
        pod_env(docs, one(docs, "Deployment", "intake")["spec"]["template"]["spec"])[0]["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[
            1
        ]
    )
    listeners = {listener["port"]: listener for listener in kafka["kafka"]["listeners"]}
    assert listeners[port]["tls"] is True
    assert listeners[port]["authentication"]["type"] == "scram-sha-512"
    assert all("authentication" in listener for listener in listeners.values()), "no listener without authentication"
    assert kafka["kafka"]["authorization"]["type"] == "simple"
    assert kafka["kafka"]["config"]["allow.everyone.if.no.acl.found"] is False
    assert kafka["entityOperator"]["userOperator"]["watchedNamespace"] == APP_NAMESPACE
    assert kafka["entityOperator"]["topicOperator"]["watchedNamespace"] == KAFKA_NAMESPACE
    pools = of_kind(docs, "KafkaNodePool")
    assert pools and all(p["metadata"]["labels"]["strimzi.io/cluster"] == KAFKA_CLUSTER for p in pools.values())
    roles = {role for p in pools.values() for role in p["spec"]["roles"]}
    assert roles == {"broker", "controller"}
    brokers = sum(p["spec"]["replicas"] for p in pools.values() if "broker" in p["spec"]["roles"])
    assert brokers >= max(t["spec"]["replicas"] for t in of_kind(docs, "KafkaTopic").values())


# --- PostgreSQL (CloudNativePG) and the network ---------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_postgres_is_a_cloudnativepg_cluster(layer: str) -> None:
    docs = render(layer)
    clusters = of_kind(docs, "Cluster")
    assert set(clusters) == {DB_CLUSTER}
    spec = clusters[DB_CLUSTER]["spec"]
    assert clusters[DB_CLUSTER]["apiVersion"] == "postgresql.cnpg.io/v1"
    assert isinstance(spec["instances"], int)
    assert spec["instances"] >= 1
    assert spec["storage"]["size"]
    assert spec["bootstrap"]["initdb"]["database"]
    assert spec["bootstrap"]["initdb"]["owner"]
    assert spec.get("enableSuperuserAccess") is False
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(spec["resources"][part])
    if layer == "overlays/production":
        assert spec["instances"] >= 3
        assert spec["postgresql"]["synchronous"]["number"] >= 1


@pytest.mark.parametrize("layer", LAYERS)
def test_network_is_denied_by_default_and_opened_per_need(layer: str) -> None:
    docs = render(layer)
    policies = of_kind(docs, "NetworkPolicy")
    deny = [
        p
        for p in policies.values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"

    def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
        return policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()

    def ports(rules: list[dict[str, Any]]) -> set[int]:
        return {p["port"] for rule in rules for p in rule.get("ports", [])}

    def allowed(labels: dict[str, str], direction: str) -> set[int]:
        return {port for p in policies.values() if selects(p, labels) for port in ports(p["spec"].get(direction, []))}

    for service, deployment in of_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        kafka_port = int(pod_env(docs, deployment["spec"]["template"]["spec"])[0]["KAFKA_BOOTSTRAP_SERVERS"].rsplit(":", 1)[1])
        assert {53, 5432, kafka_port} <= allowed(labels, "egress"), f"{service}: DNS, PostgreSQL and Kafka egress"
        assert 8081 in allowed(labels, "ingress"), f"{service}: metrics scrape"
        if service == "intake":
            assert 8080 in allowed(labels, "ingress")
        else:
            assert 8080 not in allowed(labels, "ingress")
        if service == "notify":
            assert {587, 443} <= allowed(labels, "egress"), "notify: SMTP and webhooks"
    job_labels = one(docs, "Job", "clustergrants-migrate")["spec"]["template"]["metadata"]["labels"]
    assert {53, 5432} <= allowed(job_labels, "egress")
    scrape = [p for p in policies.values() if 8081 in ports(p["spec"].get("ingress", []))]
    assert scrape, "no policy admits the metrics scrape"
    for policy in scrape:
        for rule in policy["spec"]["ingress"]:
            sources = [peer["namespaceSelector"]["matchLabels"] for peer in rule.get("from", [])]
            assert sources == [{"kubernetes.io/metadata.name": "monitoring"}], "metrics only from namespace monitoring"


# --- the image ------------------------------------------------------------------------------------


def test_containerfile_builds_one_small_non_root_image() -> None:
    text = (ROOT / "deploy" / "Containerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2, "multi-stage: build, then runtime"
    assert "requirements.lock" in text
    assert "--only-binary=:all:" in text, "no compiling: wheels only"
    users = [line.split()[1].split(":")[0] for line in text.splitlines() if line.startswith("USER ")]
    assert users, "no USER"
    assert users[-1].isdigit(), "USER must be numeric (runAsNonRoot cannot check a name)"
    uid = int(users[-1])
    assert uid > 0, "non-root USER"
    assert text.count("ENTRYPOINT") == 0, "the manifests choose the command per service"
    for template in pod_templates(render("base")).values():
        assert template["spec"]["securityContext"]["runAsUser"] == uid


# --- eligibility: one Deployment per scheme family --------------------------------------------------


def test_the_family_deployments_are_generated_from_one_list() -> None:
    from deploy.k8s.eligibility_families import main

    assert main(["eligibility_families", "--check"]) == 0, "run `python -m deploy.k8s.eligibility_families`"


@pytest.mark.parametrize("layer", LAYERS)
def test_each_scheme_family_has_its_own_deployment_autoscaler_and_group(layer: str) -> None:
    """Every family exactly once, each Deployment limited to its family (so in its own consumer group),
    each with its own autoscaler and disruption budget selecting only its pods."""
    docs = render(layer)
    families = {}
    for name, deployment in deployments_of(docs, "eligibility").items():
        values, _ = pod_env(docs, deployment["spec"]["template"]["spec"])
        # (ignore below) the variable's name as pydantic-settings reads it, validated by the model
        settings = EligibilitySettings(**{"ELIGIBILITY_SCHEMES": values["ELIGIBILITY_SCHEMES"]})  # type: ignore[arg-type]
        (family,) = settings.families
        families[family] = name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["clustergrants.org/scheme-family"] == family
        assert deployment["spec"]["selector"]["matchLabels"]["clustergrants.org/scheme-family"] == family
        pdbs = [
            p
            for p in of_kind(docs, "PodDisruptionBudget").values()
            if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        assert len(pdbs) == 1, name
        assert name in {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    assert sorted(families) == sorted(FAMILIES)
    assert len({family_group("eligibility", parse_families(f)) for f in families}) == len(FAMILIES)
    # The metrics Service selects every family's pods.
    service = one(docs, "Service", "eligibility")
    for deployment in deployments_of(docs, "eligibility").values():
        assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
