"""``regframe dashboard``: the storage and stale-tag widgets as a web page, served by Voilà.

The page is the packaged notebook ``regframe/notebooks/dashboard.ipynb``. The registry URL and
connection options (``regframe audit``'s: credentials, CA bundle, ``--insecure``, ``--insecure-auth``)
reach its kernel through environment variables, and the page's access token through ``JUPYTER_TOKEN``:
nothing secret appears on a command line (``ps`` shows those to every user) or in a file. The server
listens on 127.0.0.1 only.

A visitor cannot name a file: "Export CSV" writes ``stale-tags-YYYYmmdd-HHMMSS.csv`` into the folder the
dashboard was started in (``REGFRAME_DASHBOARD_DIR``), and the pattern fields run under the analysis's
time bound, so a pathological regular expression ends in a message, not a hung kernel.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import webbrowser
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Self
from urllib.parse import quote

from .processes import free_port, raising_on_sigterm, tail

ENV_URL = "REGFRAME_DASHBOARD_URL"
ENV_USER = "REGFRAME_DASHBOARD_USER"
ENV_PASSWORD = "REGFRAME_DASHBOARD_PASSWORD"
ENV_CA_BUNDLE = "REGFRAME_DASHBOARD_CA_BUNDLE"
ENV_INSECURE = "REGFRAME_DASHBOARD_INSECURE"
ENV_INSECURE_AUTH = "REGFRAME_DASHBOARD_INSECURE_AUTH"
ENV_ALLOW_DELETE = "REGFRAME_DASHBOARD_ALLOW_DELETE"
ENV_DIR = "REGFRAME_DASHBOARD_DIR"
SETTINGS = (ENV_URL, ENV_USER, ENV_PASSWORD, ENV_CA_BUNDLE, ENV_INSECURE, ENV_INSECURE_AUTH, ENV_ALLOW_DELETE, ENV_DIR)
HOST = "127.0.0.1"
_STOP_SECONDS = 10.0


def notebook_path() -> Path:
    """The packaged dashboard notebook."""
    return Path(str(resources.files("regframe") / "notebooks" / "dashboard.ipynb"))


@dataclass
class Dashboard:
    """A running dashboard server; ``url`` carries the access token."""

    url: str
    port: int
    process: subprocess.Popen = field(repr=False)
    log_path: Path
    owns_log: bool = False

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        """What Voilà and the notebook's kernel wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = _STOP_SECONDS) -> int:
        """SIGTERM (Voilà then shuts its kernels down), SIGKILL if that takes over ``timeout`` s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.owns_log:
            self.log_path.unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def child_command(port: int) -> list[str]:
    """Voilà's command line, which ``ps`` shows to every user: nothing secret goes on it."""
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook_path()),
        "--no-browser",
        f"--Voila.ip={HOST}",
        f"--port={port}",
        "--Voila.port_retries=0",
        "--Voila.auto_token=True",
    ]


def child_environment(
    url: str,
    *,
    token: str,
    user: str | None = None,
    password: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
    allow_insecure_auth: bool = False,
    allow_delete: bool = False,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """Voilà's environment: ``base`` (default ``os.environ``) without any dashboard setting it carries, plus
    this dashboard's. The kernel connects with what it finds there (and removes the password on reading).

    Raises ValueError for bad options, so they are refused before anything starts. ``ca_bundle`` is made
    absolute: the kernel runs in another folder."""
    if (user is None) != (password is None):
        raise ValueError("give both user and password, or neither")
    for name, value in (
        ("verify", verify),
        ("allow_insecure_auth", allow_insecure_auth),
        ("allow_delete", allow_delete),
    ):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be True or False, not {value!r}")
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k not in SETTINGS}
    env.update({ENV_URL: url, ENV_DIR: os.getcwd(), "JUPYTER_TOKEN": token})
    if user is not None and password is not None:
        env.update({ENV_USER: user, ENV_PASSWORD: password})
    if ca_bundle is not None:
        path = Path(ca_bundle).absolute()
        if not path.is_file():
            raise ValueError(f"ca_bundle {str(ca_bundle)!r} is not a file")
        env[ENV_CA_BUNDLE] = str(path)
    if not verify:
        env[ENV_INSECURE] = "1"
    if allow_insecure_auth:
        env[ENV_INSECURE_AUTH] = "1"
    if allow_delete:
        env[ENV_ALLOW_DELETE] = "1"
    return env


def start(
    url: str,
    *,
    port: int | None = 0,
    user: str | None = None,
    password: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
    allow_insecure_auth: bool = False,
    allow_delete: bool = False,
    timeout: float = 60.0,
    log_path: str | os.PathLike | None = None,
) -> Dashboard:
    """Start Voilà on the dashboard notebook for registry ``url`` and return once it accepts connections.

    ``user``, ``password``, ``ca_bundle``, ``verify`` and ``allow_insecure_auth`` are ``regframe.connect``'s,
    for the kernel's connection. ``port`` 0 or None picks a free port. ``allow_delete`` enables the stale-tag
    widget's Delete button (always behind a dry run and a confirmation). Raises RuntimeError with Voilà's
    output if it exits or does not listen within ``timeout`` seconds.
    """
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    token = secrets.token_urlsafe(24)
    env = child_environment(
        url,
        token=token,
        user=user,
        password=password,
        ca_bundle=ca_bundle,
        verify=verify,
        allow_insecure_auth=allow_insecure_auth,
        allow_delete=allow_delete,
    )
    try:
        import voila  # noqa: F401
    except ImportError:
        raise RuntimeError("the dashboard needs Voilà: pip install 'regframe[dashboard]'") from None
    chosen = port or free_port(HOST)
    owns_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="regframe-dashboard-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)

    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            child_command(chosen),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    dashboard = Dashboard(f"http://{HOST}:{chosen}/?token={quote(token)}", chosen, process, log_path, owns_log)
    try:
        _wait_listening(dashboard, timeout)
    except BaseException:
        dashboard.stop()
        raise
    return dashboard


def _wait_listening(dashboard: Dashboard, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code = dashboard.process.poll()
        if code is not None:
            raise RuntimeError(
                f"Voilà exited with status {code} before serving the dashboard:\n{tail(dashboard.log_text(), 30)}"
            )
        try:
            with socket.create_connection((HOST, dashboard.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Voilà did not listen on {HOST}:{dashboard.port} within {timeout:g} s:\n"
                f"{tail(dashboard.log_text(), 30)}"
            )
        time.sleep(0.1)


def serve(
    url: str,
    *,
    port: int | None = None,
    user: str | None = None,
    password: str | None = None,
    ca_bundle: str | os.PathLike | None = None,
    verify: bool = True,
    allow_insecure_auth: bool = False,
    open_browser: bool = False,
    allow_delete: bool = False,
) -> int:
    """Serve the dashboard until Ctrl-C (or until Voilà exits); the exit code for the command line."""
    try:
        dashboard = start(
            url,
            port=port,
            user=user,
            password=password,
            ca_bundle=ca_bundle,
            verify=verify,
            allow_insecure_auth=allow_insecure_auth,
            allow_delete=allow_delete,
        )
    except (RuntimeError, ValueError) as err:
        print(f"regframe: error: {err}", file=sys.stderr)
        return 1
    print(
        f"regframe dashboard: {dashboard.url}\n  registry: {url}\n  Voilà log: {dashboard.log_path}\n"
        "Each page load crawls the registry again. Ctrl-C to stop.",
        flush=True,
    )
    if open_browser:
        webbrowser.open(dashboard.url)
    try:
        with raising_on_sigterm(lambda signum: KeyboardInterrupt()):
            code = dashboard.process.wait()
    except KeyboardInterrupt:
        dashboard.stop()
        return 0
    print(f"regframe: Voilà exited with status {code}:\n{tail(dashboard.log_text(), 30)}", file=sys.stderr)
    dashboard.stop()
    return code or 1
