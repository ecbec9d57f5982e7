"""ruff (lint and format) and mypy keep the four Python packages honest: zero findings.

The training package's types are checked in its own environment (tests/training/test_code_quality.py),
where TensorFlow is installed.
"""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["cxr_model/cxr_model", "services/inference/inference", "services/api/gateway", "training/trainer"]
TYPED_HERE = ["cxr_model/cxr_model", "services/inference/inference", "services/api/gateway"]


def run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "check",
    [["ruff", "check", "--no-cache"], ["ruff", "format", "--check", "--no-cache"]],
    ids=["ruff-lint", "ruff-format"],
)
def test_ruff_finds_nothing(check):
    result = run(sys.executable, "-m", *check, *PACKAGES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    result = run(sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", *TYPED_HERE)
    assert result.returncode == 0, result.stdout + result.stderr
