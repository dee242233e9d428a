"""``Registry.inventory()``'s options and the command's, checked before any request; a crawl whose threads
cannot all start ends them all; ``python -m regframe`` runs the command.

The registry here is a listener that counts the connections made to it and closes each at once: a request
that slipped past a check would show as a connection (and fail with a connection error, not the
``ValueError`` expected)."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading

import pytest

from regframe import InvalidReferenceError, dashboard
from regframe.cli import main
from regframe.inventory.cache import DigestCache
from regframe.inventory.concurrency import DEFAULT_MAX_WORKERS, MAX_WORKERS, Limit, check_workers
from regframe.inventory.pool import TaskPool
from regframe.inventory.quota import check_budget
from regframe.registry import Registry, _check_crawl_options


class Listener:
    """A port that accepts connections, counts them and closes them."""

    def __init__(self) -> None:
        self.connections = 0
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self.connections += 1
            connection.close()

    def close(self) -> None:
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes the accept(), which close() alone does not
        except OSError:
            pass
        self._socket.close()
        self._thread.join(5)
        assert not self._thread.is_alive()


@pytest.fixture
def listener():
    port = Listener()
    yield port
    port.close()


@pytest.fixture
def reg(listener):
    with Registry(listener.url, docker_config=False) as registry:
        yield registry
    assert listener.connections == 0, "a refused call must not connect"


def refused(reg: Registry, message: str, **options) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        reg.inventory(progress=False, **options)
    assert reg.stats["total_requests"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"strict": 1}, "strict must be True or False, not 1"),
        ({"strict": "yes"}, "strict must be True or False, not 'yes'"),
        ({"stop": "yes"}, "stop must be None or a threading.Event (anything with is_set()), not str"),
        ({"stop": True}, "stop must be None or a threading.Event (anything with is_set()), not bool"),
        ({"referrers": "no"}, "referrers must be True or False, not 'no'"),
        ({"max_pages": 0}, "max_pages must be a positive integer, not 0"),
        ({"cache": 5}, "cache must be None, a path or a DigestCache, not int"),
    ],
)
def test_plain_options_are_refused_before_any_request(reg, options, message):
    refused(reg, message, **options)


def test_progress_must_be_a_flag_or_a_callable(reg):
    """Any other value used to turn the bar off without a word."""
    with pytest.raises(ValueError, match=re.escape("progress must be True, False or a callable")):
        reg.inventory(progress="yes")
    assert reg.stats["total_requests"] == 0


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r.frames.manifests("team/app", 1), "tag must be a string, not int"),
        (lambda r: r.frames.layers("team/app", "a b"), "tag 'a b' is not valid"),
        (lambda r: r.frames.manifests("team/app", ""), "tag is empty"),
    ],
    ids=["manifests 1", "layers 'a b'", "manifests ''"],
)
def test_frames_refuse_a_tag_that_is_not_one_before_any_request(reg, call, message):
    """Such a tag matched no row after a whole crawl: an empty frame, as if the tag had no manifests."""
    with pytest.raises(InvalidReferenceError, match=re.escape(message)):
        call(reg)
    assert reg.stats["total_requests"] == 0


def test_an_event_like_stop_is_accepted():
    class Flag:
        def is_set(self) -> bool:
            return False

    _check_crawl_options(True, False, Flag(), None, 1, False)
    _check_crawl_options(lambda done, found: None, True, threading.Event(), DigestCache(), 1, True)


# -- budget and reserve ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "reserve", "message"),
    [
        (1, 0.5, "reserve=0.5 keeps 1 back (a fraction rounds up) and leaves nothing of budget=1 to spend"),
        (10, 0.95, "reserve=0.95 keeps 10 back (a fraction rounds up) and leaves nothing of budget=10 to spend"),
        (5, 5, "reserve=5 leaves nothing of budget=5 to spend"),
    ],
)
def test_a_reserve_that_leaves_no_get_is_refused(reg, budget, reserve, message):
    """budget=1, reserve=0.5 used to pass: the reserve rounds up to 1 and the crawl stopped before its first GET."""
    refused(reg, message, budget=budget, reserve=reserve)


def test_a_reserve_that_leaves_one_get_is_accepted():
    check_budget(10, 0.9)
    check_budget(2, 0.5)
    check_budget("auto", 0.99)


# -- cache -------------------------------------------------------------------------------------------


def test_a_cache_in_a_missing_folder_names_the_path(reg, tmp_path):
    path = tmp_path / "missing" / "x.db"
    refused(reg, f"cache {str(path)!r} cannot be opened as a SQLite digest cache: its folder", cache=path)


def test_a_cache_that_is_not_sqlite_names_the_path(reg, tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("not a database, " * 100)
    refused(reg, f"cache {str(path)!r} cannot be opened as a SQLite digest cache: file is not a database", cache=path)


def test_a_cache_folder_that_cannot_be_made_names_the_path(reg, tmp_path):
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "cache"
    refused(reg, f"cache {str(path)!r} cannot be made a folder", cache=str(path))


def test_a_refused_option_leaves_no_cache_behind(reg, tmp_path):
    refused(reg, "workers must be", cache=tmp_path / "cache", workers=0)
    assert not (tmp_path / "cache").exists()


# -- workers -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 10**9}, f"workers must be at most {MAX_WORKERS}, not 1000000000"),
        ({"workers": MAX_WORKERS + 1}, f"workers must be at most {MAX_WORKERS}, not {MAX_WORKERS + 1}"),
        ({"max_workers": 10**6}, f"max_workers must be at most {MAX_WORKERS}, not 1000000"),
        ({"workers": 100, "max_workers": 4}, "workers=100 is more than max_workers=4"),
        ({"workers": 0}, "workers must be a positive integer or None, not 0"),
        ({"workers": True}, "workers must be a positive integer or None, not True"),
        ({"max_workers": 0}, "max_workers must be a positive integer or None, not 0"),
    ],
)
def test_worker_counts_are_bounded_before_any_request(reg, options, message):
    """workers=10**9 used to start threads until the system refused one, 16 s later, leaving them all running."""
    before = threading.active_count()
    refused(reg, message, **options)
    assert threading.active_count() <= before


def test_the_requests_in_flight_a_crawl_gets():
    assert check_workers(None, None) == DEFAULT_MAX_WORKERS
    assert check_workers(None, 8) == 8
    assert check_workers(100, None) == 100, "workers alone is not bounded by the default max_workers"
    assert check_workers(8, 8) == 8
    assert check_workers(MAX_WORKERS, MAX_WORKERS) == MAX_WORKERS


def refuse_crawl_threads_after(monkeypatch, allowed: int) -> list[threading.Thread]:
    """Make ``Thread.start`` fail as the system does when it can start no more threads, after ``allowed``
    crawl threads: a real thread limit cannot be reached safely in a test, as it starves the whole process
    (and others on the machine) of threads. Returns the crawl threads that did start."""
    real_start = threading.Thread.start
    started: list[threading.Thread] = []

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("regframe-crawl-"):
            if len(started) >= allowed:
                raise RuntimeError("can't start new thread")
            started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    return started


def test_a_crawl_whose_threads_cannot_all_start_ends_those_it_started(reg, monkeypatch):
    started = refuse_crawl_threads_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match=re.escape("could not start thread 4 of 8 (can't start new thread)")):
        reg.inventory(progress=False, workers=8)
    assert len(started) == 3
    assert not [thread for thread in started if thread.is_alive()]
    assert reg.stats["total_requests"] == 0


def test_a_thread_refused_as_the_limit_grows_stops_the_pool(monkeypatch):
    """The limit grows from a worker (``Crawler._limit_changed`` runs in the thread whose task completed): the
    refusal stops the pool, ``wait`` raises it, and ``close`` ends every thread started."""
    started = refuse_crawl_threads_after(monkeypatch, 32)
    pool = TaskPool(Limit(64))
    ran: list[int] = []
    try:
        pool.submit(pool.ensure_threads, 40)
        with pytest.raises(RuntimeError, match=re.escape("could not start thread 33 of 40")):
            pool.wait()
        pool.submit(ran.append, 1)
    finally:
        pool.close()
    assert pool.stopped and ran == []
    assert len(started) == 32
    assert not [thread for thread in started if thread.is_alive()]


# -- the command -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "5000"], f"workers must be at most {MAX_WORKERS}, not 5000"),
        (["--max-workers", "5000"], f"max_workers must be at most {MAX_WORKERS}, not 5000"),
        (["--workers", "100", "--max-workers", "4"], "workers=100 is more than max_workers=4"),
    ],
)
def test_the_command_refuses_worker_counts_with_status_2(listener, tmp_path, capsys, arguments, message):
    assert main(["audit", listener.url, "--out", str(tmp_path / "out"), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert listener.connections == 0


@pytest.mark.parametrize(
    "command", [["tags", "URL", "team/app"], ["audit", "URL", "--out", "out"], ["dashboard", "URL"]]
)
def test_the_command_names_its_own_options_for_credentials_in_the_url(listener, capsys, monkeypatch, tmp_path, command):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(dashboard, "serve", lambda *args, **options: pytest.fail("the dashboard was served"))
    url = listener.url.replace("http://", "http://me:hunter2@")
    assert main([url if part == "URL" else part for part in command]) == 2
    err = capsys.readouterr().err
    assert "pass --user and --password-stdin instead" in err
    assert "user=" not in err and "hunter2" not in err
    assert listener.connections == 0


def test_python_dash_m_runs_the_command(listener):
    shown = subprocess.run(
        [sys.executable, "-m", "regframe", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: regframe ")
    url = listener.url.replace("http://", "http://me:hunter2@")
    failed = subprocess.run(
        [sys.executable, "-m", "regframe", "tags", url, "team/app"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 2, "the command's exit status is the process's"
    assert "--password-stdin" in failed.stderr
