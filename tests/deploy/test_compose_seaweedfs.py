"""deploy/seaweedfs/compose.yml: SeaweedFS instead of MinIO, checked the way docker-compose.yml is.

The override is merged into docker-compose.yml as `docker compose -f ... -f ...` does (the
compose-spec merge rules, with its !override tag), then: the specification's schema, the store
present, healthy before the gateway starts and on the internal network only, the gateway's S3_*
settings pointing at it with the key pair and bucket SeaweedFS creates, MinIO and its setup step
out of the way, and `docker compose config` on both files where the compose plugin is installed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from urllib.parse import urlsplit

import pytest
from compose_checks import (
    SEAWEEDFS_OVERRIDE,
    Override,
    active_services,
    compose_schema_errors,
    environment,
    load_compose,
    load_compose_file,
    merge,
)
from deploy_checks import COMPOSE_FILE, read_env_example, settings_from_env
from test_compose import docker_compose_available

S3_PORT = 8333


@pytest.fixture(scope="module")
def model() -> dict:
    return load_compose(SEAWEEDFS_OVERRIDE)


@pytest.fixture(scope="module")
def services(model) -> dict[str, dict]:
    return active_services(model)


def test_the_folder_holds_only_the_checked_override():
    assert [path.name for path in SEAWEEDFS_OVERRIDE.parent.iterdir()] == [SEAWEEDFS_OVERRIDE.name]


def test_merged_file_matches_the_compose_specification(model):
    assert not compose_schema_errors(model)


def test_seaweedfs_replaces_minio(services):
    assert "seaweedfs" in services
    assert "minio" not in services and "minio-setup" not in services
    assert set(services) == {"postgres", "seaweedfs", "redis", "migrate", "inference", "api", "frontend"}


def test_nothing_that_runs_waits_for_a_service_that_does_not(services):
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in services, f"{name} waits for {dependency}, which this file does not start"
    # the orphan sweep and the retention purge (profile maintenance) too
    for name in ("reaper", "purge"):
        maintenance = load_compose(SEAWEEDFS_OVERRIDE)["services"][name]
        assert set(maintenance["depends_on"]) == {"postgres", "seaweedfs"}, name


def test_the_gateway_waits_for_a_healthy_store(services):
    assert services["api"]["depends_on"]["seaweedfs"] == {"condition": "service_healthy"}
    check = services["seaweedfs"]["healthcheck"]
    assert check["test"][0] == "CMD" and not check.get("disable")
    url = urlsplit(check["test"][-1])
    assert (url.hostname, url.port, url.path) == ("127.0.0.1", S3_PORT, "/healthz")


def test_the_gateway_uses_the_key_and_bucket_seaweedfs_creates(model):
    store = environment(model["services"]["seaweedfs"])
    for service in ("api", "reaper", "purge"):
        env = environment(model["services"][service])
        endpoint = urlsplit(env["S3_ENDPOINT_URL"])
        assert (endpoint.hostname, endpoint.port) == ("seaweedfs", S3_PORT), service
        assert env["S3_ACCESS_KEY_ID"] == store["AWS_ACCESS_KEY_ID"]
        assert env["S3_SECRET_ACCESS_KEY"] == store["AWS_SECRET_ACCESS_KEY"]
        assert env["S3_BUCKET"] == store["S3_BUCKET"]
    assert "-ip.bind=0.0.0.0" in model["services"]["seaweedfs"]["command"], "the health check calls 127.0.0.1"


def test_gateway_settings_are_a_valid_production_configuration(model):
    settings = settings_from_env("api", environment(model["services"]["api"]))
    assert settings.storage_backend == "s3" and settings.s3_endpoint_url == f"http://seaweedfs:{S3_PORT}"
    for name in ("reaper", "purge"):
        maintenance = settings_from_env(name, environment(model["services"][name]))
        assert maintenance.s3_endpoint_url == settings.s3_endpoint_url, name


def test_store_keeps_its_data_in_a_named_volume(model):
    volume, _, path = model["services"]["seaweedfs"]["volumes"][0].partition(":")
    assert path == "/data" and volume in model["volumes"]
    assert "-dir=/data" in model["services"]["seaweedfs"]["command"]


def test_store_is_hardened_and_internal(model, services):
    store = services["seaweedfs"]
    assert store["read_only"] is True and store["cap_drop"] == ["ALL"] and "cap_add" not in store
    assert "no-new-privileges:true" in store["security_opt"] and "/tmp" in store["tmpfs"]
    assert store["networks"] == ["backend"] and model["networks"]["backend"]["internal"] is True
    assert not store.get("ports")


def test_secrets_come_only_from_env_without_defaults():
    raw = load_compose_file(SEAWEEDFS_OVERRIDE)["services"]["seaweedfs"]["environment"]
    assert raw["AWS_ACCESS_KEY_ID"] == "${S3_ACCESS_KEY_ID:?set S3_ACCESS_KEY_ID in .env}"
    assert raw["AWS_SECRET_ACCESS_KEY"] == "${S3_SECRET_ACCESS_KEY:?set S3_SECRET_ACCESS_KEY in .env}"
    with pytest.raises(KeyError, match="S3_SECRET_ACCESS_KEY"):
        environment({"environment": raw}, {"S3_ACCESS_KEY_ID": "set"})


def test_dependencies_are_replaced_not_merged():
    # guards the merge: without !override compose would keep the api waiting for minio
    raw = load_compose_file(SEAWEEDFS_OVERRIDE)["services"]
    assert all(isinstance(raw[name]["depends_on"], Override) for name in ("api", "reaper", "purge"))
    merged = merge({"a": {"depends_on": {"minio": {}}}}, {"a": {"depends_on": {"seaweedfs": {}}}})
    assert set(merged["a"]["depends_on"]) == {"minio", "seaweedfs"}
    replaced = merge({"a": {"depends_on": {"minio": {}}}}, {"a": {"depends_on": Override({"seaweedfs": {}})}})
    assert set(replaced["a"]["depends_on"]) == {"seaweedfs"}


def test_docker_compose_accepts_both_files(tmp_path):
    if not docker_compose_available():
        pytest.skip("the docker compose plugin is not installed (`docker compose version` fails)")
    variables = {name: value or secrets.token_hex(10) for name, value in read_env_example().items()}
    variables["JWT_SECRET"] = secrets.token_urlsafe(48)
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    env = {name: os.environ[name] for name in ("PATH", "HOME", "DOCKER_CONFIG") if name in os.environ}
    command = ["docker", "compose", "--file", str(COMPOSE_FILE), "--file", str(SEAWEEDFS_OVERRIDE)]
    result = subprocess.run(
        [*command, "--env-file", str(env_file), "config", "--format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)["services"]
    assert (
        "minio" not in rendered and rendered["api"]["environment"]["S3_ENDPOINT_URL"] == f"http://seaweedfs:{S3_PORT}"
    )
    assert set(rendered["api"]["depends_on"]) == {"postgres", "seaweedfs", "migrate", "inference", "redis"}
