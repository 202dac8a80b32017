"""External programs the tests run (kubectl, promtool): found on PATH or named by an
environment variable. Missing -> the test fails saying how to get it; it never skips."""
from __future__ import annotations

import os
import shutil

import pytest


def required_binary(name: str, env_var: str, how_to_get: str) -> str:
    path = os.environ.get(env_var) or shutil.which(name)
    if not path:
        pytest.fail(f"{name} not found on PATH (set ${env_var} to override): {how_to_get}")
    return path
