"""Least privilege and the wiring of the issue-17 settings in compose and Kubernetes, read statically.

The gateway's S3 key is not MinIO's root account and may touch its one bucket only; objects are
encrypted at rest; the inference service's repository calls need a token both services are given;
the pseudonym key is apart from the token key; the gateway believes X-Forwarded-For from the
frontend's network only.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
import yaml
from compose_checks import environment, interpolate, placeholder_variables
from deploy_checks import COMPOSE_FILE, REPO_ROOT
from test_kubernetes import SecretRef, container_env, containers, kustomize_build, our_containers, workloads

API_DOCKERFILE = REPO_ROOT / "services/api/Dockerfile"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def setup_script(compose: dict) -> str:
    return interpolate(compose["services"]["minio-setup"]["command"][0], {})


def bucket_policy(script: str) -> dict:
    policy = re.search(r"<<POLICY\n(.*?)\n\s*POLICY", script, re.DOTALL)
    assert policy, "the setup job writes the gateway's policy"
    return json.loads(policy.group(1))


def test_compose_gives_the_gateway_a_key_for_its_bucket_only_never_root_nor_readwrite(compose):
    api = compose["services"]["api"]["environment"]
    minio = compose["services"]["minio"]["environment"]
    assert api["S3_ACCESS_KEY_ID"] != minio["MINIO_ROOT_USER"]
    script = setup_script(compose)
    assert "readwrite" not in script and "policy attach cxr cxr-gateway" in script
    policy = bucket_policy(script.replace("$S3_BUCKET", "cxr-images"))
    resources = {resource for statement in policy["Statement"] for resource in statement["Resource"]}
    assert resources == {"arn:aws:s3:::cxr-images", "arn:aws:s3:::cxr-images/*"}
    actions = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert all(not action.startswith("s3:*") and "Bucket" not in action.removeprefix("s3:GetBucketLocation")
               .removeprefix("s3:ListBucket") for action in actions)  # fmt: skip
    assert {"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"} <= actions


def test_compose_encrypts_objects_at_rest(compose):
    services = compose["services"]
    assert "MINIO_KMS_SECRET_KEY" in services["minio"]["environment"]
    assert 'mc encrypt set sse-s3 "cxr/$S3_BUCKET"' in setup_script(compose)
    assert services["api"]["environment"]["S3_SERVER_SIDE_ENCRYPTION"] == "AES256"


def test_compose_wires_the_repository_token_and_the_pseudonym_key(compose):
    services = compose["services"]
    api, inference = environment(services["api"]), environment(services["inference"])
    assert api["INFERENCE_REPOSITORY_TOKEN"] == inference["INFERENCE_REPOSITORY_TOKEN"] != ""
    assert api["DEIDENTIFICATION_UID_SECRET"] != api["JWT_SECRET"]
    migrate = environment(services["migrate"])
    assert migrate["DEIDENTIFICATION_UID_SECRET"] == api["DEIDENTIFICATION_UID_SECRET"]
    assert "FIRST_ADMIN_PASSWORD" in migrate and migrate["ENVIRONMENT"] == "production"


def test_compose_trusts_forwarded_addresses_from_the_frontends_network_only(compose):
    api = environment(compose["services"]["api"])
    (subnet,) = [
        interpolate(entry["subnet"], placeholder_variables()) for entry in compose["networks"]["edge"]["ipam"]["config"]
    ]
    assert api["TRUSTED_PROXIES"] == subnet
    assert ipaddress.ip_network(subnet).is_private
    edge_members = {name for name, service in compose["services"].items() if "edge" in service.get("networks", [])}
    assert edge_members == {"api", "frontend"}
    cmd = next(line for line in API_DOCKERFILE.read_text().splitlines() if line.startswith("CMD"))
    assert "--no-proxy-headers" in cmd, "uvicorn must not apply its own trusted-proxy list besides TRUSTED_PROXIES"


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return kustomize_build(REPO_ROOT / "k8s/base")


def container(manifests, name: str) -> dict:
    (found,) = [c for _, c in our_containers(manifests) if c["name"] == name]
    return found


def job_container(manifests, name: str) -> dict:
    (job,) = [m for m in manifests if m["kind"] == "Job" and m["metadata"]["name"] == name]
    (found,) = job["spec"]["template"]["spec"]["containers"]
    return found


def test_kubernetes_minio_root_is_not_the_gateways_key(base):
    (minio_container,) = [c for w in workloads(base) for c in containers(w) if c["name"] == "minio"]
    minio = container_env(base, minio_container)
    api = container_env(base, container(base, "api"))
    assert {minio["MINIO_ROOT_USER"].key, minio["MINIO_ROOT_PASSWORD"].key}.isdisjoint(
        {api["S3_ACCESS_KEY_ID"].key, api["S3_SECRET_ACCESS_KEY"].key}
    )
    setup = job_container(base, "minio-setup")
    setup_env = container_env(base, setup)
    assert setup_env["S3_ACCESS_KEY_ID"] == api["S3_ACCESS_KEY_ID"]
    script = setup["args"][0]
    assert "readwrite" not in script and "mc encrypt set sse-s3" in script
    policy = bucket_policy(script.replace("$S3_BUCKET", "cxr-images"))
    assert {r for s in policy["Statement"] for r in s["Resource"]} == {
        "arn:aws:s3:::cxr-images",
        "arn:aws:s3:::cxr-images/*",
    }
    assert isinstance(minio["MINIO_KMS_SECRET_KEY"], SecretRef)


@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_kubernetes_wires_the_repository_token_pseudonym_key_proxies_and_encryption(overlay):
    manifests = kustomize_build(REPO_ROOT / "k8s" / overlay)
    api = container_env(manifests, container(manifests, "api"))
    inference = container_env(manifests, container(manifests, "inference"))
    assert api["INFERENCE_REPOSITORY_TOKEN"] == inference["INFERENCE_REPOSITORY_TOKEN"]
    assert isinstance(api["INFERENCE_REPOSITORY_TOKEN"], SecretRef)
    assert api["DEIDENTIFICATION_UID_SECRET"] != api["JWT_SECRET"]
    migrate = container_env(manifests, job_container(manifests, "migrate"))
    assert migrate["DEIDENTIFICATION_UID_SECRET"] == api["DEIDENTIFICATION_UID_SECRET"]
    assert isinstance(migrate["FIRST_ADMIN_PASSWORD"], SecretRef)
    assert api["S3_SERVER_SIDE_ENCRYPTION"] == "AES256"
    assert all(ipaddress.ip_network(entry.strip()) for entry in api["TRUSTED_PROXIES"].split(","))
