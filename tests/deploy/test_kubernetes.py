"""Static checks of k8s/: schemas, kustomize structure, and consistency with the images and the code.

Checks taking the `manifests` fixture run twice: on the base as written and, where kubectl is
installed, on the production overlay as kustomize renders it.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
from deploy_checks import (
    DOCKERFILE_PATHS,
    K8S_BASE,
    PLACEHOLDER_SECRET,
    REPO_ROOT,
    SERVICE_IMAGES,
    Dockerfile,
    base_manifests,
    env_names_read_by,
    gateway_body_limit,
    health_paths,
    kustomization,
    kustomize_build,
    listening_port,
    load_yaml_documents,
    looks_secret,
    nginx_size_bytes,
    parse_image_reference,
    required_env_names,
    serves_get,
    settings_from_env,
    uid_of,
)

PRODUCTION = REPO_ROOT / "k8s/overlays/production"
SECRET_TEMPLATE = K8S_BASE / "secret.example.yaml"
KUBERNETES_VERSION = "1.30"  # the oldest minor we support; its schemas are the strictest about new fields
NAMESPACE = "cxr"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "CronJob")
OUR_CONTAINERS = SERVICE_IMAGES  # our containers, by name, and the image each runs
BACKENDS_ONLY_THE_API_REACHES = {
    "inference": {"api"},
    "postgres": {"api", "migrate", "reaper", "purge"},
    "minio": {"api", "reaper", "purge", "minio-setup"},
    "redis": {"api"},
}


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


@pytest.fixture(scope="module", params=["base", "production"])
def manifests(request) -> list[dict]:
    return base_manifests() if request.param == "base" else kustomize_build(PRODUCTION)


def all_of(manifests, kind: str) -> list[dict]:
    return [doc for doc in manifests if doc["kind"] == kind]


def one(manifests, kind: str, name: str) -> dict:
    (found,) = [doc for doc in all_of(manifests, kind) if doc["metadata"]["name"] == name]
    return found


def workloads(manifests) -> list[dict]:
    return [doc for doc in manifests if doc["kind"] in WORKLOAD_KINDS]


def pod_template(workload: dict) -> dict:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    return spec["template"]


def pod_spec(workload: dict) -> dict:
    return pod_template(workload)["spec"]


def pod_labels(workload: dict) -> dict:
    return pod_template(workload)["metadata"]["labels"]


def containers(workload: dict) -> list[dict]:
    spec = pod_spec(workload)
    return spec.get("initContainers", []) + spec["containers"]


def our_containers(manifests) -> list[tuple[dict, dict]]:
    """(workload, container) for every container running one of our images."""
    return [(w, c) for w in workloads(manifests) for c in containers(w) if c["name"] in OUR_CONTAINERS]


def container_env(manifests, container: dict) -> dict[str, str | SecretRef]:
    env: dict[str, str | SecretRef] = {}
    for source in container.get("envFrom", []):
        env.update(one(manifests, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        elif "configMapKeyRef" in variable["valueFrom"]:
            reference = variable["valueFrom"]["configMapKeyRef"]
            env[variable["name"]] = one(manifests, "ConfigMap", reference["name"])["data"][reference["key"]]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = SecretRef(reference["name"], reference["key"])
    return env


def with_placeholder_secrets(env: dict[str, str | SecretRef]) -> dict[str, str]:
    # one per secret: some must differ (JWT_SECRET, DEIDENTIFICATION_UID_SECRET)
    return {
        name: f"{PLACEHOLDER_SECRET}-{value.key}" if isinstance(value, SecretRef) else value
        for name, value in env.items()
    }


def selector_matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def selects(policy: dict, labels: dict) -> bool:
    return selector_matches(policy["spec"]["podSelector"], labels)


def app_name(workload: dict) -> str:
    return pod_labels(workload)["app.kubernetes.io/name"]


def container_port(container: dict, port: int | str) -> int:
    """A probe's or Service's port (number or name) as the container's port number."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            return declared["containerPort"]
    raise AssertionError(f"{container['name']} declares no port {port}")


def cpu_cores(quantity: str | int) -> float:
    quantity = str(quantity)
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def secret_template() -> dict:
    (secret,) = load_yaml_documents(SECRET_TEMPLATE)
    return secret


# --- files and schemas ----------------------------------------------------------------------


def test_manifests_match_the_kubernetes_schema(manifests):
    for doc in manifests:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {error.message} at {list(error.absolute_path)}")


def test_schema_validation_rejects_an_unknown_field():
    # guards the check above: strict mode must refuse a misspelt field
    deployment = one(base_manifests(), "Deployment", "api")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_base_kustomization_lists_every_manifest_but_the_secret_template():
    resources = kustomization(K8S_BASE)["resources"]
    assert all((K8S_BASE / resource).is_file() for resource in resources)
    on_disk = {path.name for path in K8S_BASE.glob("*.yaml")} - {"kustomization.yaml", SECRET_TEMPLATE.name}
    assert set(resources) == on_disk
    assert SECRET_TEMPLATE.name not in resources


def test_production_kustomization_references_existing_files():
    overlay = kustomization(PRODUCTION)
    for resource in overlay["resources"]:
        assert (PRODUCTION / resource / "kustomization.yaml").is_file() or (PRODUCTION / resource).is_file()
    patch_files = {patch["path"] for patch in overlay["patches"] if "path" in patch}
    assert all((PRODUCTION / path).is_file() for path in patch_files)
    assert {path.name for path in PRODUCTION.glob("*.yaml")} == patch_files | {"kustomization.yaml"}


def test_kustomize_renders_the_base_as_written():
    rendered = kustomize_build(K8S_BASE)
    identity = lambda docs: sorted((doc["kind"], doc["metadata"]["name"]) for doc in docs)  # noqa: E731
    assert identity(rendered) == identity(base_manifests())
    for doc in rendered:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_namespace_enforces_the_restricted_pod_security_standard():
    namespace = one(base_manifests(), "Namespace", NAMESPACE)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


# --- secrets --------------------------------------------------------------------------------


def test_secret_template_holds_no_values():
    secret = secret_template()
    kubernetes_validate.validate(secret, KUBERNETES_VERSION, strict=True)
    assert "data" not in secret
    assert secret["stringData"] and all(value == "" for value in secret["stringData"].values())


def test_no_secret_value_is_deployed(manifests):
    assert not all_of(manifests, "Secret")
    for configmap in all_of(manifests, "ConfigMap"):
        assert not [key for key in configmap.get("data", {}) if looks_secret(key)], configmap["metadata"]["name"]
    for workload in workloads(manifests):
        for container in containers(workload):
            for variable in container.get("env", []):
                if looks_secret(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), f"{container['name']}: {variable['name']}"


def test_config_and_secret_references_exist(manifests):
    template = secret_template()
    for workload in workloads(manifests):
        for container in containers(workload):
            for value in container_env(manifests, container).values():  # a missing ConfigMap fails in one()
                if isinstance(value, SecretRef):
                    assert value.name == template["metadata"]["name"]
                    assert value.key in template["stringData"], value


@pytest.mark.parametrize("name", sorted(OUR_CONTAINERS))
def test_services_get_every_required_setting(manifests, name):
    (container,) = [c for _, c in our_containers(manifests) if c["name"] == name]
    env = container_env(manifests, container)
    image_env = Dockerfile(DOCKERFILE_PATHS[OUR_CONTAINERS[name]]).env
    missing = required_env_names(name) - set(env) - set(image_env)
    assert not missing, f"{name} is not given {missing}"
    not_from_the_secret = {v for v in required_env_names(name) if looks_secret(v) and not isinstance(env[v], SecretRef)}
    assert not not_from_the_secret, f"{name} does not take {not_from_the_secret} from the Secret"


# --- pods -----------------------------------------------------------------------------------


def test_pods_are_hardened(manifests):
    for workload in workloads(manifests):
        name, spec = workload["metadata"]["name"], pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"] and "add" not in context["capabilities"], name


def test_containers_have_resource_requests_and_limits(manifests):
    for workload in workloads(manifests):
        for container in containers(workload):
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][bound]), f"{container['name']} {bound}"
            cpu = container["resources"]
            assert cpu_cores(cpu["requests"]["cpu"]) <= cpu_cores(cpu["limits"]["cpu"]), container["name"]


def test_images_are_pinned(manifests):
    for workload in workloads(manifests):
        for container in containers(workload):
            repository, tag = parse_image_reference(container["image"])
            assert tag and tag != "latest" and any(ch.isdigit() for ch in tag), container["image"]


def test_our_containers_run_the_matching_image_as_its_user(manifests):
    for workload, container in our_containers(manifests):
        image = OUR_CONTAINERS[container["name"]]
        repository, _ = parse_image_reference(container["image"])
        assert repository.endswith(f"cxr/{image}"), container["image"]
        user = Dockerfile(DOCKERFILE_PATHS[image]).user
        assert pod_spec(workload)["securityContext"]["runAsUser"] == uid_of(user)


def test_probes_use_real_routes_on_the_serving_port(manifests):
    for workload, container in our_containers(manifests):
        if workload["kind"] != "Deployment":
            continue
        image = OUR_CONTAINERS[container["name"]]
        assert "readinessProbe" in container and "livenessProbe" in container, container["name"]
        for probe_kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe_kind in container:
                probe = container[probe_kind]["httpGet"]
                assert serves_get(image, probe["path"]), f"{container['name']} {probe_kind}: {probe['path']}"
                assert container_port(container, probe["port"]) == listening_port(image)
    inference = one(manifests, "Deployment", "inference")["spec"]["template"]["spec"]["containers"][0]
    assert inference["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"  # ready = models warmed up


def test_every_health_endpoint_is_probed_for_its_purpose(manifests):
    for workload, container in our_containers(manifests):
        if workload["kind"] == "Deployment":
            paths = health_paths(OUR_CONTAINERS[container["name"]])
            probed = {kind: container[f"{kind}Probe"]["httpGet"]["path"] for kind in ("liveness", "readiness")}
            assert probed == {"liveness": paths["live"], "readiness": paths["ready"]}, container["name"]


def test_servers_keep_the_image_command_and_declare_its_port(manifests):
    for workload, container in our_containers(manifests):
        if workload["kind"] == "Deployment":
            # the port is checked against the image's CMD: a command here would bypass that check
            assert "command" not in container and "args" not in container, container["name"]
            ports = [port["containerPort"] for port in container["ports"]]
            assert ports == [listening_port(OUR_CONTAINERS[container["name"]])], container["name"]


def test_services_select_pods_and_target_their_ports(manifests):
    for service in all_of(manifests, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        selected = [w for w in workloads(manifests) if selector_matches(selector, pod_labels(w))]
        assert len(selected) == 1, f"Service {service['metadata']['name']} selects {len(selected)} workloads"
        assert selected[0]["kind"] != "Job", f"Service {service['metadata']['name']} sends traffic to a Job"
        (container,) = containers(selected[0])
        for port in service["spec"]["ports"]:
            target = container_port(container, port["targetPort"])
            if container["name"] in OUR_CONTAINERS:
                assert target == listening_port(OUR_CONTAINERS[container["name"]]), service["metadata"]["name"]


def test_container_env_is_read_by_the_service(manifests):
    for _, container in our_containers(manifests):
        unknown = set(container_env(manifests, container)) - env_names_read_by(container["name"])
        assert not unknown, f"{container['name']} does not read {unknown}"


def test_gateway_environment_is_a_valid_production_configuration(manifests):
    (container,) = [c for _, c in our_containers(manifests) if c["name"] == "api"]
    settings = settings_from_env("api", with_placeholder_secrets(container_env(manifests, container)))
    assert settings.environment == "production" and settings.storage_backend == "s3"


def test_migration_gets_the_database_and_the_first_administrator(manifests):
    (container,) = [c for _, c in our_containers(manifests) if c["name"] == "migrate"]
    settings = settings_from_env("migrate", with_placeholder_secrets(container_env(manifests, container)))
    assert settings.database_url.startswith("postgresql+psycopg://") and settings.first_admin_password


def test_inference_threads_fit_the_cpu_limit(manifests):
    (container,) = [c for _, c in our_containers(manifests) if c["name"] == "inference"]
    settings = settings_from_env("inference", with_placeholder_secrets(container_env(manifests, container)))
    assert 1 <= settings.intra_op_threads <= cpu_cores(container["resources"]["limits"]["cpu"])


def test_in_cluster_urls_point_at_services_and_their_ports(manifests):
    services = {s["metadata"]["name"]: [p["port"] for p in s["spec"]["ports"]] for s in all_of(manifests, "Service")}
    urls = {
        name: value
        for _, container in our_containers(manifests)
        for name, value in container_env(manifests, container).items()
        if name in ("DATABASE_URL", "INFERENCE_URL", "S3_ENDPOINT_URL", "CXR_API_UPSTREAM", "REDIS_URL")
    }
    assert "." not in urlsplit(urls["INFERENCE_URL"]).hostname, "inference is always in the cluster"
    for name, url in urls.items():
        url = urlsplit(url)
        if "." not in url.hostname:  # a Service in this namespace
            assert url.port in services.get(url.hostname, []), f"{name}: no Service {url.hostname}:{url.port}"
    assert urlsplit(urls["DATABASE_URL"]).password is None, "the password belongs in PGPASSWORD"
    assert urlsplit(urls["INFERENCE_URL"]).port == listening_port("inference")
    assert urlsplit(urls["CXR_API_UPSTREAM"]).port == listening_port("api")


# --- scaling, jobs, network -------------------------------------------------------------------


def test_inference_and_api_scale_automatically_and_survive_drains(manifests):
    hpas = [hpa["spec"] for hpa in all_of(manifests, "HorizontalPodAutoscaler")]
    assert all(hpa["scaleTargetRef"]["kind"] == "Deployment" for hpa in hpas)
    autoscalers = {hpa["scaleTargetRef"]["name"]: hpa for hpa in hpas}
    budgets = all_of(manifests, "PodDisruptionBudget")
    for name in ("inference", "api", "frontend"):
        deployment = one(manifests, "Deployment", name)
        if name in ("inference", "api"):
            assert autoscalers[name]["minReplicas"] >= 2
            assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
            replicas = autoscalers[name]["minReplicas"]
        else:
            replicas = deployment["spec"]["replicas"]
        (budget,) = [b for b in budgets if selector_matches(b["spec"]["selector"], pod_labels(deployment))]
        assert 1 <= budget["spec"]["minAvailable"] < replicas, f"{name}: a drain could never evict a pod"
    assert set(autoscalers) == {"inference", "api"}


def test_migration_job_runs_prestart_with_the_gateway_image(manifests):
    job = one(manifests, "Job", "migrate")
    (container,) = containers(job)
    assert container["command"] == ["python", "-m", "gateway.prestart"]
    assert importlib.util.find_spec("gateway.prestart") is not None
    (api,) = containers(one(manifests, "Deployment", "api"))
    assert container["image"] == api["image"]
    assert pod_spec(job)["restartPolicy"] == "Never" and job["spec"]["backoffLimit"] >= 1


def test_orphan_sweep_runs_the_reaper_hourly_with_the_gateway_image_and_no_token_secret(manifests):
    cronjob = one(manifests, "CronJob", "reaper")
    (container,) = containers(cronjob)
    assert container["command"][:3] == ["python", "-m", "gateway.reaper"]
    assert importlib.util.find_spec("gateway.reaper") is not None
    (api,) = containers(one(manifests, "Deployment", "api"))
    assert container["image"] == api["image"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and pod_spec(cronjob)["restartPolicy"] == "Never"
    env = container_env(manifests, container)
    assert "JWT_SECRET" not in env
    settings = settings_from_env("reaper", with_placeholder_secrets(env))
    assert settings.storage_backend == "s3" and settings.database_url.startswith("postgresql+psycopg://")


def test_retention_purge_runs_daily_with_the_gateway_image_its_ages_and_no_token_secret(manifests):
    cronjob = one(manifests, "CronJob", "purge")
    (container,) = containers(cronjob)
    assert container["command"] == ["python", "-m", "gateway.purge"]
    assert importlib.util.find_spec("gateway.purge") is not None
    (api,) = containers(one(manifests, "Deployment", "api"))
    assert container["image"] == api["image"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid" and pod_spec(cronjob)["restartPolicy"] == "Never"
    minute, hour, *every_day = cronjob["spec"]["schedule"].split()
    assert minute.isdigit() and hour.isdigit() and every_day == ["*", "*", "*"]
    env = container_env(manifests, container)
    assert "JWT_SECRET" not in env
    (reaper,) = containers(one(manifests, "CronJob", "reaper"))
    assert set(env) - {"RETENTION_DAYS", "AUDIT_RETENTION_DAYS"} == set(container_env(manifests, reaper))
    settings = settings_from_env("purge", with_placeholder_secrets(env))
    assert settings.storage_backend == "s3" and settings.database_url.startswith("postgresql+psycopg://")
    assert settings.retention_days == settings.audit_days == 0, "off until the operator sets the retention"


def test_every_gateway_replica_shares_one_redis_only_the_gateway_reaches(manifests):
    (api,) = [c for _, c in our_containers(manifests) if c["name"] == "api"]
    env = container_env(manifests, api)
    url = urlsplit(env["REDIS_URL"])
    assert (url.scheme, url.hostname, url.password) == ("redis", "redis", None), "the password is in the Secret"
    assert env["REDIS_PASSWORD"] == SecretRef("cxr-secrets", "redis-password")
    settings = settings_from_env("api", with_placeholder_secrets(env))
    assert settings.redis_url == env["REDIS_URL"] and settings.redis_password

    redis = one(manifests, "Deployment", "redis")
    (container,) = containers(redis)
    assert redis["spec"]["replicas"] == 1
    assert container_port(container, "redis") == url.port == 6379
    server_env = container_env(manifests, container)
    assert server_env["REDIS_PASSWORD"] == env["REDIS_PASSWORD"]
    args = container["args"]
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"  # expanded by Kubernetes
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert "volumeClaimTemplates" not in redis["spec"], "counters expire within minutes: nothing to keep"
    assert '-a "$REDIS_PASSWORD" ping' in " ".join(container["readinessProbe"]["exec"]["command"])

    (policy,) = [p for p in all_of(manifests, "NetworkPolicy") if p["metadata"]["name"] == "redis-from-api"]
    assert selects(policy, pod_labels(redis))
    (budget,) = [
        b
        for b in all_of(manifests, "PodDisruptionBudget")
        if selector_matches(b["spec"]["selector"], pod_labels(redis))
    ]
    assert budget["spec"] == budget["spec"] | {"maxUnavailable": 1}, "a drain may evict it: the gateway falls back"


def test_network_policies_let_only_the_api_reach_the_backends(manifests):
    policies = all_of(manifests, "NetworkPolicy")
    (default_deny,) = [p for p in policies if p["spec"]["podSelector"] == {}]
    assert default_deny["spec"]["policyTypes"] == ["Ingress"] and not default_deny["spec"].get("ingress")
    names = {app_name(w): w for w in workloads(manifests)}
    for backend, allowed in BACKENDS_ONLY_THE_API_REACHES.items():
        if backend not in names:  # replaced by a managed service
            continue
        labels = pod_labels(names[backend])
        (backend_container,) = containers(names[backend])
        selecting = [policy for policy in policies if policy["spec"]["podSelector"] and selects(policy, labels)]
        assert selecting, f"nothing opens {backend}"
        for policy in selecting:
            for rule in policy["spec"]["ingress"]:
                for peer in rule["from"]:
                    assert set(peer) == {"podSelector"}, f"{backend}: {peer} reaches beyond pods in this namespace"
                    peers = {n for n, w in names.items() if selector_matches(peer["podSelector"], pod_labels(w))}
                    assert peers and peers <= allowed, f"{backend} is open to {peers}"
                ports = [port["containerPort"] for port in backend_container["ports"]]
                assert [port["port"] for port in rule["ports"]] == ports


def test_selector_matching_handles_expressions():
    # guards the network policy check above
    selector = {"matchExpressions": [{"key": "app", "operator": "In", "values": ["api", "migrate"]}]}
    assert selector_matches(selector, {"app": "migrate"}) and not selector_matches(selector, {"app": "frontend"})
    assert not selector_matches({"matchLabels": {"app": "api"}}, {"app": "frontend"})


def test_ingress_sends_everything_to_the_frontend_and_lets_uploads_through(manifests):
    ingress = one(manifests, "Ingress", "cxr")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    frontend_service = one(manifests, "Service", backend["name"])
    assert backend["name"] == "frontend"
    assert backend["port"]["name"] in [port["name"] for port in frontend_service["spec"]["ports"]]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]

    api_config = one(manifests, "ConfigMap", "api-config")["data"]
    frontend_config = one(manifests, "ConfigMap", "frontend-config")["data"]
    upload_limit = gateway_body_limit(int(api_config["MAX_UPLOAD_BYTES"]))
    ingress_limit = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert nginx_size_bytes(ingress_limit) >= upload_limit
    assert nginx_size_bytes(frontend_config["CXR_CLIENT_MAX_BODY_SIZE"]) >= upload_limit


def test_sign_ins_are_rate_limited_per_address_at_the_ingress(manifests):
    ingress, everything = one(manifests, "Ingress", "cxr-sign-in"), one(manifests, "Ingress", "cxr")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/api/auth/", "Prefix")  # longer than "/": it wins
    assert path["backend"] == everything["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert (
        rule["host"] == everything["spec"]["rules"][0]["host"] and ingress["spec"]["tls"] == everything["spec"]["tls"]
    )
    annotations = ingress["metadata"]["annotations"]
    assert 0 < int(annotations["nginx.ingress.kubernetes.io/limit-rpm"]) <= 60


# --- per variant ----------------------------------------------------------------------------


def test_in_cluster_stores_keep_their_data_on_persistent_volumes():
    manifests = base_manifests()
    for name, data_path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        statefulset = one(manifests, "StatefulSet", name)
        (claim,) = statefulset["spec"]["volumeClaimTemplates"]
        (container,) = containers(statefulset)
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert mounts[data_path] == claim["metadata"]["name"]
        assert one(manifests, "Service", name)


def test_production_uses_managed_stores_and_released_images():
    manifests = kustomize_build(PRODUCTION)
    assert not all_of(manifests, "StatefulSet")
    api_config = one(manifests, "ConfigMap", "api-config")["data"]
    assert "." in urlsplit(api_config["DATABASE_URL"]).hostname
    assert urlsplit(api_config["S3_ENDPOINT_URL"]).scheme == "https"
    for _, container in our_containers(manifests):
        repository, _ = parse_image_reference(container["image"])
        assert "." in repository.split("/")[0], f"{container['image']} is not from a registry"
    for name in ("cxr", "cxr-sign-in"):
        assert one(manifests, "Ingress", name)["spec"]["rules"][0]["host"] != "cxr.example.com"
