"""Shared helpers for the static checks of the deployment files (Dockerfiles, compose, Kubernetes).

Nothing here runs Docker or a cluster: the files are parsed and compared with each other and
with the product code (its routes, its settings, the ports it is started on).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

# The three images we build, by the name the service has in compose and Kubernetes.
IMAGES = ("inference", "api", "frontend")
DOCKERFILE_PATHS = {name: REPO_ROOT / "services" / name / "Dockerfile" for name in IMAGES}
NGINX_TEMPLATE = REPO_ROOT / "services/frontend/nginx/default.conf.template"
CONFIG_JS_SCRIPT = REPO_ROOT / "services/frontend/docker-entrypoint.d/40-write-config-js.sh"

# libpq reads the database password from here, so it never has to sit inside DATABASE_URL.
LIBPQ_ENV = {"PGPASSWORD"}

# Secrets a deployment must hand to each service (names as the service reads them).
REQUIRED_SECRETS = {
    "api": {"JWT_SECRET", "PGPASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"},
    "migrate": {"PGPASSWORD", "FIRST_ADMIN_PASSWORD"},
}

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY")


def looks_secret(name: str) -> bool:
    return bool(SECRET_NAME.search(name.upper()))


def load_yaml_documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


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


def image_port(name: str) -> int:
    """The one port the image exposes, the port its service is reached on."""
    (port,) = Dockerfile(DOCKERFILE_PATHS[name]).exposed_ports
    return port


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


def _settings_class(service: str):
    return {
        "inference": _inference_settings_class,
        "api": _gateway_settings_class,
        "migrate": _prestart_settings_class,
    }[service]()


def settings_env_names(settings_class) -> set[str]:
    prefix = settings_class.model_config.get("env_prefix") or ""
    return {f"{prefix}{field}".upper() for field in settings_class.model_fields}


def settings_from_env(service: str, env: dict[str, str]):
    """The service's Settings built from exactly these variables (ValidationError if invalid)."""
    settings_class = _settings_class(service)
    prefix = (settings_class.model_config.get("env_prefix") or "").upper()
    fields = {
        name.upper()[len(prefix) :].lower(): value
        for name, value in env.items()
        if name.upper() in settings_env_names(settings_class)
    }
    return settings_class(_env_file=None, **fields)


@cache
def env_names_read_by(service: str) -> frozenset[str]:
    """Every environment variable the service's process reads (a deployment may set only these)."""
    if service == "inference":
        return frozenset(settings_env_names(_inference_settings_class()))
    if service == "frontend":  # the nginx image reads what its Dockerfile declares
        return frozenset(Dockerfile(DOCKERFILE_PATHS["frontend"]).env)
    return frozenset(settings_env_names(_settings_class(service)) | LIBPQ_ENV)


def nginx_exact_locations() -> set[str]:
    """Paths the frontend's nginx answers itself (`location = /path`)."""
    return set(re.findall(r"location\s*=\s*(\S+)\s*\{", NGINX_TEMPLATE.read_text()))


@pytest.fixture(scope="session")
def serves_get():
    """serves_get(service, path): whether the service really answers GET on that path."""
    from gateway.main import create_app as create_gateway
    from inference.app import create_app as create_inference
    from starlette.routing import Match

    # development: the gateway's settings need no secrets; the lifespan (connections, models) is not run
    apps = {
        "api": create_gateway(_gateway_settings_class()(_env_file=None, environment="development")),
        "inference": create_inference(_inference_settings_class()()),
    }

    def serves_get(service: str, path: str) -> bool:
        if service == "frontend":
            return path in nginx_exact_locations()
        scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": [], "query_string": b""}
        return any(route.matches(scope)[0] == Match.FULL for route in apps[service].routes)

    return serves_get


def gateway_body_limit(max_upload_bytes: int) -> int:
    """The largest request body the gateway accepts for an upload of max_upload_bytes."""
    from gateway.main import MULTIPART_OVERHEAD_BYTES

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
