"""Static checks of docker-compose.yml and .env.example against the compose specification and the code."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml
from compose_checks import (
    INTERPOLATION,
    SECRET_VARIABLES,
    compose_schema_errors,
    environment,
    interpolate,
    placeholder_variables,
    strings_in,
)
from deploy_checks import (
    COMPOSE_FILE,
    DOCKERFILE_PATHS,
    ENV_EXAMPLE,
    REPO_ROOT,
    SERVICE_IMAGES,
    Dockerfile,
    env_names_read_by,
    gateway_body_limit,
    listening_port,
    looks_secret,
    nginx_size_bytes,
    parse_image_reference,
    read_env_example,
    required_env_names,
    settings_from_env,
)

OUR_SERVICES = tuple(SERVICE_IMAGES)  # built from this repo
LONG_RUNNING_SERVICES = ("inference", "api", "frontend")
ONE_SHOT_SERVICES = ("migrate", "minio-setup")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def test_compose_file_matches_the_compose_specification(compose):
    # the compose-spec JSON schema as vendored by check-jsonschema
    assert not compose_schema_errors(compose)


def test_runs_the_whole_product(services):
    assert set(services) == {
        "postgres",
        "minio",
        "minio-setup",
        "redis",
        "migrate",
        "inference",
        "api",
        "frontend",
        "reaper",
        "purge",
    }
    for maintenance in ("reaper", "purge"):  # run from cron, not by `up`
        assert services[maintenance]["profiles"] == ["maintenance"]


def test_only_the_frontend_is_published_on_its_nginx_port(services):
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert list(published) == ["frontend"]
    (mapping,) = published["frontend"]
    container_port = int(interpolate(str(mapping), {}).rsplit(":", 1)[-1])
    assert container_port == listening_port("frontend")


def test_images_are_pinned(services):
    for name, service in services.items():
        repository, tag = parse_image_reference(interpolate(service["image"], {}))
        assert tag and tag != "latest", f"{name}: {service['image']}"
        if "build" not in service:  # pulled, not built here: a fixed release
            assert re.search(r"\d", tag), f"{name}: {service['image']} is not a release tag"


def test_our_images_build_from_the_repo_root_with_their_dockerfiles(services):
    for name in OUR_SERVICES:
        build = services[name]["build"]
        assert build["context"] == "."
        assert REPO_ROOT / build["dockerfile"] == DOCKERFILE_PATHS[SERVICE_IMAGES[name]]
    assert services["migrate"]["image"] == services["api"]["image"]


def test_secrets_have_no_default_anywhere(compose):
    text = "\n".join(strings_in(compose))
    # every substitution in the ${...} form checked here; $$ is a literal $ for the container's shell
    assert not re.search(r"(?<!\$)\$(?!\$)\w", text.replace("$$", "")), "use ${NAME...}, not $NAME"
    used = {}
    for match in INTERPOLATION.finditer(text):
        used.setdefault(match.group("name"), set()).add(match.group("operator"))
    assert set(used) >= SECRET_VARIABLES, "a secret is not taken from the environment"
    for name, operators in used.items():
        if name in SECRET_VARIABLES or looks_secret(name):
            assert operators == {":?"}, f"{name} must always be ${{{name}:?...}}, found {operators}"


def test_secret_settings_come_only_from_the_environment(services):
    for name, service in services.items():
        for variable, value in (service.get("environment") or {}).items():
            if looks_secret(variable):
                assert INTERPOLATION.fullmatch(str(value)), f"{name}: {variable} has a literal value"


def test_env_example_lists_every_variable_and_no_secret_value(compose):
    example = read_env_example()
    used = {m.group("name") for text in strings_in(compose) for m in INTERPOLATION.finditer(text)}
    assert set(example) == used
    for name in SECRET_VARIABLES:
        assert example[name] == "", f".env.example must not hold a value for {name}"
    assert "openssl rand" in ENV_EXAMPLE.read_text()


def test_missing_secret_stops_compose(services):
    variables = {name: "set" for name in SECRET_VARIABLES}
    del variables["JWT_SECRET"]
    with pytest.raises(KeyError, match="JWT_SECRET"):
        environment(services["api"], variables)


def test_dependencies_wait_for_health_or_completion(services):
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            condition = rule["condition"]
            target = services[dependency]
            if condition == "service_healthy":
                healthcheck = target.get("healthcheck", {})
                assert not healthcheck.get("disable")
                has_image_check = (
                    dependency in OUR_SERVICES and Dockerfile(DOCKERFILE_PATHS[SERVICE_IMAGES[dependency]]).healthcheck
                )
                assert healthcheck.get("test") or has_image_check, f"{dependency} has no health check"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {dependency}: {condition}"
                assert dependency in ONE_SHOT_SERVICES and target["restart"] == "no"


def test_start_order(services):
    def waits_for(name):
        return {dep: rule["condition"] for dep, rule in services[name]["depends_on"].items()}

    assert waits_for("migrate") == {"postgres": "service_healthy"}
    assert waits_for("minio-setup") == {"minio": "service_healthy"}
    assert waits_for("api") == {
        "postgres": "service_healthy",
        "minio": "service_healthy",
        "minio-setup": "service_completed_successfully",
        "migrate": "service_completed_successfully",
        "inference": "service_healthy",
        "redis": "service_healthy",
    }
    assert waits_for("frontend") == {"api": "service_healthy"}
    assert waits_for("purge") == waits_for("reaper") == {"postgres": "service_healthy", "minio": "service_healthy"}


def test_postgres_and_minio_keep_data_in_named_volumes_and_report_health(compose, services):
    for name, data_path in (("postgres", "/var/lib/postgresql/data"), ("minio", "/data")):
        volume, _, path = services[name]["volumes"][0].partition(":")
        assert path == data_path and volume in compose["volumes"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_environment_is_read_by_the_service(services, name):
    unknown = set(environment(services[name])) - env_names_read_by(name)
    assert not unknown, f"{name} does not read {unknown}"


def test_required_settings_are_found_in_the_code():
    # guards the checks of what compose and Kubernetes must provide (here and in test_kubernetes.py)
    api = required_env_names("api")
    assert {"JWT_SECRET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "DATABASE_URL", "PGPASSWORD"} <= api
    assert "ENVIRONMENT" not in api, "production is the default"
    assert {"DATABASE_URL", "PGPASSWORD", "FIRST_ADMIN_PASSWORD"} <= required_env_names("migrate")


@pytest.mark.parametrize("name", OUR_SERVICES)
def test_services_get_every_required_setting(services, name):
    given = services[name].get("environment") or {}
    image_env = Dockerfile(DOCKERFILE_PATHS[SERVICE_IMAGES[name]]).env
    missing = required_env_names(name) - set(given) - set(image_env)
    assert not missing, f"{name} is not given {missing}"
    for variable in required_env_names(name):
        if looks_secret(variable):  # from .env, and compose refuses to start without it
            match = INTERPOLATION.fullmatch(str(given.get(variable)))
            assert match and match.group("operator") == ":?", f"{name}: {variable} is {given.get(variable)!r}"


@pytest.mark.parametrize("name", LONG_RUNNING_SERVICES)
def test_services_run_the_images_server_and_its_health_check(services, name):
    # the ports and health paths checked against the code are the image's: compose must not replace them
    for key in ("command", "entrypoint", "healthcheck"):
        assert key not in services[name], f"{name}: {key} overrides the image's"


def test_gateway_environment_is_a_valid_production_configuration(services):
    settings = settings_from_env("api", environment(services["api"]))
    assert settings.environment == "production" and settings.storage_backend == "s3"


def test_migration_gets_the_database_and_the_first_administrator(services):
    settings = settings_from_env("migrate", environment(services["migrate"]))
    assert settings.database_url.startswith("postgresql+psycopg://") and settings.first_admin_password


def test_inference_environment_is_valid_and_fits_its_cpu_limit(services):
    service = services["inference"]
    settings = settings_from_env("inference", environment(service))
    assert 1 <= settings.intra_op_threads <= float(service["deploy"]["resources"]["limits"]["cpus"])


def test_urls_point_at_the_right_services_and_ports(services):
    api = environment(services["api"])
    inference = urlsplit(api["INFERENCE_URL"])
    assert (inference.hostname, inference.port) == ("inference", listening_port("inference"))
    storage = urlsplit(api["S3_ENDPOINT_URL"])
    assert (storage.hostname, storage.port) == ("minio", 9000)
    database = urlsplit(api["DATABASE_URL"])
    postgres = environment(services["postgres"])
    assert (database.hostname, database.port) == ("postgres", 5432)
    assert database.password is None, "the password belongs in PGPASSWORD, not in the URL"
    assert (database.username, database.path) == (postgres["POSTGRES_USER"], "/" + postgres["POSTGRES_DB"])
    assert api["PGPASSWORD"] == postgres["POSTGRES_PASSWORD"]

    frontend = environment(services["frontend"])
    upstream = urlsplit(frontend["CXR_API_UPSTREAM"])
    assert (upstream.hostname, upstream.port) == ("api", listening_port("api"))
    assert frontend["API_BASE_URL"] == "/api"


def test_minio_setup_creates_the_bucket_and_key_the_gateway_uses(services):
    setup, api = environment(services["minio-setup"]), environment(services["api"])
    for name in ("S3_BUCKET", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"):
        assert setup[name] == api[name]
    script = "\n".join(services["minio-setup"]["command"])
    assert re.search(r'mc mb --ignore-existing "cxr/\$\$S3_BUCKET"', script)
    assert re.search(r'mc admin user add cxr "\$\$S3_ACCESS_KEY_ID" "\$\$S3_SECRET_ACCESS_KEY"', script)


def test_redis_is_shared_by_the_gateway_with_its_password_and_keeps_nothing_on_disk(services):
    redis_env, api = environment(services["redis"]), environment(services["api"])
    url = urlsplit(api["REDIS_URL"])
    assert (url.scheme, url.hostname, url.port, url.password) == ("redis", "redis", 6379, None)
    command = [interpolate(str(word), placeholder_variables()) for word in services["redis"]["command"]]
    assert command[command.index("--requirepass") + 1] == api["REDIS_PASSWORD"] == redis_env["REDIS_PASSWORD"]
    assert command[command.index("--save") + 1] == "" and command[command.index("--appendonly") + 1] == "no"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"  # never evict a sign-in lock
    assert "volumes" not in services["redis"] and "/data" in services["redis"]["tmpfs"]
    assert services["redis"]["user"] != "0" and services["redis"]["networks"] == ["backend"]
    check = services["redis"]["healthcheck"]["test"]
    assert check[0] == "CMD-SHELL" and "ping" in check[1] and "$$REDIS_PASSWORD" in check[1]
    settings = settings_from_env("api", api)
    assert settings.redis_url == api["REDIS_URL"] and settings.redis_password == api["REDIS_PASSWORD"]


def test_purge_runs_the_retention_module_with_the_reapers_access_and_its_ages(services):
    import importlib.util

    purge, reaper = services["purge"], services["reaper"]
    assert purge["command"] == ["python", "-m", "gateway.purge"]
    assert importlib.util.find_spec("gateway.purge") is not None
    assert purge["image"] == services["api"]["image"] and purge["restart"] == "no"
    env = environment(purge)
    assert "JWT_SECRET" not in env and set(env) - {"RETENTION_DAYS", "AUDIT_RETENTION_DAYS"} == set(environment(reaper))
    settings = settings_from_env("purge", env)
    assert settings.retention_days == 0 and settings.audit_days == 0, "off unless the operator sets it"
    chosen = settings_from_env("purge", environment(purge, placeholder_variables() | {"RETENTION_DAYS": "3650"}))
    assert (chosen.retention_days, chosen.audit_days) == (3650, 3650)


def test_migrate_runs_the_prestart_module(services):
    import importlib.util

    command = services["migrate"]["command"]
    assert command == ["python", "-m", "gateway.prestart"]
    assert importlib.util.find_spec(command[2]) is not None


def test_frontend_body_limit_fits_the_gateway_upload_limit(services):
    frontend_env = Dockerfile(DOCKERFILE_PATHS["frontend"]).env | environment(services["frontend"])
    max_upload_bytes = int(environment(services["api"])["MAX_UPLOAD_BYTES"])
    assert nginx_size_bytes(frontend_env["CXR_CLIENT_MAX_BODY_SIZE"]) >= gateway_body_limit(max_upload_bytes)


def test_containers_are_hardened(services):
    for name, service in services.items():
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["read_only"] is True, name
        assert "/tmp" in service["tmpfs"], name
        assert service["cap_drop"] == ["ALL"], name
        if name != "postgres":  # its entrypoint needs a few to hand the data folder to the postgres user
            assert "cap_add" not in service, name


def test_backend_services_are_unreachable_from_the_frontend(compose, services):
    frontend_networks = set(services["frontend"]["networks"])
    for name in ("inference", "postgres", "minio", "redis"):
        assert not frontend_networks & set(services[name]["networks"]), name
    assert set(services["api"]["networks"]) & frontend_networks
    assert compose["networks"]["backend"]["internal"] is True


# --- docker compose itself (only where the compose plugin is installed) ----------------------


def docker_compose_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    version = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return version.returncode == 0


def docker_compose_config(env_file) -> subprocess.CompletedProcess:
    # only what finds docker and its plugins: compose would let shell variables override the env file
    env = {name: os.environ[name] for name in ("PATH", "HOME", "DOCKER_CONFIG") if name in os.environ}
    command = ["docker", "compose", "--file", str(COMPOSE_FILE), "--env-file", str(env_file), "config"]
    return subprocess.run([*command, "--format", "json"], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def generated_env(tmp_path) -> dict[str, str]:
    """.env.example with every empty secret filled in, as a first deployment would."""
    if not docker_compose_available():
        pytest.skip("the docker compose plugin is not installed (`docker compose version` fails)")
    # 20 hex characters fit MinIO's limits (3-20 for users); JWT_SECRET needs 32 or more
    variables = {name: value or secrets.token_hex(10) for name, value in read_env_example().items()}
    variables["JWT_SECRET"] = secrets.token_urlsafe(48)
    return variables


def write_env_file(path, variables: dict[str, str]):
    path.write_text("".join(f"{name}={value}\n" for name, value in variables.items()))
    return path


def test_docker_compose_accepts_the_file_with_a_filled_in_env(tmp_path, generated_env):
    result = docker_compose_config(write_env_file(tmp_path / ".env", generated_env))
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)["services"]
    assert rendered["api"]["environment"]["JWT_SECRET"] == generated_env["JWT_SECRET"]
    assert rendered["migrate"]["environment"]["PGPASSWORD"] == generated_env["POSTGRES_PASSWORD"]


def test_docker_compose_refuses_an_env_without_a_secret(tmp_path, generated_env):
    del generated_env["JWT_SECRET"]
    result = docker_compose_config(write_env_file(tmp_path / ".env", generated_env))
    assert result.returncode != 0 and "JWT_SECRET" in result.stderr
