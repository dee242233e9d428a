"""Shared fixtures: real registries started by the harness, one per session where tests do not disturb
each other (each test uses its own repository names)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

import regframe
from regframe.testing import local_registry

_names = itertools.count()


def pytest_collection_modifyitems(config, items):
    if shutil.which("docker-registry") is None and not os.environ.get("TEST_REGISTRY"):
        skip = pytest.mark.skip(reason="docker-registry is not installed (make test installs it)")
        for item in items:
            if any("registry" in name for name in getattr(item, "fixturenames", ())):
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
def basic():
    """An htpasswd registry (alice, bob, carol) for the modules that log in and push to their own
    repositories."""
    with local_registry(auth="basic") as reg:
        yield reg


@pytest.fixture(scope="session")
def tls():
    """A TLS registry with the harness's throwaway CA."""
    with local_registry(tls=True) as reg:
        yield reg


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


def _command_lines(pid: int) -> list[str]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    lines, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            lines.append(Path(f"/proc/{current}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
        todo.extend(children.get(current, []))
    return lines


@pytest.fixture
def process_command_lines() -> Callable[[int], list[str]]:
    """The command lines of a pid and all its descendants, as ``ps`` shows them to every user."""
    return _command_lines
