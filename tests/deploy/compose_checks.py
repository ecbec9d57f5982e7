"""Compose helpers shared by the checks of docker-compose.yml and of the override files under deploy/.

Compose itself may be missing (no Docker here), so what the checks need of it is done here: the
variable substitution, and the merge of several `-f` files with the `!override` / `!reset` tags
(the compose specification's merge rules, for the attributes our files use).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from deploy_checks import COMPOSE_FILE, REPO_ROOT

SEAWEEDFS_OVERRIDE = REPO_ROOT / "deploy/seaweedfs/compose.yml"
MONITORING_OVERRIDE = REPO_ROOT / "deploy/monitoring/compose.yml"
OVERRIDE_FILES = (SEAWEEDFS_OVERRIDE, MONITORING_OVERRIDE)

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")
# Variables compose must refuse to start without: no default anywhere.
SECRET_VARIABLES = {
    "POSTGRES_PASSWORD",
    "JWT_SECRET",
    "MINIO_ROOT_USER",
    "MINIO_ROOT_PASSWORD",
    "S3_ACCESS_KEY_ID",
    "S3_SECRET_ACCESS_KEY",
    "FIRST_ADMIN_PASSWORD",
    "REDIS_PASSWORD",
    "DEIDENTIFICATION_UID_SECRET",
    "INFERENCE_REPOSITORY_TOKEN",
    "MINIO_KMS_SECRET_KEY",
}
# Secrets only an override file asks for (added to .env by the operator, docs/operations.md).
OVERRIDE_SECRET_VARIABLES = {"GRAFANA_ADMIN_PASSWORD"}

# Sequences an overriding file replaces instead of extending (compose-spec merge rules).
REPLACED_SEQUENCES = {"command", "entrypoint", "test"}


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's variable substitution, failing like compose does on a missing `:?` variable."""

    def substitute(match: re.Match) -> str:
        name, operator, argument = match.group("name", "operator", "argument")
        value = variables.get(name)
        if operator in ("?", ":?") and not value:
            raise KeyError(f"{name}: {argument}")
        if value is None or (operator == ":-" and not value):
            return argument or ""
        return value

    return INTERPOLATION.sub(substitute, value).replace("$$", "$")


def placeholder_variables() -> dict[str, str]:
    return {name: f"placeholder-{name.lower()}-{'x' * 40}" for name in SECRET_VARIABLES | OVERRIDE_SECRET_VARIABLES}


def environment(service: dict, variables: dict[str, str] | None = None) -> dict[str, str]:
    """The service's environment, interpolated with these variables (placeholders by default)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] for item in raw)
    if variables is None:
        variables = placeholder_variables()
    return {name: interpolate(str(value), variables) for name, value in raw.items()}


def strings_in(node) -> list[str]:
    """Every string value in the parsed file (comments are not interpolated by compose)."""
    if isinstance(node, dict):
        return [text for value in node.values() for text in strings_in(value)]
    if isinstance(node, list):
        return [text for value in node for text in strings_in(value)]
    return [node] if isinstance(node, str) else []


# --- several files: the YAML tags and the merge ------------------------------------------------


@dataclass(frozen=True)
class Override:
    """`!override value`: replaces what the earlier files say instead of merging into it."""

    value: Any


@dataclass(frozen=True)
class Reset:
    """`!reset`: removes the attribute the earlier files set."""


class ComposeLoader(yaml.SafeLoader):
    pass


def _override(loader: ComposeLoader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


ComposeLoader.add_constructor("!override", _override)
ComposeLoader.add_constructor("!reset", lambda loader, node: Reset())


def load_compose_file(path: Path) -> dict:
    """One compose file as written, its `!override` / `!reset` tags kept as Override / Reset."""
    return yaml.load(path.read_text(), Loader=ComposeLoader)


def without_tags(node):
    """The file's content with the tags' values in place (what the compose schema validates)."""
    if isinstance(node, Override):
        return without_tags(node.value)
    if isinstance(node, dict):
        return {key: without_tags(value) for key, value in node.items() if not isinstance(value, Reset)}
    if isinstance(node, list):
        return [without_tags(value) for value in node]
    return node


def merge(base, override, key: str | None = None):
    """The compose-spec merge of one file into what the earlier ones gave."""
    if isinstance(override, Override):
        return without_tags(override.value)
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            if isinstance(value, Reset):
                merged.pop(name, None)
            elif name in merged:
                merged[name] = merge(merged[name], value, name)
            else:
                merged[name] = without_tags(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return base + [item for item in without_tags(override) if item not in base]
    return without_tags(override)


def load_compose(*overrides: Path) -> dict:
    """docker-compose.yml with these override files merged in, in order (as `-f a -f b` does)."""
    model = without_tags(load_compose_file(COMPOSE_FILE))
    for path in overrides:
        model = merge(model, load_compose_file(path))
    return model


def active_services(model: dict, profiles: tuple[str, ...] = ()) -> dict[str, dict]:
    """The services `docker compose up` starts with these profiles enabled."""
    return {
        name: service
        for name, service in model["services"].items()
        if not service.get("profiles") or set(service["profiles"]) & set(profiles)
    }


def compose_schema_errors(document: dict) -> list[str]:
    """Where the document breaks the compose-spec JSON schema (as vendored by check-jsonschema)."""
    schema = json.loads((files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]
