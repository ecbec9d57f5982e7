"""The monitoring pack (deploy/monitoring/) against Prometheus' own checker and against the code.

- promtool (Debian's prometheus package, installed by scripts/test.sh) checks the rule files and
  the scrape configuration, and runs the rules' unit tests (prometheus/tests/);
- every metric a rule or a dashboard query selects is exported by our services (read from their
  registries), recorded by a rule, or one of the few of other software in monitoring_checks;
  every label matched on exists on that metric, every `route` is a real gateway route, every
  `job` one the scrape configuration and the Kubernetes monitors give;
- the model cards' test prevalence in the rules is the cards' (generate_rules.py is up to date);
- the compose override, the Grafana provisioning and dashboard, and the Kubernetes objects
  (ServiceMonitors, PodMonitor, PrometheusRule, NetworkPolicy, dashboard ConfigMap) fit together
  and fit the services (ports, paths, labels).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from compose_checks import (
    MONITORING_OVERRIDE,
    SEAWEEDFS_OVERRIDE,
    active_services,
    compose_schema_errors,
    environment,
    load_compose,
    load_compose_file,
)
from deploy_checks import REPO_ROOT, _app, base_manifests, listening_port, serves_get
from monitoring_checks import (
    DASHBOARDS,
    EXTERNAL_METRICS,
    MONITORING,
    RULES,
    code_metric_families,
    code_metric_labels,
    code_sample_names,
    known_series,
    label_matchers,
    metric_names,
    recorded_series,
    rule_files,
    rules,
    selectors,
)

PROMETHEUS_CONFIG = MONITORING / "prometheus/prometheus.yml"
RULE_TESTS = MONITORING / "prometheus/tests"
GENERATOR = MONITORING / "generate_rules.py"
MODEL_CARD_RULES = RULES / "cxr-model-cards.yml"
PROMETHEUS_RULE = MONITORING / "kubernetes/prometheus-rule.yaml"
KUBERNETES_VERSION = "1.30"
KSERVE_OVERLAY = REPO_ROOT / "k8s/overlays/kserve"

# What the issue asks the alerts to cover, and the alerts that do.
REQUIRED_ALERTS = {
    "5xx rate": {"CxrGatewayServerErrors", "CxrInferenceErrors"},
    "503 rate": {"CxrGatewayUnavailableAnswers", "CxrGatewayNotReady"},
    "p99 latency": {"CxrGatewayClassifyLatencyHigh", "CxrInferenceLatencyHigh"},
    "inference not ready": {"CxrInferenceNotReady", "CxrInferenceAbsent"},
    "label mix against the model card": {"CxrLabelMixShift"},
    "disk and bucket errors": {
        "CxrObjectStoreDown",
        "CxrMinioServerErrors",
        "CxrMinioDriveOffline",
        "CxrMinioCapacityLow",
        "CxrSeaweedfsServerErrors",
        "CxrHostDiskLow",
        "CxrVolumeDiskLow",
    },
}
SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
# labels Prometheus adds to every target's series, and the histogram bucket bound
TARGET_LABELS = {"job", "instance", "le"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian's prometheus package; scripts/test.sh installs it)")
    return path


def run_promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *arguments], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def load_generator():
    spec = importlib.util.spec_from_file_location("generate_rules", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def alerts() -> dict[str, dict]:
    found = {}
    for rule in rules():
        if "alert" in rule:
            assert rule["alert"] not in found, f"alert {rule['alert']} defined twice"
            found[rule["alert"]] = rule
    return found


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def dashboard_expressions() -> list[tuple[str, str]]:
    """(panel title, expression) of every query of every dashboard."""
    found = []
    for path in dashboard_files():
        for panel in json.loads(path.read_text())["panels"]:
            found += [(panel["title"], target["expr"]) for target in panel.get("targets", [])]
    return found


def all_expressions() -> list[tuple[str, str]]:
    return [(rule.get("alert") or rule["record"], rule["expr"]) for rule in rules()] + dashboard_expressions()


# Every file of the pack and the test that checks it (a new file needs a check before it is listed).
CHECKED_FILES = {
    "compose.yml": "the compose override tests below",
    "generate_rules.py": "test_generated_files_are_up_to_date",
    "kustomization.yaml": "test_kustomization_lists_every_kubernetes_file and the Kubernetes tests",
    "kubernetes/network-policy.yaml": "test_network_policy_opens_only_the_metrics_ports_to_prometheus",
    "kubernetes/pod-monitor-kserve.yaml": "test_pod_monitor_selects_the_kserve_predictor_pods",
    "kubernetes/prometheus-rule.yaml": "test_the_prometheus_rule_holds_exactly_the_rule_files_groups",
    "kubernetes/service-monitors.yaml": "test_service_monitors_select_the_services_and_their_metrics_ports",
    "prometheus/prometheus.yml": "test_promtool_accepts_the_scrape_configuration, test_scrape_targets_...",
    "prometheus/rules/cxr-alerts.yml": "promtool, the rule structure and metric tests",
    "prometheus/rules/cxr-model-cards.yml": "test_the_rules_test_prevalence_is_each_models_current_card",
    "prometheus/tests/cxr-alerts.test.yml": "test_the_rules_unit_tests_pass",
    "grafana/dashboards/cxr-overview.json": "the dashboard tests",
    "grafana/provisioning/dashboards/cxr.yml": "test_grafana_is_provisioned_with_the_datasource_and_dashboards",
    "grafana/provisioning/datasources/prometheus.yml": "test_grafana_is_provisioned_with_the_datasource_and_dashboards",
}


def test_every_file_of_the_pack_is_checked():
    on_disk = {
        str(path.relative_to(MONITORING))
        for path in MONITORING.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert on_disk == set(CHECKED_FILES)


# --- promtool -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", rule_files(), ids=lambda path: path.name)
def test_promtool_accepts_the_rule_file(path):
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_scrape_configuration():
    result = run_promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", sorted(RULE_TESTS.glob("*.test.yml")), ids=lambda path: path.name)
def test_the_rules_unit_tests_pass(path):
    # made-up series in, the alerts expected to fire out (including the label-mix shift)
    result = run_promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_broken_rule(tmp_path):
    # guards the checks above: promtool really parses the PromQL
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: x\n    rules:\n      - alert: X\n        expr: sum(rate(up[5m])\n")
    assert run_promtool("check", "rules", str(broken)).returncode != 0


def test_the_rule_tests_load_every_rule_file():
    for path in RULE_TESTS.glob("*.test.yml"):
        loaded = {(path.parent / name).resolve() for name in yaml.safe_load(path.read_text())["rule_files"]}
        assert loaded == {rule_file.resolve() for rule_file in rule_files()}, path.name


# --- the rules' structure (also without promtool) ----------------------------------------------------


def test_rule_files_are_well_formed():
    names = set()
    for path in rule_files():
        groups = yaml.safe_load(path.read_text())["groups"]
        for group in groups:
            assert group["name"] not in names, f"group {group['name']} twice"
            names.add(group["name"])
            for rule in group["rules"]:
                assert ("alert" in rule) != ("record" in rule), rule
                assert isinstance(rule["expr"], str) and rule["expr"].strip()
                allowed = (
                    {"alert", "expr", "for", "labels", "annotations"}
                    if "alert" in rule
                    else {"record", "expr", "labels"}
                )
                assert set(rule) <= allowed, rule
                if "for" in rule:
                    assert DURATION.match(rule["for"]), rule["for"]
                if "record" in rule:
                    assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]


def test_every_alert_has_a_severity_and_says_what_happened():
    for name, rule in alerts().items():
        assert re.fullmatch(r"Cxr[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_the_alerts_cover_what_the_issue_asks_for():
    missing = {topic: names - set(alerts()) for topic, names in REQUIRED_ALERTS.items() if names - set(alerts())}
    assert not missing, missing


def test_unusual_image_rate_alert_once_the_code_counts_unusual_images():
    # the rate of images the model's out-of-distribution guard flags: the code exports no metric
    # for it yet, so neither the rules nor the dashboard can have one; once a gateway or inference
    # metric (or label) for it exists, an alert and a dashboard panel must use it
    def about_unusual(text: str) -> bool:
        return bool(re.search(r"ood|unusual|out_of_distribution", text))

    counted = [name for name in code_metric_families() if about_unusual(name)]
    counted += [
        f"{name}{{{label}}}"
        for name, labels in code_metric_labels().items()
        for label in labels
        if about_unusual(label)
    ]
    if not counted:
        pytest.skip("no metric of the code counts unusual (out-of-distribution) images yet")
    assert any(about_unusual(rule["expr"]) for rule in alerts().values()), counted
    assert any(about_unusual(expression) for _, expression in dashboard_expressions()), counted


# --- metric names, labels, routes, jobs ------------------------------------------------------


@pytest.mark.parametrize(
    "where, expression", all_expressions(), ids=lambda value: value[:40] if isinstance(value, str) else ""
)
def test_every_metric_named_exists(where, expression):
    unknown = metric_names(expression) - known_series()
    assert not unknown, f"{where}: {unknown} is exported by no service, recorded by no rule, and not an external metric"


def test_every_code_metric_and_recording_is_used():
    used = set().union(*(metric_names(expression) for _, expression in all_expressions()))
    families_used = {code_sample_names()[name] for name in used if name in code_sample_names()}
    assert families_used == set(code_metric_families()), set(code_metric_families()) - families_used
    assert set(recorded_series()) <= used


def test_every_external_metric_is_used():
    used = set().union(*(metric_names(expression) for _, expression in all_expressions()))
    assert set(EXTERNAL_METRICS) <= used, set(EXTERNAL_METRICS) - used


def test_label_matchers_name_labels_the_metric_has():
    labels = code_metric_labels()
    for where, expression in all_expressions():
        for name, matchers in selectors(expression):
            family = code_sample_names().get(name)
            if family is None:
                continue
            unknown = {label for label, _, _ in matchers} - labels[family] - TARGET_LABELS
            assert not unknown, f"{where}: {name} has no label {unknown}"


def _alternatives(operator: str, value: str) -> set[str]:
    return set(value.split("|")) if operator in ("=~", "!~") else {value}


def test_routes_in_the_rules_and_dashboards_are_the_gateways():
    # the route label is the matched route's template; /metrics is left out of the OpenAPI document
    routes = set(_app("api").openapi()["paths"])
    for where, expression in all_expressions():
        for label, operator, value in label_matchers(expression):
            if label == "route":
                for route in _alternatives(operator, value):
                    assert route in routes or serves_get("api", route), f"{where}: {route} is not a gateway route"


def _compose_jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in yaml.safe_load(PROMETHEUS_CONFIG.read_text())["scrape_configs"]}


def _kubernetes_jobs() -> set[str]:
    """The job names the ServiceMonitors' and PodMonitor's relabelings give."""
    jobs = set()
    for monitor in monitoring_objects():
        if monitor["kind"] not in ("ServiceMonitor", "PodMonitor"):
            continue
        endpoints = monitor["spec"].get("endpoints") or monitor["spec"].get("podMetricsEndpoints")
        for endpoint in endpoints:
            for relabeling in endpoint.get("relabelings", []):
                if relabeling.get("targetLabel") != "job":
                    continue
                if "$1" in relabeling["replacement"]:
                    values = monitor["spec"]["selector"]["matchExpressions"][0]["values"]
                    jobs |= {relabeling["replacement"].replace("$1", value) for value in values}
                else:
                    jobs.add(relabeling["replacement"])
    return jobs


def test_jobs_in_the_rules_and_dashboards_are_scraped_in_both_deployments():
    compose_jobs, kubernetes_jobs = set(_compose_jobs()), _kubernetes_jobs()
    for where, expression in all_expressions():
        for label, operator, value in label_matchers(expression):
            if label == "job":
                jobs = _alternatives(operator, value)
                assert jobs <= compose_jobs, f"{where}: the compose Prometheus has no job {jobs - compose_jobs}"
                kubernetes_only_elsewhere = jobs - kubernetes_jobs - {"cxr-seaweedfs"}  # no SeaweedFS on Kubernetes
                assert not kubernetes_only_elsewhere, (
                    f"{where}: no Kubernetes monitor gives job {kubernetes_only_elsewhere}"
                )


def test_metric_name_reader():
    # guards the checks above
    expression = """
      histogram_quantile(0.99, sum by (le, model) (rate(a_bucket{route="/x", job=~"b|c"}[5m]))) > 2.5
        and on (model) sum without (instance) (increase(b_total[1d] offset 1h)) >= 100
        unless absent(up{job="x"}) or label_replace(c, "dst", "$1", "src", "(.*)") / 1e3
    """
    assert metric_names(expression) == {"a_bucket", "b_total", "up", "c"}
    assert ("route", "=", "/x") in label_matchers(expression)
    assert ("a_bucket", [("route", "=", "/x"), ("job", "=~", "b|c")]) in selectors(expression)


# --- the model cards' prevalence ---------------------------------------------------------------


def test_generated_files_are_up_to_date():
    generator = load_generator()
    stale = [str(path.relative_to(REPO_ROOT)) for path, text in generator.outputs().items() if path.read_text() != text]
    assert not stale, f"run `.venv/bin/python deploy/monitoring/generate_rules.py`: {stale} out of date"


def test_the_rules_test_prevalence_is_each_models_current_card():
    (group,) = yaml.safe_load(MODEL_CARD_RULES.read_text())["groups"]
    written = {(r["labels"]["model"], r["labels"]["label"]): r for r in group["rules"]}
    expected = {}
    for model in (REPO_ROOT / "models").iterdir():
        versions = [v for v in model.iterdir() if (v / "model.json").is_file()]
        if not versions:
            continue
        newest = max(versions, key=lambda v: int(v.name))
        card = json.loads((newest / "model.json").read_text())
        counts = card["training"]["class_counts"]["test"]
        for label in card["labels"]:
            expected[(model.name, label)] = (counts[label] / sum(counts.values()), newest.name)
    assert set(written) == set(expected)
    for key, (prevalence, version) in expected.items():
        rule = written[key]
        assert rule["record"] == "cxr:model_card_test_prevalence:ratio"
        (value,) = re.fullmatch(r"vector\(([0-9.e-]+)\)", rule["expr"]).groups()
        assert float(value) == pytest.approx(prevalence, abs=1e-12), key
        assert rule["labels"]["version"] == version
    # the committed card: 390 of 624 test images show pneumonia
    assert expected[("pneumonia-xray", "pneumonia")][0] == pytest.approx(0.625)


def test_the_label_mix_alert_compares_against_the_card():
    expression = alerts()["CxrLabelMixShift"]["expr"]
    assert {"cxr:classification_label_share:ratio1d", "cxr:model_card_test_prevalence:ratio"} <= metric_names(
        expression
    )
    assert "on (model, label)" in expression


def test_the_prometheus_rule_holds_exactly_the_rule_files_groups():
    (rule,) = [doc for doc in monitoring_objects() if doc["kind"] == "PrometheusRule"]
    groups = [group for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"]]
    assert rule["spec"]["groups"] == groups
    assert set(rule["spec"]) == {"groups"} and rule["apiVersion"] == "monitoring.coreos.com/v1"


# --- the compose override ----------------------------------------------------------------------


@pytest.fixture(scope="module", params=["minio", "seaweedfs"])
def monitored(request) -> dict:
    """docker-compose.yml with the monitoring override, with either object store."""
    overrides = (MONITORING_OVERRIDE,) if request.param == "minio" else (SEAWEEDFS_OVERRIDE, MONITORING_OVERRIDE)
    return load_compose(*overrides)


def test_monitoring_override_matches_the_compose_specification(monitored):
    assert not compose_schema_errors(monitored)


def test_scrape_targets_are_the_services_ports(monitored):
    jobs = _compose_jobs()
    services = monitored["services"]

    def target(job):
        (config,) = jobs[job]["dns_sd_configs"]
        (name,) = config["names"]
        return name, config["port"]

    assert target("cxr-api") == ("api", listening_port("api"))
    assert target("cxr-inference") == ("inference", listening_port("inference"))
    assert target("cxr-minio") == ("minio", 9000) and jobs["cxr-minio"]["metrics_path"] == "/minio/v2/metrics/cluster"
    assert environment(services["minio"])["MINIO_PROMETHEUS_AUTH_TYPE"] == "public"
    seaweedfs = load_compose(SEAWEEDFS_OVERRIDE)["services"]["seaweedfs"]
    assert target("cxr-seaweedfs") == ("seaweedfs", 9327) and "-metricsPort=9327" in seaweedfs["command"]
    (node,) = jobs["node"]["static_configs"][0]["targets"]
    assert node == "node-exporter:9100" and "node-exporter" in services
    # /metrics is served by both of our services, on the port scraped
    assert serves_get("api", "/metrics") and serves_get("inference", "/metrics")


def test_prometheus_reaches_the_services_and_grafana_reaches_prometheus(monitored):
    services = active_services(monitored)
    prometheus, grafana = services["prometheus"], services["grafana"]
    for name in ("api", "inference"):
        assert set(prometheus["networks"]) & set(services[name]["networks"]), name
    store = "seaweedfs" if "seaweedfs" in services else "minio"
    assert set(prometheus["networks"]) & set(services[store]["networks"])
    assert set(prometheus["networks"]) & set(services["node-exporter"]["networks"])
    assert set(grafana["networks"]) & set(prometheus["networks"])
    assert "backend" not in grafana["networks"], "Grafana publishes a port: keep it off the backend network"
    assert monitored["networks"]["backend"]["internal"] is True


def test_prometheus_loads_this_folder(monitored):
    prometheus = monitored["services"]["prometheus"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in prometheus["volumes"]}
    assert (REPO_ROOT / mounts["/etc/prometheus"]).resolve() == PROMETHEUS_CONFIG.parent.resolve()
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    (pattern,) = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    assert sorted(PROMETHEUS_CONFIG.parent.glob(pattern)) == rule_files()


def test_grafana_is_provisioned_with_the_datasource_and_dashboards(monitored):
    grafana = monitored["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    provisioning = REPO_ROOT / mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards/cxr.yml").read_text())["providers"]
    assert (REPO_ROOT / mounts[provider["options"]["path"]]).resolve() == DASHBOARDS.resolve()
    (datasource,) = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"]
    url = urlsplit(datasource["url"])
    assert (url.hostname, url.port, datasource["type"]) == ("prometheus", 9090, "prometheus")
    assert "prometheus" in monitored["services"]


def test_grafana_is_only_on_loopback_and_needs_a_password(monitored):
    grafana = monitored["services"]["grafana"]
    assert grafana["ports"] == ["127.0.0.1:3000:3000"]
    raw = load_compose_file(MONITORING_OVERRIDE)["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert raw.startswith("${GRAFANA_ADMIN_PASSWORD:?")
    with pytest.raises(KeyError, match="GRAFANA_ADMIN_PASSWORD"):
        environment(grafana, {})


def test_monitoring_containers_are_hardened_and_checked(monitored):
    for name in ("prometheus", "grafana", "node-exporter"):
        service = monitored["services"][name]
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"] and "/tmp" in service["tmpfs"], name
        assert service["healthcheck"]["test"][0] == "CMD", name
    ports = {
        "prometheus": 9090,
        "grafana": 3000,
        "node-exporter": 9100,
    }
    for name, port in ports.items():
        url = urlsplit(monitored["services"][name]["healthcheck"]["test"][-1])
        assert url.port == port, name


# --- the dashboard ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.name)
def test_dashboard_is_a_well_formed_grafana_dashboard(path):
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == ("datasource", "datasource", "prometheus")
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["type"] in ("timeseries", "stat") and panel["title"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        position = panel["gridPos"]
        assert all(isinstance(position[key], int) for key in ("h", "w", "x", "y"))
        assert position["x"] + position["w"] <= 24, panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert panel["targets"] and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["datasource"] == panel["datasource"]


def test_dashboard_shows_what_the_issue_asks_for():
    queries = {}
    for title, expression in dashboard_expressions():
        queries.setdefault(title, []).append(expression)

    def shown(predicate) -> bool:
        return any(predicate(expression) for expressions in queries.values() for expression in expressions)

    assert shown(lambda e: "cxr:gateway_requests:rate5m" in metric_names(e) and "by (route)" in e), "request rate"
    assert shown(lambda e: 'status="503"' in e) and shown(lambda e: 'status=~"5.."' in e), "5xx and 503"
    assert shown(lambda e: "histogram_quantile(0.99" in e and "gateway_http_request_duration_seconds_bucket" in e), (
        "p99"
    )
    assert shown(lambda e: 'up{job="cxr-inference"}' in e), "inference ready"
    assert shown(lambda e: {"cxr:classification_label_share:ratio1d"} <= metric_names(e)), "label mix"
    assert shown(lambda e: "cxr:model_card_test_prevalence:ratio" in metric_names(e)), "the card's prevalence"


# --- Kubernetes ----------------------------------------------------------------------------------------


def _kustomization() -> dict:
    return yaml.safe_load((MONITORING / "kustomization.yaml").read_text())


def monitoring_objects() -> list[dict]:
    """deploy/monitoring as kustomize renders it, or (without kubectl) its resource files."""
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        result = subprocess.run([kubectl, "kustomize", str(MONITORING)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return [
        doc
        for resource in _kustomization()["resources"]
        for doc in yaml.safe_load_all((MONITORING / resource).read_text())
        if doc
    ]


def test_kustomization_lists_every_kubernetes_file():
    kustomization = _kustomization()
    on_disk = {str(path.relative_to(MONITORING)) for path in (MONITORING / "kubernetes").glob("*.yaml")}
    assert set(kustomization["resources"]) == on_disk
    (generator,) = kustomization["configMapGenerator"]
    assert {str(DASHBOARDS.relative_to(MONITORING) / path.name) for path in dashboard_files()} == set(
        generator["files"]
    )


def test_kubernetes_objects_are_the_expected_ones():
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for doc in monitoring_objects())
    assert kinds == [
        ("ConfigMap", "cxr-grafana-dashboard"),
        ("NetworkPolicy", "metrics-from-prometheus"),
        ("PodMonitor", "cxr-inference-kserve"),
        ("PrometheusRule", "cxr"),
        ("ServiceMonitor", "cxr"),
        ("ServiceMonitor", "cxr-minio"),
    ]
    if shutil.which("kubectl"):
        assert all(doc["metadata"]["namespace"] == "cxr" for doc in monitoring_objects())


def test_core_objects_match_the_kubernetes_schema():
    for doc in monitoring_objects():
        if doc["apiVersion"] in ("v1", "networking.k8s.io/v1"):
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


MONITOR_SPEC_FIELDS = {"selector", "endpoints", "podMetricsEndpoints", "namespaceSelector", "jobLabel"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "relabelings", "scheme"}
RELABELING_FIELDS = {"sourceLabels", "targetLabel", "replacement", "regex", "action", "separator"}


def test_monitors_use_only_known_fields():
    # no CRD schema of the Prometheus Operator is at hand: the fields used are checked by name
    for monitor in monitoring_objects():
        if monitor["kind"] not in ("ServiceMonitor", "PodMonitor"):
            continue
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(monitor["spec"]) <= MONITOR_SPEC_FIELDS, monitor["metadata"]["name"]
        for endpoint in monitor["spec"].get("endpoints") or monitor["spec"]["podMetricsEndpoints"]:
            assert set(endpoint) <= ENDPOINT_FIELDS and DURATION.match(endpoint["interval"])
            for relabeling in endpoint.get("relabelings", []):
                assert set(relabeling) <= RELABELING_FIELDS


def _selects(selector: dict, labels: dict) -> bool:
    if any(labels.get(key) != value for key, value in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_service_monitors_select_the_services_and_their_metrics_ports():
    services = {doc["metadata"]["name"]: doc for doc in base_manifests() if doc["kind"] == "Service"}
    monitors = {doc["metadata"]["name"]: doc for doc in monitoring_objects() if doc["kind"] == "ServiceMonitor"}

    def selected(monitor):
        return {
            name
            for name, service in services.items()
            if _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
        }

    assert selected(monitors["cxr"]) == {"api", "inference"}
    (endpoint,) = monitors["cxr"]["spec"]["endpoints"]
    for name in ("api", "inference"):
        (port,) = [p for p in services[name]["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert port["port"] == listening_port(name) and serves_get(name, endpoint["path"])
    assert selected(monitors["cxr-minio"]) == {"minio"}
    (endpoint,) = monitors["cxr-minio"]["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in services["minio"]["spec"]["ports"]]
    assert endpoint["path"] == _compose_jobs()["cxr-minio"]["metrics_path"]
    assert {"cxr-api", "cxr-inference", "cxr-minio"} <= _kubernetes_jobs()


def test_pod_monitor_selects_the_kserve_predictor_pods():
    (monitor,) = [doc for doc in monitoring_objects() if doc["kind"] == "PodMonitor"]
    (isvc,) = [doc for doc in yaml.safe_load_all((KSERVE_OVERLAY / "inference-service.yaml").read_text())]
    # KServe labels the predictor pods with the InferenceService's name; Knative names the port user-port
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": isvc["metadata"]["name"]
    }
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("user-port", "/metrics")


def test_network_policy_opens_only_the_metrics_ports_to_prometheus():
    (policy,) = [doc for doc in monitoring_objects() if doc["kind"] == "NetworkPolicy"]
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"namespaceSelector", "podSelector"}, "only Prometheus' pods, not its whole namespace"
    assert {port["port"] for port in rule["ports"]} == {listening_port("api"), listening_port("inference"), 9000}
    workloads = [doc for doc in base_manifests() if doc["kind"] in ("Deployment", "StatefulSet")]
    opened = {
        w["metadata"]["name"]
        for w in workloads
        if _selects(policy["spec"]["podSelector"], w["spec"]["template"]["metadata"]["labels"])
    }
    assert opened == {"api", "inference", "minio"}
    isvc = yaml.safe_load((KSERVE_OVERLAY / "inference-service.yaml").read_text())
    assert _selects(policy["spec"]["podSelector"], isvc["spec"]["predictor"]["labels"]), "the KServe predictor pods"


def test_dashboard_config_map_carries_the_dashboard_for_grafanas_sidecar():
    (config_map,) = [doc for doc in monitoring_objects() if doc["kind"] == "ConfigMap"]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    if shutil.which("kubectl"):
        for path in dashboard_files():
            assert json.loads(config_map["data"][path.name]) == json.loads(path.read_text())
