"""The images run the same package versions the test suite ran against."""

import pytest
from deploy_checks import REPO_ROOT


def pins(path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            found[name.split("[")[0].lower().replace("_", "-")] = version
    return found


@pytest.mark.parametrize("service", ["inference", "api"])
def test_image_lock_agrees_with_the_tested_constraints(service):
    lock = pins(REPO_ROOT / "services" / service / "requirements.lock")
    tested = pins(REPO_ROOT / "requirements" / "constraints.txt")
    assert lock, "the lock file is empty"
    differing = {name: (version, tested.get(name)) for name, version in lock.items() if tested.get(name) != version}
    assert not differing, f"lock vs constraints differ: {differing}"
