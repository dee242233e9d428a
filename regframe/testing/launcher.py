"""Run Debian's ``docker-registry`` (CNCF distribution 2.8) as a throw-away local registry.

Each :func:`local_registry` gets its own temporary directory (config, storage, log, keys),
a free port on 127.0.0.1 and an environment without ``REGISTRY_*`` variables, which
distribution would otherwise apply on top of the config file. The TLS and token-server parts
(``cryptography``) and htpasswd hashing (``bcrypt``) are imported only by the registries that use
them: an anonymous plain-HTTP registry needs neither.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from ..processes import free_port, tail

if TYPE_CHECKING:
    from .tokenserver import AccessRules, Algorithm, TokenServer

DEFAULT_BINARY = "/usr/bin/docker-registry"
BINARY_ENV = "REGFRAME_REGISTRY_BINARY"
DEFAULT_USERS = ("alice", "bob", "carol")
TOKEN_SERVICE = "regframe-local-registry"
TOKEN_ISSUER = "regframe-token-server"
LOG_LEVELS = ("error", "warn", "info", "debug")
# bcrypt's minimum cost: the registry checks the hash on every request, and at the
# default cost (12) that alone takes a quarter of a second.
_BCRYPT_ROUNDS = 4
_PORT_ATTEMPTS = 5
_STOP_TIMEOUT = 5.0

Auth = Literal["basic", "token"] | None


@dataclass(frozen=True)
class LocalRegistry:
    """A running registry; valid only inside its :func:`local_registry` block."""

    url: str
    host: str
    port: int
    auth: Auth
    users: dict[str, str]
    ca_path: Path | None
    storage: Path
    config_path: Path
    log_path: Path
    pid: int
    delete_enabled: bool
    token_server: TokenServer | None = None
    binary: str = field(default=DEFAULT_BINARY, repr=False)

    def credentials(self, user: str) -> tuple[str, str]:
        """``(user, password)``, ready for ``requests``' ``auth=``."""
        try:
            return user, self.users[user]
        except KeyError:
            raise KeyError(f"no user {user!r} on this registry; users are {sorted(self.users)}") from None

    def log_text(self) -> str:
        """Everything the registry wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def garbage_collect(self, *, delete_untagged: bool = False, dry_run: bool = False) -> str:
        """Run ``docker-registry garbage-collect`` on this registry's storage and return its output.

        Distribution marks every blob referenced by a manifest and deletes the rest (with
        ``delete_untagged``, manifests no tag points at are swept as well). It reads the
        storage directly while the server keeps running, so nothing may be pushed
        meanwhile: an upload in flight could lose its blobs. Without a configured cache the
        server sees the deletions at once.
        """
        args = [self.binary, "garbage-collect", str(self.config_path)]
        if delete_untagged:
            args.append("--delete-untagged")
        if dry_run:
            args.append("--dry-run")
        done = subprocess.run(
            args, capture_output=True, text=True, env=_clean_env(), stdin=subprocess.DEVNULL, timeout=120
        )
        output = done.stdout + done.stderr
        if done.returncode != 0:
            raise RuntimeError(f"garbage-collect exited with status {done.returncode}:\n{tail(output)}")
        return output


@contextmanager
def local_registry(
    auth: Auth = None,
    tls: bool = False,
    delete: bool = True,
    users: Mapping[str, str] | None = None,
    access: AccessRules | None = None,
    log_level: str | None = None,
    *,
    token_algorithm: Algorithm = "ES256",
    startup_timeout: float = 10.0,
    binary: str | None = None,
    **config_overrides: object,
) -> Iterator[LocalRegistry]:
    """Start a registry, yield a :class:`LocalRegistry`, then stop it by PID and remove its files.

    ``auth``: ``None`` (anonymous), ``"basic"`` (htpasswd, every user may do everything) or
    ``"token"`` (a :class:`TokenServer` in a thread signing with ``token_algorithm``;
    ``access`` replaces its default rules).
    ``users`` defaults to alice, bob and carol with random passwords. ``log_level`` defaults
    to ``error``, or ``info`` with token auth, the only level at which distribution says why
    it rejected a token. ``config_overrides`` are merged into the generated config:
    ``__`` separates levels (``storage__cache__blobdescriptor="inmemory"``), dict values are
    merged deeply (``http={"headers": {...}}``) and ``None`` removes a key. ``http.addr`` is
    managed here. ``binary`` defaults to ``$REGFRAME_REGISTRY_BINARY`` or /usr/bin/docker-registry.
    """
    if auth not in (None, "basic", "token"):
        raise ValueError(f"auth must be None, 'basic' or 'token', not {auth!r}")
    if access is not None and auth != "token":
        raise ValueError("access rules only apply with auth='token'")
    level = log_level or ("info" if auth == "token" else "error")
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {LOG_LEVELS}, not {log_level!r}")
    exe = _find_binary(binary)
    accounts = dict(users) if users is not None else {u: secrets.token_urlsafe(12) for u in DEFAULT_USERS}
    for user in accounts:
        if not user or ":" in user:
            raise ValueError(f"user name {user!r} must be non-empty and contain no ':'")
    tls_parts = _extra(".tls", "local_registry(tls=True)") if tls else None
    token_parts = _extra(".tokenserver", "local_registry(auth='token')") if auth == "token" else None
    bcrypt = _extra("bcrypt", "local_registry(auth='basic')") if auth == "basic" else None

    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="regframe-registry-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        storage = workdir / "storage"
        storage.mkdir()
        config = _base_config(storage, level, delete)

        tls_files = tls_parts.write_tls_files(workdir) if tls_parts is not None else None
        if tls_files is not None:
            config["http"]["tls"] = {"certificate": str(tls_files.cert_path), "key": str(tls_files.key_path)}
        token_server = None
        if bcrypt is not None:
            htpasswd = workdir / "htpasswd"
            htpasswd.write_text(_htpasswd(accounts, bcrypt))
            config["auth"] = {"htpasswd": {"realm": "regframe", "path": str(htpasswd)}}
        elif token_parts is not None:
            ssl_context = None
            if tls_files is not None:
                ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ssl_context.load_cert_chain(tls_files.cert_path, tls_files.key_path)
            token_server = stack.enter_context(
                token_parts.TokenServer(
                    accounts,
                    access,
                    service=TOKEN_SERVICE,
                    issuer=TOKEN_ISSUER,
                    algorithm=token_algorithm,
                    ssl_context=ssl_context,
                )
            )
            bundle = workdir / "token-signing.pem"
            bundle.write_bytes(token_server.certificate_pem)
            config["auth"] = {
                "token": {
                    "realm": token_server.realm,
                    "service": TOKEN_SERVICE,
                    "issuer": TOKEN_ISSUER,
                    "rootcertbundle": str(bundle),
                }
            }
        _merge(config, _nest(config_overrides))

        config_path = workdir / "config.yml"
        log_path = workdir / "registry.log"
        ca_path = tls_files.ca_path if tls_files is not None else None
        proc, port = _launch(exe, config, config_path, log_path, ca_path, startup_timeout)
        stack.callback(_stop, proc)

        scheme = "https" if tls else "http"
        yield LocalRegistry(
            url=f"{scheme}://127.0.0.1:{port}",
            host=f"127.0.0.1:{port}",
            port=port,
            auth=auth,
            users=accounts,
            ca_path=ca_path,
            storage=storage,
            config_path=config_path,
            log_path=log_path,
            pid=proc.pid,
            token_server=token_server,
            delete_enabled=bool(config["storage"].get("delete", {}).get("enabled")),
            binary=exe,
        )


def _extra(module: str, feature: str) -> ModuleType:
    """Import a part that needs the ``testing`` extra; when it is missing, say which feature wants it."""
    try:
        return importlib.import_module(module, __package__)
    except ModuleNotFoundError as missing:
        raise ModuleNotFoundError(
            f"{feature} needs the {missing.name!r} package, from the 'testing' extra: pip install 'regframe[testing]'",
            name=missing.name,
        ) from missing


# -- process -------------------------------------------------------------------------------


def _find_binary(binary: str | None) -> str:
    chosen = binary or os.environ.get(BINARY_ENV)
    found = shutil.which(chosen) if chosen else (shutil.which(DEFAULT_BINARY) or shutil.which("docker-registry"))
    if found is None:
        candidate = chosen or DEFAULT_BINARY
        raise FileNotFoundError(
            f"registry binary {candidate!r} not found; install Debian's 'docker-registry' package "
            f"(make system-deps) or set ${BINARY_ENV}"
        )
    return found


def _clean_env() -> dict[str, str]:
    """The caller's environment minus ``REGISTRY_*``, which would override the config file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}


def _launch(
    exe: str, config: dict, config_path: Path, log_path: Path, ca_path: Path | None, timeout: float
) -> tuple[subprocess.Popen, int]:
    """Start the registry on a free port; pick another if someone took it in between."""
    for _ in range(_PORT_ATTEMPTS):
        port = free_port()
        config["http"]["addr"] = f"127.0.0.1:{port}"
        config_path.write_text(to_yaml(config))
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [exe, "serve", str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                start_new_session=True,
            )
        try:
            _wait_ready(proc, port, ca_path, timeout)
            return proc, port
        except _EarlyExit:
            output = log_path.read_text(errors="replace")
            if "address already in use" not in output:
                raise RuntimeError(
                    f"docker-registry exited at start with status {proc.returncode}:\n{tail(output)}"
                ) from None
        except BaseException:
            _stop(proc)
            raise
    raise RuntimeError(f"docker-registry found no free port in {_PORT_ATTEMPTS} attempts")


class _EarlyExit(Exception):
    pass


def _wait_ready(proc: subprocess.Popen, port: int, ca_path: Path | None, timeout: float) -> None:
    """Poll ``GET /v2/`` until it answers 200 or 401 (auth enabled)."""
    context = ssl.create_default_context(cafile=str(ca_path)) if ca_path else None
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise _EarlyExit
        conn: http.client.HTTPConnection = (
            http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context)
            if context
            else http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        )
        try:
            conn.request("GET", "/v2/")
            if conn.getresponse().status in (200, 401):
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"docker-registry (pid {proc.pid}) did not answer /v2/ on port {port} within {timeout} s"
            )
        time.sleep(0.01)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if the process is still there after a few seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -- config --------------------------------------------------------------------------------


def _base_config(storage: Path, level: str, delete: bool) -> dict:
    verbose = level in ("info", "debug")
    return {
        "version": "0.1",
        "log": {"level": level, "formatter": "text", "accesslog": {"disabled": not verbose}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": delete},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
    }


def _htpasswd(users: Mapping[str, str], bcrypt: ModuleType) -> str:
    return "".join(
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=_BCRYPT_ROUNDS)).decode()}\n"
        for user, pw in users.items()
    )


def _nest(overrides: Mapping[str, object]) -> dict:
    nested: dict = {}
    for key, value in overrides.items():
        *parents, leaf = key.split("__")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    if "addr" in nested.get("http", {}):
        raise ValueError("http.addr is chosen by local_registry and cannot be overridden")
    return nested


def _merge(base: dict, extra: Mapping) -> None:
    for key, value in extra.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")


def _scalar(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple, Mapping)):
        return json.dumps(value, default=str)
    raise TypeError(f"cannot write {type(value).__name__} {value!r} into the registry config")


def to_yaml(config: Mapping, indent: int = 0) -> str:
    """Block-style YAML for nested mappings; strings and lists in JSON (flow) style, valid YAML too."""
    lines = []
    pad = " " * indent
    for key, value in config.items():
        name = key if _PLAIN_KEY.fullmatch(str(key)) else json.dumps(str(key))
        if isinstance(value, Mapping) and value:
            lines.append(f"{pad}{name}:\n{to_yaml(value, indent + 2)}")
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}\n")
    return "".join(lines)
