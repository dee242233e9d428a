"""Shared fixtures: real registries started by the harness, one per session where tests do not disturb
each other (each test uses its own repository names)."""

from __future__ import annotations

import itertools
import os
import shutil

import pytest

import regframe
from regframe.testing import local_registry

_names = itertools.count()


def pytest_collection_modifyitems(config, items):
    if shutil.which("docker-registry") is None and not os.environ.get("TEST_REGISTRY"):
        skip = pytest.mark.skip(reason="docker-registry is not installed (make test installs it)")
        for item in items:
            if "registry" in getattr(item, "fixturenames", ()) or any(
                "registry" in name for name in getattr(item, "fixturenames", ())
            ):
                item.add_marker(skip)


@pytest.fixture(scope="session")
def registry_url():
    """An anonymous registry: TEST_REGISTRY when given (as the gem's suite allows), else a harness one."""
    given = os.environ.get("TEST_REGISTRY")
    if given:
        yield given.rstrip("/")
        return
    with local_registry() as reg:
        yield reg.url


@pytest.fixture(scope="session")
def anon(registry_url):
    with regframe.connect(registry_url) as reg:
        yield reg


@pytest.fixture
def repo_name(request):
    """A repository name of this test's own, so tests can share one registry."""
    base = request.node.name.lower().replace("[", "-").replace("]", "")
    clean = "".join(c if c.isalnum() else "-" for c in base).strip("-")[:40].strip("-")
    return f"t{next(_names)}/{clean or 'repo'}"
