"""mypy finds nothing in the training package, checked in the training environment (TensorFlow,
scikit-learn and the trainer's own dependencies installed); and the trainer's code names no class."""

import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAINER = REPO_ROOT / "training" / "trainer"


def test_mypy_finds_nothing_in_the_trainer():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", "/dev/null", "training/trainer"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_trainer_code_names_no_class():
    """Labels come from the data, their words from the config (trainer/datasets/*.json for a data
    set that names its label ids); no Python file hard-codes one."""
    class_literal = re.compile(r"""["'](p\()?(normal|pneumonia)\)?["']""", re.IGNORECASE)
    found = [
        f"{path.name}:{number}: {line.strip()}"
        for path in sorted(TRAINER.glob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if class_literal.search(line)
    ]
    assert not found, "\n".join(found)
