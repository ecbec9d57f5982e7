"""Fixtures of the deployment checks; the helpers themselves live in deploy_checks.py."""

from deploy_checks import dockerfiles  # noqa: F401  (pytest finds fixtures here)
