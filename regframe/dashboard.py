"""``regframe dashboard``: the storage and stale-tag widgets as a web page, served by Voilà.

The page is the packaged notebook ``regframe/notebooks/dashboard.ipynb``. The registry URL and
credentials reach its kernel through environment variables, and the page's access token through
``JUPYTER_TOKEN``: nothing secret appears on a command line (``ps`` shows those to every user) or
in a file. The server listens on 127.0.0.1 only.

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

from .processes import free_port, tail

ENV_URL = "REGFRAME_DASHBOARD_URL"
ENV_USER = "REGFRAME_DASHBOARD_USER"
ENV_PASSWORD = "REGFRAME_DASHBOARD_PASSWORD"
ENV_ALLOW_DELETE = "REGFRAME_DASHBOARD_ALLOW_DELETE"
ENV_DIR = "REGFRAME_DASHBOARD_DIR"
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


def start(url: str, *, port: int | None = 0, user: str | None = None, password: str | None = None,
          allow_delete: bool = False, timeout: float = 60.0, log_path: str | os.PathLike | None = None) -> Dashboard:
    """Start Voilà on the dashboard notebook for registry ``url`` and return once it accepts connections.

    ``port`` 0 or None picks a free port. ``allow_delete`` enables the stale-tag widget's Delete button
    (always behind a dry run and a confirmation). Raises RuntimeError with Voilà's output if it
    exits or does not listen within ``timeout`` seconds.
    """
    if (user is None) != (password is None):
        raise ValueError("give both user and password, or neither")
    if port is not None and not 0 <= port <= 65535:
        raise ValueError(f"port must be between 0 and 65535, got {port}")
    try:
        import voila  # noqa: F401
    except ImportError:
        raise RuntimeError("the dashboard needs Voilà: pip install 'regframe[dashboard]'") from None
    chosen = port or free_port(HOST)
    token = secrets.token_urlsafe(24)
    owns_log = log_path is None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="regframe-dashboard-", suffix=".log")
        os.close(handle)
        log_path = name
    log_path = Path(log_path)

    env = {k: v for k, v in os.environ.items() if k not in (ENV_USER, ENV_PASSWORD, ENV_ALLOW_DELETE)}
    env.update({ENV_URL: url, ENV_DIR: os.getcwd(), "JUPYTER_TOKEN": token})
    if user is not None:
        env.update({ENV_USER: user, ENV_PASSWORD: password})
    if allow_delete:
        env[ENV_ALLOW_DELETE] = "1"
    command = [sys.executable, "-m", "voila", str(notebook_path()), "--no-browser", f"--Voila.ip={HOST}",
               f"--port={chosen}", "--Voila.port_retries=0", "--Voila.auto_token=True"]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, start_new_session=True)
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
            raise RuntimeError(f"Voilà exited with status {code} before serving the dashboard:\n"
                               f"{tail(dashboard.log_text(), 30)}")
        try:
            with socket.create_connection((HOST, dashboard.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Voilà did not listen on {HOST}:{dashboard.port} within {timeout:g} s:\n"
                               f"{tail(dashboard.log_text(), 30)}")
        time.sleep(0.1)


def serve(url: str, *, port: int | None = None, user: str | None = None, password: str | None = None,
          open_browser: bool = False, allow_delete: bool = False) -> int:
    """Serve the dashboard until Ctrl-C (or until Voilà exits); the exit code for the command line."""
    try:
        dashboard = start(url, port=port, user=user, password=password, allow_delete=allow_delete)
    except (RuntimeError, ValueError) as err:
        print(f"regframe: error: {err}", file=sys.stderr)
        return 1
    print(f"regframe dashboard: {dashboard.url}\n  registry: {url}\n  Voilà log: {dashboard.log_path}\n"
          "Each page load crawls the registry again. Ctrl-C to stop.", flush=True)
    if open_browser:
        webbrowser.open(dashboard.url)
    try:
        code = dashboard.process.wait()
    except KeyboardInterrupt:
        dashboard.stop()
        return 0
    print(f"regframe: Voilà exited with status {code}:\n{tail(dashboard.log_text(), 30)}", file=sys.stderr)
    dashboard.stop()
    return code or 1
