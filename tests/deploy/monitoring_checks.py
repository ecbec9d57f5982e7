"""What the monitoring pack may refer to: the metrics our code exports, the series the rules record,
and the few metrics of other software (Prometheus, the object stores, the node exporter, kubelet),
plus a reader that takes the metric names out of a PromQL expression.

The code's metrics are read from the services' own registries (the gateway's Metrics class, the
inference service's REGISTRY), so a renamed or removed metric fails the checks of every rule,
dashboard query and table row that still names it.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import yaml
from deploy_checks import REPO_ROOT

MONITORING = REPO_ROOT / "deploy/monitoring"
RULES = MONITORING / "prometheus/rules"
DASHBOARDS = MONITORING / "grafana/dashboards"

# Metrics of other software the rules and the dashboard use, and who exports them.
EXTERNAL_METRICS = {
    "up": "Prometheus, for every target: 1 when its last scrape succeeded",
    "ALERTS": "Prometheus: one series per pending or firing alert",
    "minio_s3_requests_5xx_errors_total": "MinIO (/minio/v2/metrics/cluster)",
    "minio_cluster_drive_offline_total": "MinIO (/minio/v2/metrics/cluster)",
    "minio_cluster_capacity_usable_free_bytes": "MinIO (/minio/v2/metrics/cluster)",
    "minio_cluster_capacity_usable_total_bytes": "MinIO (/minio/v2/metrics/cluster)",
    "SeaweedFS_s3_request_total": "SeaweedFS (-metricsPort)",
    "node_filesystem_avail_bytes": "node exporter",
    "node_filesystem_size_bytes": "node exporter",
    "kubelet_volume_stats_available_bytes": "kubelet (Kubernetes)",
    "kubelet_volume_stats_capacity_bytes": "kubelet (Kubernetes)",
}

SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def _families(registry) -> dict[str, str]:
    return {family.name: family.type for family in registry.collect()}


@cache
def code_metric_families() -> dict[str, tuple[str, str]]:
    """Every metric family our services export: name -> (service, type)."""
    from gateway.observability import Metrics
    from inference import metrics as inference_metrics

    families = {name: ("gateway", kind) for name, kind in _families(Metrics().registry).items()}
    families |= {name: ("inference", kind) for name, kind in _families(inference_metrics.REGISTRY).items()}
    return families


@cache
def code_metric_labels() -> dict[str, frozenset[str]]:
    """Each code metric family's label names (from the metric objects in the registries)."""
    from gateway.observability import Metrics
    from inference import metrics as inference_metrics

    labels = {}
    for registry in (Metrics().registry, inference_metrics.REGISTRY):
        for collector in list(registry._collector_to_names):  # the registered metric objects
            labels[collector._name] = frozenset(collector._labelnames)
    return labels


@cache
def code_sample_names() -> dict[str, str]:
    """Every series name the services' /metrics can show -> its family."""
    return {
        family + suffix: family
        for family, (_, kind) in code_metric_families().items()
        for suffix in SAMPLE_SUFFIXES[kind]
    }


def rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def rules() -> list[dict]:
    return [
        rule for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]
    ]


@cache
def recorded_series() -> frozenset[str]:
    return frozenset(rule["record"] for rule in rules() if "record" in rule)


def known_series() -> set[str]:
    return set(code_sample_names()) | set(recorded_series()) | set(EXTERNAL_METRICS)


# --- metric names in PromQL ----------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_OFFSET = re.compile(r"\boffset\s+-?\w+")
_IDENTIFIER = re.compile(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)(?![\w:])(\s*\()?")
_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "inf",
    "nan",
    "atan2",
}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (function names, keywords, label names and
    values, durations and numbers left out)."""
    text = _STRING.sub('""', expression)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    while _GROUPING.search(text):
        text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    # a selector written only as {__name__="..."} names its metric in the matcher
    names |= set(re.findall(r'__name__\s*=\s*"([^"]+)"', expression))
    return names


def selectors(expression: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(metric name, its matchers) of every selector written `name{...}`."""
    text = _STRING.sub(lambda m: m.group(0).replace("{", "(").replace("}", ")"), expression)
    found = []
    for name, block in re.findall(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^{}]*)\}", text):
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', block)
        found.append((name, matchers))
    return found


def label_matchers(expression: str) -> list[tuple[str, str, str]]:
    """(label, operator, value) of every matcher in the expression."""
    found = []
    for block in re.findall(r"\{([^{}]*)\}", expression):
        for label, operator, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', block):
            found.append((label, operator, value))
    return found
