"""Registry credentials where docker, podman and skopeo keep them: auth files and credential helpers.

Files are searched in the order of containers-auth.json(5), as podman and skopeo search them; the first
file with an entry for the registry wins:

1. ``$REGISTRY_AUTH_FILE`` when set, and then no other file (it is podman's ``--authfile`` default);
2. ``$XDG_RUNTIME_DIR/containers/auth.json`` (``/run/containers/$UID/auth.json`` without XDG_RUNTIME_DIR);
3. ``$XDG_CONFIG_HOME/containers/auth.json`` (``~/.config/containers/auth.json``);
4. ``$DOCKER_CONFIG/config.json`` when DOCKER_CONFIG is set, else ``~/.docker/config.json``;
5. ``~/.dockercfg`` (docker's legacy format).

Within a file: ``credHelpers`` for the registry host, then ``auths`` (namespace keys such as
``registry.example.com/team`` first, most specific first; then the host, then URL forms of it), then
``credsStore``. An ``auths`` entry holds ``auth`` (base64 ``user:password``) or ``username``/``password``,
and may hold ``identitytoken`` (an OAuth2 refresh token) or ``registrytoken`` (a bearer token).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

from .auth import RegistryAuth
from .errors import RegistryAuthenticationError

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_HOSTS = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
HELPER_TIMEOUT = 30.0
HELPER_OUTPUT_LIMIT = 1024 * 1024
# What docker-credential-helpers print, exiting 1, when they hold nothing for the server.
_NOT_FOUND = "credentials not found in native keychain"
# A helper's username that marks its secret as an identity token (docker and containers/image agree).
_TOKEN_USER = "<token>"


@dataclass(frozen=True)
class Credentials:
    """What a login left for one registry; ``source`` says where it was found. Secrets stay out of reprs."""

    user: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)
    source: str = ""

    @property
    def empty(self) -> bool:
        return not (self.password or self.identity_token or self.registry_token)


class AuthFile(NamedTuple):
    path: Path
    legacy: bool = False  # ~/.dockercfg: the auths map itself, keyed by URLs


def config_path() -> Path:
    """Docker's config file: ``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``."""
    return Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"


def auth_files() -> list[AuthFile]:
    """The files searched, in order, as podman and skopeo search them (see the module docstring)."""
    explicit = os.environ.get("REGISTRY_AUTH_FILE")
    if explicit:
        return [AuthFile(Path(explicit))]
    home = Path.home()
    if sys.platform.startswith("linux"):
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        primary = (
            Path(runtime) / "containers" / "auth.json" if runtime else Path(f"/run/containers/{os.getuid()}/auth.json")
        )
    else:
        primary = home / ".config" / "containers" / "auth.json"
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    files = [AuthFile(primary), AuthFile(config_home / "containers" / "auth.json"), AuthFile(config_path())]
    files.append(AuthFile(home / ".dockercfg", legacy=True))
    return list(dict.fromkeys(files))


def _normalize_host(host: str) -> str:
    return "index.docker.io" if host in _HUB_HOSTS else host


def _key_host(key: str, legacy: bool) -> str:
    """The registry host an ``auths`` key names: ``https://host/v1/`` and ``http://host`` become ``host``."""
    stripped = key.removeprefix("http://").removeprefix("https://")
    if legacy or stripped != key:
        stripped = stripped.split("/", 1)[0]
    return _normalize_host(stripped)


def _lookup_keys(host: str, repository: str | None, legacy: bool) -> Iterator[str]:
    """Exact keys, best first: ``host/a/b/c``, ``host/a/b``, ``host/a``, ``host`` (namespaces only outside legacy)."""
    if repository and not legacy:
        parts = repository.split("/")
        for n in range(len(parts), 0, -1):
            for name in _namespace_hosts(host):
                yield f"{name}/{'/'.join(parts[:n])}"
    yield host
    if host in _HUB_HOSTS:
        yield DOCKER_HUB_KEY
        yield from sorted(_HUB_HOSTS - {host})


def _namespace_hosts(host: str) -> tuple[str, ...]:
    """How namespace keys name ``host``: podman writes Docker Hub's as ``docker.io/namespace``."""
    return ("docker.io", host) if host in _HUB_HOSTS and host != "docker.io" else (host,)


def _helper_key(host: str) -> str:
    return DOCKER_HUB_KEY if host in _HUB_HOSTS else host


def _run_helper(helper: str, host: str) -> Credentials | None:
    """Ask ``docker-credential-<helper> get`` for ``host``; its output may hold secrets, so no message shows it."""
    program = f"docker-credential-{helper}"
    key = _helper_key(host)
    if not helper or "/" in helper or os.sep in helper:
        raise RegistryAuthenticationError(f"credential helper name {helper!r} for {host} is not a program name")
    # Each failure is raised after its ``except``: a chained ``__context__`` would carry the helper's
    # output (TimeoutExpired.stdout, JSONDecodeError.doc), which may hold the secret.
    problem = None
    try:
        status, output = _helper_output(program, key)
    except FileNotFoundError:
        problem = "is not on PATH (it is named in the docker or podman config)"
    except PermissionError:
        problem = "is not executable"
    except subprocess.TimeoutExpired:
        problem = f"did not answer within {HELPER_TIMEOUT:g} s"
    except OSError as exc:
        problem = f"could not be started ({type(exc).__name__})"
    if problem is not None:
        raise RegistryAuthenticationError(f"credential helper {program} for {host} {problem}")
    if status is not None and status != 0:
        if _NOT_FOUND in output.decode(errors="replace"):
            return None
        raise RegistryAuthenticationError(
            f"credential helper {program} failed for {host} (exit status {status}); "
            "its output is not shown as it may hold secrets"
        )
    answer = _json_or_none(output) if status is not None else None
    user = answer.get("Username") if isinstance(answer, dict) else None
    secret = answer.get("Secret") if isinstance(answer, dict) else None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise RegistryAuthenticationError(
            f"credential helper {program} answered something that is not credentials for {host}"
        )
    source = f"credential helper {program}"
    if not secret:
        return None
    if user == _TOKEN_USER:
        return Credentials(identity_token=secret, source=source)
    return Credentials(user, secret, source=source)


def _helper_output(program: str, key: str) -> tuple[int | None, bytes]:
    """Run ``program get`` with ``key`` on stdin: its exit status and standard output, read as it comes so a
    helper printing without end costs at most HELPER_OUTPUT_LIMIT bytes. One printing more is killed there
    and its status is None. Its standard error is discarded unread. Raises subprocess.TimeoutExpired when it
    has not finished within HELPER_TIMEOUT."""
    process = subprocess.Popen(
        [program, "get"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    output = bytearray()
    reader = threading.Thread(target=_read_bounded, args=(process, output), daemon=True)
    reader.start()
    deadline = time.monotonic() + HELPER_TIMEOUT
    try:
        assert process.stdin is not None
        try:
            process.stdin.write(key.encode())
            process.stdin.close()
        except OSError:
            pass  # a helper that exits without reading its input is judged by its output and status
        reader.join(HELPER_TIMEOUT)
        if reader.is_alive():
            raise subprocess.TimeoutExpired([program, "get"], HELPER_TIMEOUT)
        status = process.wait(max(0.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return (None if len(output) > HELPER_OUTPUT_LIMIT else status), bytes(output[:HELPER_OUTPUT_LIMIT])


def _read_bounded(process: subprocess.Popen[bytes], output: bytearray) -> None:
    """Append ``process``'s standard output to ``output`` until it ends or passes HELPER_OUTPUT_LIMIT; then
    the process is killed and the pipe closed, which ends any child of it still writing there."""
    stream = process.stdout
    assert stream is not None
    with stream:
        while len(output) <= HELPER_OUTPUT_LIMIT:
            chunk = os.read(stream.fileno(), 64 * 1024)
            if not chunk:
                return
            output += chunk
        process.kill()


def _json_or_none(raw: bytes) -> object:
    """``raw`` parsed, or None: the parser's exception would hold ``raw`` (a secret) in its ``doc``."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        return None


def _from_entry(entry: dict[str, object], where: str) -> Credentials | None:
    """Credentials in one ``auths`` entry; None for an empty one (docker writes ``{}`` next to a credsStore)."""
    user: str | None = None
    password: str | None = None
    encoded = entry.get("auth")
    if encoded:
        decoded = None
        try:
            if isinstance(encoded, str):
                decoded = base64.b64decode(encoded, validate=True).decode()
        except (ValueError, binascii.Error, UnicodeDecodeError):
            pass  # raised below, without the decoded bytes a UnicodeDecodeError would chain along
        if decoded is None:
            raise RegistryAuthenticationError(f"{where} has a malformed auth field (not base64 of user:password)")
        name, sep, secret = decoded.partition(":")
        if not sep:
            raise RegistryAuthenticationError(f"{where} has a malformed auth field (no ':' between user and password)")
        user, password = name, secret.strip("\x00")
    elif isinstance(entry.get("username"), str) and isinstance(entry.get("password"), str):
        user, password = str(entry["username"]), str(entry["password"])
    identity = entry.get("identitytoken")
    registry = entry.get("registrytoken")
    found = Credentials(
        user or None,
        password or None,
        identity if isinstance(identity, str) and identity else None,
        registry if isinstance(registry, str) and registry else None,
        where,
    )
    return None if found.empty else found


def _read(auth_file: AuthFile) -> dict[str, object] | None:
    problem = None
    try:
        data = json.loads(auth_file.path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, ValueError, RecursionError) as exc:
        # Raised below: a JSONDecodeError's ``doc`` is the whole file, every other registry's secret in it.
        problem = type(exc).__name__ + (f" ({exc.strerror})" if isinstance(exc, OSError) and exc.strerror else "")
    if problem is not None:
        raise RegistryAuthenticationError(f"cannot read credentials file {auth_file.path}: {problem}")
    if not isinstance(data, dict):
        raise RegistryAuthenticationError(f"credentials file {auth_file.path} does not hold a JSON object")
    return {"auths": data} if auth_file.legacy else data


class _Lookups:
    """What one ``auth_from_files`` call has read, so each file is parsed once and each helper asked once
    per host. Only answers are kept: a file or helper that fails raises again where it did before."""

    def __init__(self) -> None:
        self._files: dict[AuthFile, dict[str, object] | None] = {}
        self._helpers: dict[tuple[str, str], Credentials | None] = {}

    def read(self, auth_file: AuthFile) -> dict[str, object] | None:
        if auth_file not in self._files:
            self._files[auth_file] = _read(auth_file)
        return self._files[auth_file]

    def run_helper(self, helper: str, host: str) -> Credentials | None:
        if (helper, host) not in self._helpers:
            self._helpers[helper, host] = _run_helper(helper, host)
        return self._helpers[helper, host]


def find_in_file(
    auth_file: AuthFile, host: str, repository: str | None = None, lookups: _Lookups | None = None
) -> Credentials | None:
    """Credentials for ``host`` (``name[:port]``) and, when given, ``repository`` from one file, or None."""
    lookups = lookups or _Lookups()
    config = lookups.read(auth_file)
    if config is None:
        return None
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict):
        for key in _lookup_keys(host, None, legacy=False):
            helper = helpers.get(key)
            if isinstance(helper, str):
                return lookups.run_helper(helper, host)
    auths = config.get("auths")
    if isinstance(auths, dict):
        candidates = [key for key in _lookup_keys(host, repository, auth_file.legacy) if key in auths]
        wanted = _normalize_host(host)
        candidates += [key for key in auths if key not in candidates and _key_host(key, auth_file.legacy) == wanted]
        for key in candidates:
            entry = auths[key]
            if isinstance(entry, dict):
                found = _from_entry(entry, f"{auth_file.path} entry {key!r}")
                if found is not None:
                    return found
    store = config.get("credsStore")
    if isinstance(store, str) and store:
        return lookups.run_helper(store, host)
    return None


def namespaces_for(host: str, lookups: _Lookups | None = None) -> list[str]:
    """Repository namespaces (``team``, ``team/app``) with ``host/namespace`` keys of their own in the auth files.

    Files that cannot be read are skipped here: ``load_credentials`` reports them when the search reaches them."""
    lookups = lookups or _Lookups()
    found: set[str] = set()
    prefixes = tuple(f"{name}/" for name in _namespace_hosts(host))
    for auth_file in auth_files():
        if auth_file.legacy:
            continue
        try:
            auths = (lookups.read(auth_file) or {}).get("auths")
        except RegistryAuthenticationError:
            continue
        if isinstance(auths, dict):
            for key in auths:
                for prefix in prefixes:
                    if key.startswith(prefix):
                        found.add(key[len(prefix) :].strip("/"))
    return sorted(namespace for namespace in found if namespace)


def load_credentials(host: str, repository: str | None = None, lookups: _Lookups | None = None) -> Credentials | None:
    """Credentials for ``host`` (``name[:port]``) from the first auth file that has them, or None.

    Raises RegistryAuthenticationError for an unreadable file or a helper that is missing or fails."""
    lookups = lookups or _Lookups()
    for auth_file in auth_files():
        found = find_in_file(auth_file, host, repository, lookups)
        if found is not None:
            return found
    return None


def auth_from_files(url: str, *, allow_insecure: bool = False) -> RegistryAuth:
    """The auth for registry ``url`` from the auth files: its own entry, and one more per repository namespace
    with an entry of its own (``host/team``), used for the repositories under it."""
    host = urlsplit(url).netloc

    def auth(found: Credentials | None, namespaces: dict[str, RegistryAuth] | None = None) -> RegistryAuth:
        found = found or Credentials()
        return RegistryAuth(
            found.user,
            found.password,
            origin=url,
            allow_insecure=allow_insecure,
            identity_token=found.identity_token,
            registry_token=found.registry_token,
            source=found.source,
            namespaces=namespaces,
        )

    lookups = _Lookups()
    default = load_credentials(host, lookups=lookups)
    scoped = {namespace: load_credentials(host, namespace, lookups) for namespace in namespaces_for(host, lookups)}
    return auth(default, {namespace: auth(found) for namespace, found in scoped.items() if found != default})
