"""k8s/overlays/kserve (inference as a KServe InferenceService) and k8s/overlays/kserve-canary.

The InferenceService is read strictly against the KServe SDK's own V1beta1InferenceService model
(kserve_sdk.py: the SDK's classes when importable, else their extract from the kserve 0.21.0
wheel), its pod part against Kubernetes' schema, and its fields against the code: our inference
image and port, the v2 protocol, readiness on /v2/health/ready, concurrency autoscaling, a canary
split in the canary overlay. The rest of the overlay: the Deployment's objects gone, the gateway
pointed at the InferenceService's URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from deploy_checks import (
    DOCKERFILE_PATHS,
    PLACEHOLDER_SECRET,
    REPO_ROOT,
    Dockerfile,
    env_names_read_by,
    kustomize_build,
    listening_port,
    serves_get,
    settings_from_env,
    uid_of,
)
from kserve_sdk import POD_SPEC_CLASS, ROOT_CLASS, Kubernetes, deserialize, live_sdk, load_extract

KSERVE = REPO_ROOT / "k8s/overlays/kserve"
CANARY = REPO_ROOT / "k8s/overlays/kserve-canary"
PRODUCTION = REPO_ROOT / "k8s/overlays/production"
KUBERNETES_VERSION = "1.30"
NAMESPACE = "cxr"
KSERVE_CONTAINER = "kserve-container"  # the name KServe looks for in a custom predictor
PROTOCOL_MARKER = "PROTOCOL"  # KServe reads a custom predictor's protocol from this variable


@pytest.fixture(scope="module")
def kserve() -> list[dict]:
    return kustomize_build(KSERVE)


@pytest.fixture(scope="module")
def canary() -> list[dict]:
    return kustomize_build(CANARY)


@pytest.fixture(scope="module")
def production() -> list[dict]:
    return kustomize_build(PRODUCTION)


def one(manifests, kind, name) -> dict:
    (found,) = [doc for doc in manifests if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def inference_service(manifests) -> dict:
    (found,) = [doc for doc in manifests if doc["kind"] == "InferenceService"]
    return found


@pytest.fixture(scope="module")
def sdk_classes():
    live = live_sdk()
    return (live or load_extract())[1]


def as_model(isvc: dict, classes) -> dict:
    """The InferenceService as the SDK's V1beta1InferenceService (python attribute names)."""
    return deserialize(isvc, ROOT_CLASS, classes)


def test_overlays_reference_every_file_they_hold():
    for overlay in (KSERVE, CANARY):
        kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
        local = [r for r in kustomization["resources"] if not r.startswith("..")]
        local += [patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
        assert all((overlay / name).is_file() for name in local)
        assert {path.name for path in overlay.iterdir()} == {"kustomization.yaml", *local}, overlay.name


# --- against the SDK's model and Kubernetes' schema ----------------------------------------


def test_extract_is_of_the_sdk_version_named():
    version, classes = load_extract()
    assert version == "0.21.0" and ROOT_CLASS in classes and POD_SPEC_CLASS in classes


def test_extract_matches_the_installed_sdk():
    live = live_sdk()
    if live is None:
        pytest.skip("the kserve SDK is not importable here (its protobuf<7 conflicts with the pinned protobuf)")
    _, extract = load_extract()
    for name, model in extract.items():
        assert live[1][name] == model, name


@pytest.mark.parametrize("overlay", ["kserve", "canary"])
def test_inference_service_is_a_valid_sdk_model(overlay, kserve, canary, sdk_classes):
    isvc = inference_service(kserve if overlay == "kserve" else canary)
    model = as_model(isvc, sdk_classes)
    assert model["api_version"] == "serving.kserve.io/v1beta1" and model["kind"] == "InferenceService"
    assert set(model["spec"]) == {"predictor"}


def construct(value, type_string: str, classes, models):
    """The SDK's model objects built from the deserialized manifest (kubernetes' types stay dicts)."""
    if isinstance(value, Kubernetes):
        return value.value
    if type_string.startswith("list["):
        return [construct(item, type_string[5:-1], classes, models) for item in value]
    if type_string.startswith("dict("):
        inner = type_string[5:-1].split(", ", 1)[1]
        return {key: construct(item, inner, classes, models) for key, item in value.items()}
    if type_string not in classes:
        return value
    types = classes[type_string].openapi_types
    return getattr(models, type_string)(**{k: construct(v, types[k], classes, models) for k, v in value.items()})


def test_the_installed_sdk_builds_its_v1beta1_inference_service(kserve, canary):
    live = live_sdk()
    if live is None:
        pytest.skip("the kserve SDK is not importable here (its protobuf<7 conflicts with the pinned protobuf)")
    from kserve import V1beta1InferenceService, models

    for manifests in (kserve, canary):
        isvc = construct(as_model(inference_service(manifests), live[1]), ROOT_CLASS, live[1], models)
        assert isinstance(isvc, V1beta1InferenceService)
        assert isvc.spec.predictor.scale_metric == "concurrency"


def test_the_sdk_model_refuses_a_misspelt_field(kserve, sdk_classes):
    # guards the check above: unlike the SDK's own deserializer, unknown fields fail
    isvc = inference_service(kserve)
    isvc = {**isvc, "spec": {"predictor": {**isvc["spec"]["predictor"], "scaleMetrics": "concurrency"}}}
    with pytest.raises(AssertionError, match="scaleMetrics"):
        as_model(isvc, sdk_classes)


def test_predictor_pod_matches_the_kubernetes_schema(kserve, sdk_classes):
    predictor = inference_service(kserve)["spec"]["predictor"]
    pod_fields = set(sdk_classes[POD_SPEC_CLASS].attribute_map.values())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"}}
    pod["spec"] = {key: value for key, value in predictor.items() if key in pod_fields}
    try:
        kubernetes_validate.validate(pod, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"predictor: {error.message} at {list(error.absolute_path)}")
    extension = set(predictor) - pod_fields
    assert extension == {"minReplicas", "maxReplicas", "scaleMetric", "scaleTarget", "timeout", "labels"}


# --- the fields, against the code ----------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor(kserve, sdk_classes) -> dict:
    return as_model(inference_service(kserve), sdk_classes)["spec"]["predictor"]


def container(predictor) -> dict:
    (found,) = [
        c.value for c in predictor["containers"] if isinstance(c, Kubernetes) and c.value["name"] == KSERVE_CONTAINER
    ]
    return found


def test_custom_predictor_runs_our_released_inference_image(predictor, production):
    (deployment_container,) = one(production, "Deployment", "inference")["spec"]["template"]["spec"]["containers"]
    assert container(predictor)["image"] == deployment_container["image"]
    assert len(predictor["containers"]) == 1 and "model" not in predictor, "a custom predictor, not a runtime"


def test_serves_the_v2_protocol_on_the_image_port(predictor):
    serving = container(predictor)
    (port,) = serving["ports"]
    assert port["containerPort"] == listening_port("inference")
    assert port["name"] in ("http1", "h2c"), "Knative's port names"
    env = {variable["name"]: variable.get("value") for variable in serving["env"]}
    assert env[PROTOCOL_MARKER] == "v2"
    # everything else it sets is read by the service
    assert set(env) - {PROTOCOL_MARKER} <= env_names_read_by("inference")


def test_readiness_waits_for_the_models(predictor):
    serving = container(predictor)
    for probe, path in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
        http = serving[probe]["httpGet"]
        assert http["path"] == path and serves_get("inference", path), probe
        assert http.get("port", listening_port("inference")) == listening_port("inference"), (
            "Knative needs the container's port"
        )


def test_takes_the_inference_settings(predictor, kserve):
    (source,) = container(predictor)["envFrom"]
    config = one(kserve, "ConfigMap", source["configMapRef"]["name"])
    settings = settings_from_env("inference", config["data"])
    assert settings.intra_op_threads <= float(container(predictor)["resources"]["limits"]["cpu"])


def test_autoscales_on_concurrency_and_never_to_zero(predictor, kserve):
    isvc = inference_service(kserve)
    # concurrency autoscaling and traffic splitting between revisions need Knative mode
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("Knative", "Serverless")
    assert predictor["scale_metric"] == "concurrency" and predictor["scale_target"] >= 1
    assert 2 <= predictor["min_replicas"] <= predictor["max_replicas"]
    assert "canary_traffic_percent" not in predictor, "the main overlay sends all traffic to the latest revision"


def test_predictor_is_hardened_for_the_restricted_namespace(predictor):
    serving = container(predictor)
    context = serving["securityContext"]
    assert context["runAsNonRoot"] is True and context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True and context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert context["runAsUser"] == uid_of(Dockerfile(DOCKERFILE_PATHS["inference"]).user)
    assert predictor["automount_service_account_token"] is False
    mounts = {mount["mountPath"]: mount["name"] for mount in serving["volumeMounts"]}
    (tmp,) = [volume.value for volume in predictor["volumes"] if volume.value["name"] == mounts["/tmp"]]
    assert "emptyDir" in tmp
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(serving["resources"][bound])


# --- the rest of the overlay -------------------------------------------------------------------------


def test_the_deployment_and_its_objects_are_gone(kserve):
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in kserve}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert (kind, "inference") not in names, kind
    assert ("NetworkPolicy", "inference-from-api") not in names
    assert ("ConfigMap", "inference-config") in names


def test_the_gateway_calls_the_inference_service(kserve):
    isvc = inference_service(kserve)
    # only the gateway calls inference: not published through the cluster's external ingress
    assert isvc["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    url = urlsplit(one(kserve, "ConfigMap", "api-config")["data"]["INFERENCE_URL"])
    assert url.hostname == f"{isvc['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    assert url.scheme == "http" and url.port in (None, 80) and url.path in ("", "/")
    (api,) = one(kserve, "Deployment", "api")["spec"]["template"]["spec"]["containers"]
    env = dict(one(kserve, "ConfigMap", "api-config")["data"])
    env |= {variable["name"]: f"{PLACEHOLDER_SECRET}-{variable['name']}" for variable in api.get("env", [])}
    settings = settings_from_env("api", env)
    assert settings.inference_url.rstrip("/") == f"http://{url.hostname}"


def test_knative_may_reach_the_predictor_pods(kserve, predictor):
    policy = one(kserve, "NetworkPolicy", "inference-from-knative")
    kubernetes_validate.validate(policy, KUBERNETES_VERSION, strict=True)
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= predictor["labels"].items()
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert expression["key"] == "kubernetes.io/metadata.name" and "knative-serving" in expression["values"]


def test_everything_but_the_inference_service_matches_the_kubernetes_schema(kserve):
    for doc in kserve:
        if doc["kind"] != "InferenceService":
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == NAMESPACE


# --- the canary ----------------------------------------------------------------------------------------


def test_canary_sends_part_of_the_traffic_to_a_new_image(kserve, canary, sdk_classes):
    stable = as_model(inference_service(kserve), sdk_classes)["spec"]["predictor"]
    trial = as_model(inference_service(canary), sdk_classes)["spec"]["predictor"]
    assert 0 < trial["canary_traffic_percent"] < 100
    old, new = container(stable)["image"], container(trial)["image"]
    assert old.rsplit(":", 1)[0] == new.rsplit(":", 1)[0] and old != new, "same repository, another tag"


def test_canary_changes_nothing_else(kserve, canary):
    def without_canary(manifests):
        docs = []
        for doc in manifests:
            if doc["kind"] == "InferenceService":
                predictor = {k: v for k, v in doc["spec"]["predictor"].items() if k != "canaryTrafficPercent"}
                predictor["containers"] = [
                    {k: v for k, v in c.items() if k != "image"} for c in predictor["containers"]
                ]
                doc = {**doc, "spec": {**doc["spec"], "predictor": predictor}}
            docs.append(doc)
        return sorted(docs, key=lambda d: (d["kind"], d["metadata"]["name"]))

    assert without_canary(kserve) == without_canary(canary)
