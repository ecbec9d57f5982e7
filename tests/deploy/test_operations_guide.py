"""docs/operations.md refers only to compose services, variables, paths and Kubernetes objects that exist.

What is checked, so the guide cannot silently rot:
- every `docker compose <command>` (in code blocks and inline code) names real compose services;
- every inline code span in capitals (`JWT_SECRET`) is a variable of .env.example, of compose or
  read by one of our services;
- every repository path under scripts/, k8s/, services/, docs/, requirements/ or tests/ exists;
- every Kubernetes object a kubectl command names exists in k8s/base, in the namespace cxr.
"""

from __future__ import annotations

import re
import shlex

import pytest
import yaml

from deploy_checks import COMPOSE_FILE, REPO_ROOT, SERVICE_IMAGES, base_manifests, env_names_read_by, read_env_example

GUIDE = REPO_ROOT / "docs/operations.md"

CODE_BLOCK = re.compile(r"^\s*```[^\n]*\n(.*?)^\s*```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]{2,}")
REPO_PATH = re.compile(r"(?<![\w/.-])(?:scripts|k8s|services|docs|requirements|tests)/[\w./-]*")
KUBECTL_OBJECT = re.compile(r"\b(deployment|job|statefulset|hpa)[/ ]([a-z][\w-]*)")
KUBECTL_KINDS = {
    "deployment": "Deployment",
    "job": "Job",
    "statefulset": "StatefulSet",
    "hpa": "HorizontalPodAutoscaler",
}
NAMESPACE = "cxr"

# docker compose subcommands whose other words are all services, and those taking one service then a command
TAKES_SERVICES = {"up", "down", "ps", "logs", "build", "pull", "start", "stop", "restart", "rm", "version", "config"}
TAKES_ONE_SERVICE_AND_A_COMMAND = {"exec", "run"}
OPTIONS_WITH_A_VALUE = {"--scale", "--user", "-u", "--volume", "-v", "--env", "-e", "--since", "--tail", "--entrypoint"}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}


def code_lines(text: str) -> list[str]:
    """The lines of every code block (continuations joined) and every inline code span."""
    lines = []
    for block in CODE_BLOCK.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    prose = CODE_BLOCK.sub("", text)
    return lines + INLINE_CODE.findall(prose)


def compose_services_named(line: str) -> list[str]:
    """The services a line's `docker compose` command names."""
    words = shlex.split(line.split("docker compose", 1)[1], comments=False)
    subcommand, *arguments = words
    if subcommand not in TAKES_SERVICES | TAKES_ONE_SERVICE_AND_A_COMMAND:
        raise ValueError(f"unknown docker compose command in: {line}")
    services, skip_value = [], False
    for word in arguments:
        if word in SHELL_OPERATORS:
            break
        if skip_value:
            skip_value = False
            if subcommand == "up" and "=" in word:  # --scale name=count
                services.append(word.split("=")[0])
        elif word in OPTIONS_WITH_A_VALUE:
            skip_value = True
        elif not word.startswith("-"):
            services.append(word)
            if subcommand in TAKES_ONE_SERVICE_AND_A_COMMAND:
                break
    return services


def known_variables() -> set[str]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    in_compose = {name for service in compose["services"].values() for name in service.get("environment") or {}}
    read_by_services = {name for service in SERVICE_IMAGES for name in env_names_read_by(service)}
    return set(read_env_example()) | in_compose | read_by_services


def problems(text: str) -> list[str]:
    """Every reference in the guide's text to something that does not exist."""
    found = []
    compose_services = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    kubernetes_objects = {(doc["kind"], doc["metadata"]["name"]) for doc in base_manifests()}
    variables = known_variables()
    lines = code_lines(text)
    for line in lines:
        if "docker compose" in line:
            try:
                unknown = [s for s in compose_services_named(line) if s not in compose_services]
                found += [f"no compose service {service}: {line}" for service in unknown]
            except ValueError as error:
                found.append(str(error))
        if line.lstrip().startswith("kubectl"):
            for namespace in re.findall(r"(?:-n|--namespace)\s+(\S+)", line):
                if namespace != NAMESPACE:
                    found.append(f"namespace {namespace} is not {NAMESPACE}: {line}")
            for kind, name in KUBECTL_OBJECT.findall(line):
                if (KUBECTL_KINDS[kind], name) not in kubernetes_objects:
                    found.append(f"no {KUBECTL_KINDS[kind]} {name} in k8s/base: {line}")
        for path in REPO_PATH.findall(line):
            if not (REPO_ROOT / path.rstrip(".,")).exists():
                found.append(f"no file {path}")
    for span in INLINE_CODE.findall(CODE_BLOCK.sub("", text)):
        if VARIABLE.fullmatch(span) and span not in variables:
            found.append(f"no variable {span}")
    return found


def test_guide_refers_only_to_what_exists():
    assert not problems(GUIDE.read_text())


def test_guide_covers_every_compose_service():
    compose_lines = [line for line in code_lines(GUIDE.read_text()) if "docker compose" in line]
    named = {service for line in compose_lines for service in compose_services_named(line)}
    table = set(re.findall(r"^\| `([\w-]+)` \|", GUIDE.read_text(), re.MULTILINE))
    assert table == set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    assert {"migrate", "inference", "postgres", "minio-setup", "api"} <= named


@pytest.mark.parametrize(
    "bad, reported",
    [
        ("Run `docker compose logs -f gateway`.", "no compose service gateway"),
        ("```bash\ndocker compose exec -T database \\\n  pg_dump\n```", "no compose service database"),
        ("```bash\ndocker compose up -d --scale inferences=3\n```", "no compose service inferences"),
        ("```bash\ndocker compose frobnicate api\n```", "unknown docker compose command"),
        ("Set `JWT_SECRETS` in `.env`.", "no variable JWT_SECRETS"),
        ("Run `bash scripts/deploy.sh`.", "no file scripts/deploy.sh"),
        ("```bash\nkubectl -n cxr delete job migration\n```", "no Job migration"),
        ("```bash\nkubectl -n default logs deployment/api\n```", "namespace default"),
    ],
)
def test_checker_reports_what_does_not_exist(bad, reported):
    # guards the check above: each kind of reference is really looked up
    assert any(reported in problem for problem in problems(bad)), problems(bad)
