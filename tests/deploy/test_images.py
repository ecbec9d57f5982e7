"""Every image the deployment files name can be pulled and is pinned.

- No reference to a repository known to be gone (Docker Hub's minio/minio and minio/mc since
  September 2026, Bitnami's versioned images since 2025): `docker compose up` would fail on a new
  server with "pull access denied ... repository does not exist".
- Every image is pinned by digest or by an exact release tag (no `latest`, no `16` or `3-alpine`
  that move); the images we build ourselves are exempt in compose, where their tag is a setting.
- A third-party image is referenced the same way in every file, and the operations guide's image
  table lists each one with how it is pinned.

Files: docker-compose.yml, the compose overrides under deploy/, every manifest and kustomization
under k8s/ (and the rendered overlays where kubectl is installed), the Dockerfiles' FROM lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import yaml
from compose_checks import OVERRIDE_FILES, interpolate, load_compose_file, without_tags
from deploy_checks import COMPOSE_FILE, DOCKERFILE_PATHS, REPO_ROOT, Dockerfile

K8S = REPO_ROOT / "k8s"
GUIDE = REPO_ROOT / "docs/operations.md"

# repository (registry/namespace/name) -> why it cannot be pulled and what replaces it
GONE_REPOSITORIES = {
    "docker.io/minio/minio": "removed from Docker Hub in September 2026: use quay.io/minio/minio",
    "docker.io/minio/mc": "removed from Docker Hub in September 2026: use quay.io/minio/mc",
}
GONE_PREFIXES = {
    "docker.io/bitnami/": (
        "Bitnami's versioned images left Docker Hub in 2025 (bitnamilegacy/ keeps old, unmaintained ones)"
    ),
}
OUR_REPOSITORIES = re.compile(r"(^|/)cxr/(api|inference|frontend)$")

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# RELEASE.2025-09-07T16-13-09Z (MinIO), or a version with at least major.minor: 16.10-bookworm, v3.13.3, 4.48
EXACT_TAG = re.compile(r"^(RELEASE\.\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z|v?\d+\.\d+(\.\d+)*([-+_.][A-Za-z0-9]+)*)$")


@dataclass(frozen=True)
class ImageReference:
    repository: str  # with its registry, e.g. docker.io/library/postgres
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> ImageReference:
        name, _, digest = reference.partition("@")
        last = name.rsplit("/", 1)[-1]
        name, tag = name.rsplit(":", 1) if ":" in last else (name, None)
        first, _, rest = name.partition("/")
        if not rest:  # an official image: postgres
            name = f"docker.io/library/{name}"
        elif "." not in first and ":" not in first and first != "localhost":  # a Docker Hub user: minio/mc
            name = f"docker.io/{name}"
        return cls(name, tag, digest or None)


@dataclass(frozen=True)
class Use:
    where: str
    reference: str
    built_here: bool = False  # compose builds it from this repository; its tag is a setting


def compose_uses() -> list[Use]:
    uses = []
    for path in (COMPOSE_FILE, *OVERRIDE_FILES):
        for name, service in (without_tags(load_compose_file(path)).get("services") or {}).items():
            if "image" in service:
                where = f"{path.relative_to(REPO_ROOT)}: {name}"
                uses.append(Use(where, interpolate(service["image"], {}), built_here="build" in service))
    return uses


def _containers(node, found: list[str]):
    if isinstance(node, dict):
        if isinstance(node.get("image"), str) and "name" in node:
            found.append(node["image"])
        for value in node.values():
            _containers(value, found)
    elif isinstance(node, list):
        for value in node:
            _containers(value, found)


def kubernetes_uses() -> list[Use]:
    uses = []
    for path in sorted(K8S.rglob("*.yaml")):
        where = str(path.relative_to(REPO_ROOT))
        for document in yaml.safe_load_all(path.read_text()):
            if not document:
                continue
            if path.name == "kustomization.yaml":  # images: the tag kustomize sets
                for image in document.get("images", []):
                    name = image.get("newName", image["name"])
                    pinned = f"@{image['digest']}" if "digest" in image else f":{image['newTag']}"
                    uses.append(Use(f"{where}: images", name + pinned))
                continue
            found: list[str] = []
            _containers(document, found)
            uses += [Use(where, reference) for reference in found]
    return uses


def rendered_uses() -> list[Use]:
    """The overlays as kustomize renders them (only where kubectl is installed)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return []
    uses = []
    for overlay in sorted(path.parent for path in (K8S / "overlays").glob("*/kustomization.yaml")):
        result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        found: list[str] = []
        for document in yaml.safe_load_all(result.stdout):
            _containers(document, found)
        uses += [Use(f"{overlay.relative_to(REPO_ROOT)} (rendered)", reference) for reference in found]
    return uses


def dockerfile_uses() -> list[Use]:
    return [
        Use(str(path.relative_to(REPO_ROOT)), image)
        for path in DOCKERFILE_PATHS.values()
        for image in Dockerfile(path).base_images
    ]


@pytest.fixture(scope="module")
def uses() -> list[Use]:
    return compose_uses() + kubernetes_uses() + rendered_uses() + dockerfile_uses()


def problems_of(use: Use) -> list[str]:
    image = ImageReference.parse(use.reference)
    found = []
    if image.repository in GONE_REPOSITORIES:
        found.append(f"{use.where}: {use.reference}: {GONE_REPOSITORIES[image.repository]}")
    for prefix, reason in GONE_PREFIXES.items():
        if image.repository.startswith(prefix):
            found.append(f"{use.where}: {use.reference}: {reason}")
    if image.digest is not None and not DIGEST.match(image.digest):
        found.append(f"{use.where}: {use.reference}: malformed digest")
    if image.digest is None and not use.built_here and not (image.tag and EXACT_TAG.match(image.tag)):
        found.append(f"{use.where}: {use.reference}: neither a digest nor an exact release tag")
    return found


def test_every_file_with_images_is_looked_at(uses):
    # guards the collection: the stores, the monitoring stack and our images are all found
    repositories = {ImageReference.parse(use.reference).repository for use in uses}
    assert {
        "quay.io/minio/minio",
        "quay.io/minio/mc",
        "docker.io/library/postgres",
        "docker.io/chrislusf/seaweedfs",
        "docker.io/prom/prometheus",
        "docker.io/grafana/grafana",
        "docker.io/cxr/inference",
    } <= repositories
    assert any("kserve" in use.where for use in uses)


def test_no_image_is_gone_and_every_image_is_pinned(uses):
    found = [problem for use in uses for problem in problems_of(use)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "reference, reported",
    [
        ("minio/minio:RELEASE.2025-09-07T16-13-09Z", "removed from Docker Hub"),
        ("docker.io/minio/mc:RELEASE.2025-08-13T08-35-41Z@sha256:" + "a" * 64, "removed from Docker Hub"),
        ("bitnami/postgresql:16.4.0", "Bitnami"),
        ("postgres:16", "neither a digest nor an exact release tag"),
        ("postgres:16-bookworm", "neither a digest nor an exact release tag"),
        ("grafana/grafana:latest", "neither a digest nor an exact release tag"),
        ("grafana/grafana", "neither a digest nor an exact release tag"),
        ("quay.io/minio/minio@sha256:1234", "malformed digest"),
    ],
)
def test_checker_refuses(reference, reported):
    # guards the check above
    assert any(reported in problem for problem in problems_of(Use("example", reference)))


@pytest.mark.parametrize(
    "reference",
    [
        "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z@sha256:" + "0" * 64,
        "quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z",
        "postgres:16.10-bookworm",
        "prom/prometheus:v3.13.3",
        "chrislusf/seaweedfs:4.48",
        "registry.example.com:5000/cxr/api:0.1.0",
        "grafana/grafana@sha256:" + "f" * 64,
    ],
)
def test_checker_accepts(reference):
    assert not problems_of(Use("example", reference))


def test_reference_parsing():
    assert ImageReference.parse("postgres:16.10-bookworm") == ImageReference(
        "docker.io/library/postgres", "16.10-bookworm", None
    )
    assert (
        ImageReference.parse("registry.example.com:5000/cxr/api:0.1.0").repository
        == "registry.example.com:5000/cxr/api"
    )
    assert ImageReference.parse("quay.io/minio/mc@sha256:" + "0" * 64).tag is None


def third_party(uses: list[Use]) -> dict[str, set[str]]:
    """Each pulled repository (not ours) and the references naming it."""
    found: dict[str, set[str]] = {}
    for use in uses:
        image = ImageReference.parse(use.reference)
        if not OUR_REPOSITORIES.search(image.repository) and not use.where.startswith("services/"):
            found.setdefault(image.repository, set()).add(use.reference)
    return found


def test_a_third_party_image_is_referenced_the_same_way_everywhere(uses):
    differing = {repository: refs for repository, refs in third_party(uses).items() if len(refs) > 1}
    assert not differing, differing


def test_the_operations_guide_lists_every_pulled_image_with_its_pin(uses):
    table = re.findall(r"^\| `([^`]+)` \| (digest|exact tag) \|", GUIDE.read_text(), re.MULTILINE)
    listed = {reference: kind for reference, kind in table}
    for references in third_party(uses).values():
        (reference,) = references
        assert reference in listed, f"docs/operations.md does not list {reference}"
        pinned = "digest" if ImageReference.parse(reference).digest else "exact tag"
        assert listed[reference] == pinned, reference
    assert set(listed) == {ref for refs in third_party(uses).values() for ref in refs}


def test_minio_comes_from_quay_pinned_by_digest(uses):
    for use in uses:
        image = ImageReference.parse(use.reference)
        if image.repository.endswith(("/minio/minio", "/minio/mc")):
            assert image.repository.startswith("quay.io/") and image.digest, use


def test_kustomize_image_fields_are_plain_strings():
    # a tag like 0.10 written unquoted would be read as the number 0.1
    for path in K8S.rglob("kustomization.yaml"):
        for image in yaml.safe_load(path.read_text()).get("images", []):
            assert all(isinstance(value, str) for value in image.values()), (path, image)
