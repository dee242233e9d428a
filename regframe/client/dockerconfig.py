"""Credentials from ``~/.docker/config.json``, as docker, crane and skopeo find them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from .errors import RegistryAuthenticationError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}


def config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def _keys_for(host: str) -> list[str]:
    if host in _HUB_HOSTS:
        return [DOCKER_HUB_KEY, "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"https://{host}/v2/"]


def _from_helper(helper: str, host_key: str) -> tuple[str, str] | None:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run([program, "get"], input=host_key.encode(), capture_output=True, timeout=30)
    except FileNotFoundError:
        raise RegistryAuthenticationError(
            f"docker config names credential helper {helper!r} but {program} is not on PATH"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthenticationError(f"{program} did not answer within 30 s") from None
    if done.returncode != 0:
        return None  # helpers exit non-zero for "no credentials for this server"
    try:
        answer = json.loads(done.stdout)
        return answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise RegistryAuthenticationError(f"{program} answered something that is not credentials") from None


def load_credentials(host: str, path: Path | None = None) -> tuple[str, str] | None:
    """Return (user, password) for ``host`` (``name[:port]``) from the docker config, or None."""
    path = path or config_path()
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RegistryAuthenticationError(f"cannot read docker config {path}: {exc}") from None
    if not isinstance(config, dict):
        return None
    keys = _keys_for(host)
    helpers = config.get("credHelpers") or {}
    for key in keys:
        if key in helpers:
            return _from_helper(helpers[key], key)
    auths = config.get("auths") or {}
    for key in keys:
        entry = auths.get(key)
        if not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise RegistryAuthenticationError(f"docker config entry for {key} has a malformed auth field") from None
            return user, password
        if entry.get("username") and entry.get("password"):
            return entry["username"], entry["password"]
    if config.get("credsStore"):
        return _from_helper(config["credsStore"], keys[0])
    return None
