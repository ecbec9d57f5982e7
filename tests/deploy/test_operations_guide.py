"""docs/operations.md refers only to compose services, variables, paths, metrics, alerts and
Kubernetes objects that exist.

What is checked, so the guide cannot silently rot:
- every `docker compose <command>` (in code blocks and inline code) names real compose services,
  of docker-compose.yml merged with the override files the command passes with -f;
- every inline code span in capitals (`JWT_SECRET`) is a variable of .env.example, of compose (the
  override files included) or read by one of our services;
- every repository path under scripts/, k8s/, deploy/, services/, docs/, requirements/ or tests/
  exists;
- every Kubernetes object a kubectl command names exists in k8s/base, in the namespace cxr;
- every `python -m gateway.<module>` is a module of the gateway, and every gateway route named
  (`POST /api/me/password`, `http://localhost:8080/api/results/export.csv?...`) is one it serves;
- the services table lists docker-compose.yml's services, the optional one the override files';
- the metrics table lists every metric the code exports, with its type and labels, every series
  the rules record and every metric of other software they use, and nothing else;
- the alerts table lists exactly the alerts of deploy/monitoring/prometheus/rules.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from functools import cache

import pytest
import yaml
from compose_checks import INTERPOLATION, OVERRIDE_FILES, load_compose, load_compose_file, strings_in, without_tags
from deploy_checks import COMPOSE_FILE, REPO_ROOT, SERVICE_IMAGES, base_manifests, env_names_read_by, read_env_example
from monitoring_checks import (
    EXTERNAL_METRICS,
    code_metric_families,
    code_metric_labels,
    recorded_series,
    rules,
)

GUIDE = REPO_ROOT / "docs/operations.md"

CODE_BLOCK = re.compile(r"^\s*```[^\n]*\n(.*?)^\s*```", re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]{2,}")
REPO_PATH = re.compile(r"(?<![\w/.-])(?:scripts|k8s|deploy|services|docs|requirements|tests)/[\w./-]*")
KUBECTL_OBJECT = re.compile(r"\b(deployment|job|statefulset|hpa|cronjob)[/ ]([a-z][\w-]*)")
KUBECTL_KINDS = {
    "deployment": "Deployment",
    "job": "Job",
    "statefulset": "StatefulSet",
    "hpa": "HorizontalPodAutoscaler",
    "cronjob": "CronJob",
}
NAMESPACE = "cxr"
GATEWAY_MODULE = re.compile(r"python -m (gateway\.\w+)")
# a route named with its method (`POST /api/users/<user id>/password`) or in a URL of the frontend
GATEWAY_ROUTE = re.compile(r"\b(?:GET|POST|DELETE) /api(/[^\s?`'\"]*)|localhost:8080/api(/[^\s?`'\"]*)")
# Docker Compose's own variables (they choose the files and profiles; no service reads them)
COMPOSE_CLI_VARIABLES = {"COMPOSE_FILE", "COMPOSE_PROFILES"}

# docker compose subcommands whose other words are all services, and those taking one service then a command
TAKES_SERVICES = {"up", "down", "ps", "logs", "build", "pull", "start", "stop", "restart", "rm", "version", "config"}
TAKES_ONE_SERVICE_AND_A_COMMAND = {"exec", "run"}
OPTIONS_WITH_A_VALUE = {"--scale", "--user", "-u", "--volume", "-v", "--env", "-e", "--since", "--tail", "--entrypoint"}
GLOBAL_OPTIONS_WITH_A_VALUE = {"-f", "--file", "--env-file", "--profile", "-p", "--project-name"}
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}


def code_lines(text: str) -> list[str]:
    """The lines of every code block (continuations joined) and every inline code span."""
    lines = []
    for block in CODE_BLOCK.findall(text):
        lines += block.replace("\\\n", " ").splitlines()
    prose = CODE_BLOCK.sub("", text)
    return lines + INLINE_CODE.findall(prose)


def compose_command(line: str) -> tuple[list[str], list[str]]:
    """The files (-f) and the services a line's `docker compose` command names."""
    words = shlex.split(line.split("docker compose", 1)[1], comments=False)
    files = []
    while words and words[0].startswith("-"):
        option = words.pop(0)
        if option in GLOBAL_OPTIONS_WITH_A_VALUE and words:
            value = words.pop(0)
            if option in ("-f", "--file"):
                files.append(value)
    if not words:
        raise ValueError(f"no docker compose command in: {line}")
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
    return files, services


def compose_services_named(line: str) -> list[str]:
    return compose_command(line)[1]


def compose_services_of(files: list[str]) -> set[str]:
    """The services of docker-compose.yml merged with these override files (-f, in order)."""
    if files and files[0] != "docker-compose.yml":
        raise ValueError(f"the first file must be docker-compose.yml, not {files[0]}")
    overrides = [REPO_ROOT / path for path in files[1:]]
    missing = [str(path) for path in overrides if not path.is_file()]
    if missing:
        raise ValueError(f"no compose file {missing}")
    return set(load_compose(*overrides)["services"])


def known_variables() -> set[str]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    in_compose = {name for service in compose["services"].values() for name in service.get("environment") or {}}
    for path in OVERRIDE_FILES:
        override = without_tags(load_compose_file(path))
        in_compose |= {name for service in override["services"].values() for name in service.get("environment") or {}}
        in_compose |= {m.group("name") for text in strings_in(override) for m in INTERPOLATION.finditer(text)}
    read_by_services = {name for service in SERVICE_IMAGES for name in env_names_read_by(service)}
    return set(read_env_example()) | in_compose | read_by_services | COMPOSE_CLI_VARIABLES | set(EXTERNAL_METRICS)


def problems(text: str) -> list[str]:
    """Every reference in the guide's text to something that does not exist."""
    found = []
    kubernetes_objects = {(doc["kind"], doc["metadata"]["name"]) for doc in base_manifests()}
    variables = known_variables()
    lines = code_lines(text)
    for line in lines:
        if "docker compose" in line:
            try:
                files, named = compose_command(line)
                services = compose_services_of(files)
                found += [f"no compose service {service}: {line}" for service in named if service not in services]
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
        for module in GATEWAY_MODULE.findall(line):
            if importlib.util.find_spec(module) is None:
                found.append(f"no module {module}: {line}")
    for named, in_url in GATEWAY_ROUTE.findall(re.sub(r"<[^>]+>", "{id}", text)):
        route = (named or in_url).rstrip(".,)")
        if not any(pattern.fullmatch(route) for pattern in gateway_routes()):
            found.append(f"no gateway route {route}")
    for span in INLINE_CODE.findall(CODE_BLOCK.sub("", text)):
        if VARIABLE.fullmatch(span) and span not in variables:
            found.append(f"no variable {span}")
    return found


@cache
def gateway_routes() -> list[re.Pattern]:
    """The gateway's paths (from its OpenAPI document) as patterns: a path parameter matches a segment."""
    from deploy_checks import _app

    paths = _app("api").openapi()["paths"]
    segment = lambda part: "[^/]+" if part.startswith("{") else re.escape(part)  # noqa: E731
    return [re.compile("/".join(segment(part) for part in path.split("/"))) for path in paths]


def table(text: str, header: str) -> list[list[str]]:
    """The rows (cells, stripped) of the markdown table whose header row starts with this cell."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == header:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in row.strip().strip("|").split("|")])
            return rows
    raise AssertionError(f"no table with the header '{header}'")


def code_names(rows: list[list[str]]) -> list[str]:
    """The first cell of each row, without its backticks."""
    return [re.fullmatch(r"`([^`]+)`", row[0]).group(1) for row in rows]


def test_guide_refers_only_to_what_exists():
    assert not problems(GUIDE.read_text())


def test_guide_covers_every_compose_service():
    text = GUIDE.read_text()
    compose_lines = [line for line in code_lines(text) if "docker compose" in line]
    named = {service for line in compose_lines for service in compose_services_named(line)}
    base = set(yaml.safe_load(COMPOSE_FILE.read_text())["services"])
    assert set(code_names(table(text, "service"))) == base
    optional = set().union(*(without_tags(load_compose_file(path))["services"] for path in OVERRIDE_FILES)) - base
    assert set(code_names(table(text, "optional service"))) == optional
    assert {"migrate", "inference", "postgres", "minio-setup", "api", "seaweedfs", "prometheus"} <= named


def test_guide_documents_every_metric_with_its_type_and_labels():
    rows = table(GUIDE.read_text(), "metric")
    documented = {name: row for name, row in zip(code_names(rows), rows, strict=True)}
    families, labels = code_metric_families(), code_metric_labels()
    expected_code = {
        (family + "_total" if kind == "counter" else family): family for family, (_, kind) in families.items()
    }
    for name, family in expected_code.items():
        assert name in documented, f"docs/operations.md does not document {name}"
        _, kind, label_cell, meaning = documented[name][:4]
        assert kind == families[family][1], f"{name} is a {families[family][1]}, not a {kind}"
        written = {label.strip("` ") for label in label_cell.split(",")} - {""}
        assert written == set(labels[family]), f"{name}: labels {sorted(labels[family])}, not {sorted(written)}"
        assert meaning, name
    for name in recorded_series():
        assert name in documented and documented[name][1] == "recording rule", name
    for name in EXTERNAL_METRICS:
        assert name in documented, f"docs/operations.md does not document {name}"
    unknown = set(documented) - set(expected_code) - set(recorded_series()) - set(EXTERNAL_METRICS)
    assert not unknown, f"documented but exported by nothing: {unknown}"


def test_guide_documents_every_alert():
    rows = table(GUIDE.read_text(), "alert")
    documented = dict(zip(code_names(rows), rows, strict=True))
    defined = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(documented) == set(defined)
    for name, row in documented.items():
        assert row[1] == defined[name]["labels"]["severity"], name
        assert row[2] and row[3], name


@pytest.mark.parametrize(
    "bad, reported",
    [
        ("Run `docker compose logs -f gateway`.", "no compose service gateway"),
        ("```bash\ndocker compose exec -T database \\\n  pg_dump\n```", "no compose service database"),
        ("```bash\ndocker compose up -d --scale inferences=3\n```", "no compose service inferences"),
        ("```bash\ndocker compose frobnicate api\n```", "unknown docker compose command"),
        ("```bash\ndocker compose logs prometheus\n```", "no compose service prometheus"),
        ("```bash\ndocker compose -f docker-compose.yml -f deploy/nothing.yml up -d\n```", "no compose file"),
        ("Set `JWT_SECRETS` in `.env`.", "no variable JWT_SECRETS"),
        ("Run `bash scripts/deploy.sh`.", "no file scripts/deploy.sh"),
        ("Apply `deploy/monitoring/missing.yaml`.", "no file deploy/monitoring/missing.yaml"),
        ("```bash\nkubectl -n cxr delete job migration\n```", "no Job migration"),
        ("```bash\nkubectl -n default logs deployment/api\n```", "namespace default"),
        ("```bash\nkubectl -n cxr create job --from=cronjob/purging now\n```", "no CronJob purging"),
        ("```bash\ndocker compose run --rm purge python -m gateway.purging\n```", "no module gateway.purging"),
        ("Call `POST /api/users/<user id>/passwords`.", "no gateway route /users/{id}/passwords"),
        ("```bash\ncurl http://localhost:8080/api/result/export.csv?x=1\n```", "no gateway route /result/export.csv"),
    ],
)
def test_checker_reports_what_does_not_exist(bad, reported):
    # guards the check above: each kind of reference is really looked up
    assert any(reported in problem for problem in problems(bad)), problems(bad)


def test_checker_reads_override_files():
    line = "docker compose -f docker-compose.yml -f deploy/monitoring/compose.yml exec prometheus promtool"
    assert compose_command(line) == (["docker-compose.yml", "deploy/monitoring/compose.yml"], ["prometheus"])
    assert not problems(f"```bash\n{line}\n```")
