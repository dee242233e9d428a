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

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
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


def check_port(port: int | None) -> None:
    """Refuse (ValueError) a port out of range, or one something already listens on at 127.0.0.1, before
    anything starts: Voilà would fail there only seconds later, and a browser given this dashboard's address
    would meanwhile send its token to whatever answers. 0 or None (a free port, chosen later) passes."""
    if port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535 (or 0 for a free one), not {port!r}")
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As Voilà binds: connections of an earlier server left in TIME_WAIT do not make the port busy.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ValueError(f"port {port} is in use on {HOST}; choose another port") from None
            raise ValueError(f"port {port} cannot be used on {HOST}: {exc.strerror or exc}") from None


@contextmanager
def _holding_signals() -> Iterator[None]:
    """SIGTERM and SIGINT arriving within the block take effect when it ends: an exception raised between
    Voilà's fork and ``Popen`` returning would lose its pid, and leave it running. Main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for pending in dict.fromkeys(held):
            signal.raise_signal(pending)


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
    widget's Delete button (always behind a dry run and a confirmation). Raises ValueError for bad options
    and a port already in use, RuntimeError with Voilà's output if it exits or does not listen within
    ``timeout`` seconds. Interrupted (Ctrl-C, or SIGTERM under ``serve``) while starting, it stops Voilà and
    removes the log it created before the exception goes on.
    """
    check_port(port)
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
    created: Path | None = None
    dashboard: Dashboard | None = None
    try:
        with _holding_signals():
            if log_path is None:
                handle, name = tempfile.mkstemp(prefix="regframe-dashboard-", suffix=".log")
                os.close(handle)
                path = created = Path(name)
            else:
                path = Path(log_path)
            with open(path, "ab") as log:
                process = subprocess.Popen(
                    child_command(chosen),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            dashboard = Dashboard(f"http://{HOST}:{chosen}/?token={quote(token)}", chosen, process, path, owns_log)
        _wait_listening(dashboard, timeout)
    except BaseException:
        if dashboard is not None:
            dashboard.stop()
        elif created is not None:
            created.unlink(missing_ok=True)
        raise
    return dashboard


def _listens(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` holds a TCP socket listening on ``port``, from Linux's /proc; None where /proc
    cannot tell."""
    try:
        sockets = set()
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[len("socket:[") : -1])
        tables = [Path(f"/proc/{pid}/net/tcp").read_text()]
    except OSError:
        return None
    try:
        tables.append(Path(f"/proc/{pid}/net/tcp6").read_text())
    except OSError:
        pass  # no IPv6
    for table in tables:
        for line in table.splitlines()[1:]:
            # sl local_address rem_address st ... inode; st 0A is LISTEN
            fields = line.split()
            listening = len(fields) > 9 and fields[3] == "0A" and fields[9] in sockets
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                return True
    return False


def _serving(dashboard: Dashboard) -> bool:
    """Whether our Voilà listens on the dashboard's port. Where /proc cannot say whose socket it is, anything
    accepting connections there counts (the port was free when Voilà started)."""
    ours = _listens(dashboard.process.pid, dashboard.port)
    if ours is not None:
        return ours
    try:
        with socket.create_connection((HOST, dashboard.port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_listening(dashboard: Dashboard, timeout: float) -> None:
    """Until our Voilà child listens: a server of another process on the port is not taken for it, and a
    child that exits meanwhile ends the wait with its log."""
    deadline = time.monotonic() + timeout
    while True:
        code = dashboard.process.poll()
        if code is None and _serving(dashboard):
            code = dashboard.process.poll()  # still alive once found listening
            if code is None:
                return
        if code is not None:
            raise RuntimeError(
                f"Voilà exited with status {code} before serving the dashboard:\n{tail(dashboard.log_text(), 30)}"
            )
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
    """Serve the dashboard until Ctrl-C or SIGTERM (or until Voilà exits); the exit code for the command line:
    0 when stopped so, also while starting (Voilà is stopped and its log removed then too), 2 for bad options
    or a port in use, 1 when Voilà fails to start or exits."""
    with raising_on_sigterm(lambda signum: KeyboardInterrupt()):
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
        except KeyboardInterrupt:
            return 0
        except ValueError as err:
            print(f"regframe: error: {err}", file=sys.stderr)
            return 2
        except RuntimeError as err:
            print(f"regframe: error: {err}", file=sys.stderr)
            return 1
        try:
            print(
                f"regframe dashboard: {dashboard.url}\n  registry: {url}\n  Voilà log: {dashboard.log_path}\n"
                "Each page load crawls the registry again. Ctrl-C to stop.",
                flush=True,
            )
            if open_browser:
                webbrowser.open(dashboard.url)
            code = dashboard.process.wait()
            print(f"regframe: Voilà exited with status {code}:\n{tail(dashboard.log_text(), 30)}", file=sys.stderr)
            return code or 1
        except KeyboardInterrupt:
            return 0
        finally:
            dashboard.stop()
