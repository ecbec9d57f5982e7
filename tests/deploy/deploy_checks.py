"""Shared helpers for the static checks of the deployment files (Dockerfiles, compose, Kubernetes).

Nothing here runs Docker or a cluster: the files are parsed and compared with each other and
with the product code (its routes, its settings, the ports it is started on).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# The three images we build, by the name the service has in compose and Kubernetes.
IMAGES = ("inference", "api", "frontend")
DOCKERFILE_PATHS = {name: REPO_ROOT / "services" / name / "Dockerfile" for name in IMAGES}
NGINX_TEMPLATE = REPO_ROOT / "services/frontend/nginx/default.conf.template"
CONFIG_JS_SCRIPT = REPO_ROOT / "services/frontend/docker-entrypoint.d/40-write-config-js.sh"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
K8S_BASE = REPO_ROOT / "k8s/base"

# Our services (compose service / Kubernetes container name) and the image each runs.
SERVICE_IMAGES = {
    "inference": "inference",
    "api": "api",
    "migrate": "api",
    "reaper": "api",
    "purge": "api",
    "frontend": "frontend",
}

# libpq reads the database password from here, so it never has to sit inside DATABASE_URL.
LIBPQ_ENV = {"PGPASSWORD"}

# Settings the code can do without but a deployment must give: without a password the migration
# step would generate the first administrator's and print it into the logs.
CHOSEN_BY_THE_DEPLOYMENT = {"migrate": {"FIRST_ADMIN_PASSWORD"}}

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY")


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name.upper()))


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def base_manifests() -> list[dict]:
    """k8s/base as listed in its kustomization."""
    resources = kustomization(K8S_BASE)["resources"]
    return [doc for resource in resources for doc in load_yaml_documents(K8S_BASE / resource)]


def read_env_example() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f".env.example: '{line}' is not NAME=value"
            entries[name.strip()] = value.strip()
    return entries


# --- Dockerfiles --------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "COPY"
    arguments: str  # the rest of the instruction, continuation lines joined
    stage: int  # index of its FROM stage; -1 before the first FROM


class Dockerfile:
    """Just enough of a Dockerfile parser for lint-like checks."""

    def __init__(self, path: Path):
        self.path = path
        self.text = path.read_text()
        self.instructions = self._parse(self.text)

    @staticmethod
    def _parse(text: str) -> list[Instruction]:
        instructions, pending, stage = [], "", -1
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):  # also inside a continued instruction
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            keyword, _, arguments = (pending + stripped).partition(" ")
            pending = ""
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            instructions.append(Instruction(keyword, arguments.strip(), stage))
        return instructions

    def _global_args(self) -> dict[str, str]:
        args = {}
        for instruction in self.instructions:
            if instruction.stage == -1 and instruction.keyword == "ARG" and "=" in instruction.arguments:
                name, _, value = instruction.arguments.partition("=")
                args[name.strip()] = value.strip()
        return args

    @property
    def stages(self) -> list[tuple[str, str | None]]:
        """(image, stage name) of every FROM, with global ARG defaults substituted."""
        args = self._global_args()
        stages = []
        for instruction in self.of("FROM", stage=None):
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append((image, name))
        return stages

    @property
    def base_images(self) -> list[str]:
        """The images pulled from a registry (FROMs naming an earlier stage excluded)."""
        names = {name for _, name in self.stages if name}
        return [image for image, _ in self.stages if image not in names]

    @property
    def final_stage(self) -> int:
        return len(self.stages) - 1

    def of(self, keyword: str, stage: int | None = -2) -> list[Instruction]:
        """Instructions with this keyword, in the final stage by default, in all with stage=None."""
        stage = self.final_stage if stage == -2 else stage
        return [i for i in self.instructions if i.keyword == keyword and (stage is None or i.stage == stage)]

    @property
    def env(self) -> dict[str, str]:
        env = {}
        for instruction in self.of("ENV"):
            for word in shlex.split(instruction.arguments):
                name, _, value = word.partition("=")
                env[name] = value
        return env

    @property
    def user(self) -> str | None:
        users = self.of("USER")
        return users[-1].arguments if users else None

    @property
    def exposed_ports(self) -> list[int]:
        return [int(word.split("/")[0]) for i in self.of("EXPOSE") for word in i.arguments.split()]

    @property
    def cmd(self) -> list[str] | None:
        """The final stage's CMD; None when it keeps the base image's."""
        commands = self.of("CMD")
        return exec_form(commands[-1].arguments) if commands else None

    @property
    def healthcheck(self) -> list[str] | None:
        """The HEALTHCHECK's command, None when there is none."""
        checks = self.of("HEALTHCHECK")
        if not checks:
            return None
        _, _, command = checks[-1].arguments.partition("CMD ")
        return exec_form(command) if command else None


def exec_form(arguments: str) -> list[str]:
    arguments = arguments.strip()
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def uid_of(user: str) -> int:
    """The numeric user id of a `USER uid[:gid]`; fails for names (Kubernetes can't check those)."""
    return int(user.split(":")[0])


@pytest.fixture(scope="session")
def dockerfiles() -> dict[str, Dockerfile]:
    return {name: Dockerfile(path) for name, path in DOCKERFILE_PATHS.items()}


def listening_port(image: str) -> int:
    """The port the image's server listens on: uvicorn's --port in its CMD, or nginx's listen."""
    command = Dockerfile(DOCKERFILE_PATHS[image]).cmd
    if command is None:  # the frontend keeps the nginx image's command; our template sets the port
        (port,) = nginx_listen_ports()
        return port
    return int(command[command.index("--port") + 1])


# --- the frontend's nginx -----------------------------------------------------------------


def nginx_template() -> str:
    """The nginx template without its comments."""
    return re.sub(r"^\s*#.*$", "", NGINX_TEMPLATE.read_text(), flags=re.MULTILINE)


def nginx_listen_ports() -> list[int]:
    return [int(port) for port in re.findall(r"^\s*listen\s+(\d+)", nginx_template(), re.MULTILINE)]


def nginx_exact_locations() -> set[str]:
    """Paths the frontend's nginx answers itself (`location = /path`)."""
    return set(re.findall(r"location\s*=\s*(\S+)\s*\{", nginx_template()))


# --- the product code ---------------------------------------------------------------------


def _gateway_settings_class():
    from gateway.settings import Settings

    return Settings


def _inference_settings_class():
    from inference.settings import Settings

    return Settings


def _prestart_settings_class():
    from gateway.settings import PrestartSettings

    return PrestartSettings


def _reaper_settings_class():
    from gateway.settings import ReaperSettings

    return ReaperSettings


def _purge_settings_class():
    from gateway.settings import PurgeSettings

    return PurgeSettings


def _settings_class(service: str):
    return {
        "inference": _inference_settings_class,
        "api": _gateway_settings_class,
        "migrate": _prestart_settings_class,
        "reaper": _reaper_settings_class,
        "purge": _purge_settings_class,
    }[service]()


def _env_name(settings_class, field: str) -> str:
    return f"{settings_class.model_config.get('env_prefix') or ''}{field}".upper()


def settings_env_names(settings_class) -> set[str]:
    return {_env_name(settings_class, field) for field in settings_class.model_fields}


@cache
def _from_values_only(settings_class):
    """The settings class reading neither this process's environment nor a .env file."""

    class FromValuesOnly(settings_class):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, **environment_and_files):
            return (init_settings,)

    return FromValuesOnly


def settings_from_env(service: str, env: dict[str, str]):
    """The service's Settings built from exactly these variables (ValidationError if invalid)."""
    settings_class = _settings_class(service)
    names = {_env_name(settings_class, field): field for field in settings_class.model_fields}
    fields = {names[name]: value for name, value in env.items() if name in names}
    return _from_values_only(settings_class)(**fields)


PLACEHOLDER_SECRET = "placeholder-" + "x" * 40


def _demanded_by_validation(service: str) -> set[str]:
    """What the settings refuse to start without in production: fields with no default and what
    the validators demand. Found by building them from nothing and adding each name an error names."""
    from pydantic import ValidationError

    settings_class = _settings_class(service)
    names = settings_env_names(settings_class)
    env = {"ENVIRONMENT": "production"} if "ENVIRONMENT" in names else {}
    while True:
        try:
            settings_from_env(service, env)
            return set(env) - {"ENVIRONMENT"}
        except ValidationError as error:
            named = set()
            for problem in error.errors():
                if problem["type"] == "missing":
                    named.add(_env_name(settings_class, problem["loc"][0]))
                named |= {name for name in names if re.search(rf"\b{name}\b", problem["msg"])}
            assert named - set(env), f"{service}: cannot tell what the settings demand from {error}"
            env |= {name: f"{PLACEHOLDER_SECRET}-{name}" for name in named}  # secrets that must differ do


def _defaults_for_a_developer_machine(service: str) -> set[str]:
    """Settings whose default points at the developer's machine (a loopback URL or a SQLite file)."""
    settings_class = _settings_class(service)
    found = set()
    for field, info in settings_class.model_fields.items():
        if isinstance(info.default, str) and "://" in info.default:
            if urlsplit(info.default).hostname in (None, "localhost", "127.0.0.1", "::1"):
                found.add(_env_name(settings_class, field))
    return found


@cache
def required_env_names(service: str) -> frozenset[str]:
    """Every variable a deployment must give the service: what its settings demand, the settings
    whose defaults only work on a developer's machine, and what CHOSEN_BY_THE_DEPLOYMENT adds."""
    if service == "frontend":  # nginx: every variable has a default in the Dockerfile
        return frozenset()
    required = _demanded_by_validation(service) | _defaults_for_a_developer_machine(service)
    if "DATABASE_URL" in required:  # deployments keep the password out of the URL (checked elsewhere)
        required |= LIBPQ_ENV
    return frozenset(required | CHOSEN_BY_THE_DEPLOYMENT.get(service, set()))


@cache
def env_names_read_by(service: str) -> frozenset[str]:
    """Every environment variable the service's process reads (a deployment may set only these)."""
    if service == "inference":
        return frozenset(settings_env_names(_inference_settings_class()))
    if service == "frontend":  # the nginx image reads what its Dockerfile declares
        return frozenset(Dockerfile(DOCKERFILE_PATHS["frontend"]).env)
    return frozenset(settings_env_names(_settings_class(service)) | LIBPQ_ENV)


@cache
def _app(image: str):
    """The service's web app, its lifespan (connections, models) not run."""
    if image == "api":
        from gateway.main import create_app

        # development: the gateway's settings need no secrets
        return create_app(_from_values_only(_gateway_settings_class())(environment="development"))
    from inference.app import create_app

    return create_app(_from_values_only(_inference_settings_class())())


def serves_get(image: str, path: str) -> bool:
    """Whether the image's server really answers GET on that path."""
    from starlette.routing import Match

    if image == "frontend":
        return path in nginx_exact_locations()
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in _app(image).routes)


def health_paths(image: str) -> dict[str, str]:
    """The image's health endpoints by purpose, "live" and "ready" (one path may serve both)."""
    if image == "frontend":
        paths = {path for path in nginx_exact_locations() if "health" in path}
    else:
        # the OpenAPI document lists every route, also those of included routers
        routes = _app(image).openapi()["paths"]
        paths = {path for path, methods in routes.items() if "health" in path and "get" in methods}
    found = {}
    for purpose in ("live", "ready"):
        matching = [path for path in paths if path.endswith(purpose)] or sorted(paths)
        assert len(matching) == 1, f"{image}: which of {matching} is for {purpose}?"
        found[purpose] = matching[0]
    return found


def gateway_body_limit(max_upload_bytes: int) -> int:
    """The largest request body the gateway accepts for an upload of max_upload_bytes."""
    from gateway.request_guards import MULTIPART_OVERHEAD_BYTES

    return max_upload_bytes + MULTIPART_OVERHEAD_BYTES


def nginx_size_bytes(size: str) -> int:
    """nginx size syntax: 1024, 8k, 21m, 1g."""
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", size.strip()).groups()
    return int(number) * 1024 ** " kmg".index(unit.lower() or " ")


def parse_image_reference(reference: str) -> tuple[str, str | None]:
    """(repository, tag) of an image reference; the tag is None when there is none."""
    name = reference.split("@")[0]
    repository, _, tag = name.rpartition(":")
    if not repository or "/" in tag:  # the colon belonged to a registry port
        return name, None
    return repository, tag


def kustomize_build(directory: Path) -> list[dict]:
    """The manifests `kubectl kustomize` renders from a folder (skipped where kubectl is absent)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
