"""The client core: everything an operation uses, declared in one place.

Operations (``reads``, ``writes``, ``deletes``, ``transfers``) are functions of a ``ClientCore``;
``api.RegistryClient`` gathers them under the gem's method names."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from . import errors as E
from .arguments import check_count, check_flag, check_seconds
from .auth import RegistryAuth
from .credentials import auth_from_files
from .reference import validate_repository
from .transport import (
    DEFAULT_MAX_RETRY_WAIT,
    DEFAULT_MIN_STREAM_RATE,
    DEFAULT_REQUEST_TIMEOUT,
    RateLimit,
    StatsSnapshot,
    Transport,
    check_time_limits,
)

DOCKER_HUB_API = "https://registry-1.docker.io"
_HUB_ALIASES = {"registry.hub.docker.com", "hub.docker.com", "docker.io", "index.docker.io", "registry-1.docker.io"}


def normalize_url(url: str, *, credentials_instead: str = "user= and password=") -> str:
    """Check a registry URL and map Docker Hub's public names to its API host.

    ``credentials_instead`` names where the caller takes credentials (the CLI: its options), for the refusal
    of a URL with ``user:password@``; that refusal never repeats the URL, which would show the password."""
    if not isinstance(url, str) or not url.strip():
        raise E.InvalidReferenceError("registry URL must be a non-empty string")
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    # Any '@', not only one urlsplit reads as userinfo: in 'user:pa/ss@host' the password's '/' ends
    # the authority, and the rest of the password would be shown as a path.
    if "@" in url:
        raise E.InvalidReferenceError(
            "credentials inside the registry URL are not supported (RFC 3986 discourages them): "
            f"pass {credentials_instead} instead"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise E.InvalidReferenceError(f"registry URL scheme must be http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise E.InvalidReferenceError(f"registry URL {url!r} has no host")
    if parts.hostname in _HUB_ALIASES:
        return DOCKER_HUB_API
    path = parts.path.rstrip("/")
    if path.endswith("/v2"):
        path = path[:-3]
    return f"{parts.scheme}://{parts.netloc}{path}"


def check_credentials(user: object, password: object) -> None:
    """``user`` and ``password`` as HTTP Basic (RFC 7617) takes them: both or neither, each a str (bytes would be
    sent as their repr), and no ``:`` in the user, where servers split the two. The password is never shown."""
    if (user is None) != (password is None):
        raise ValueError("give both user= and password=, or neither")
    if user is None:
        return
    if not isinstance(user, str):
        raise ValueError(f"user must be a str, not {type(user).__name__}")
    if not isinstance(password, str):
        raise ValueError(f"password must be a str, not {type(password).__name__}")
    if ":" in user:
        raise ValueError(
            "user must not contain ':': HTTP Basic sends user:password, and servers split at the first ':' (RFC 7617)"
        )


class ClientCore:
    """One registry connection: its URL, credentials (kept out of sight), transport and probes.

    Thread-safe: one connection pool shared by every call. Options:

    - ``user``/``password``, or ``docker_config`` (when no user is given, read the credentials docker, podman
      and skopeo keep: auth files and credential helpers, see ``client.credentials``);
    - ``open_timeout`` (2 s) bounds connecting, ``read_timeout`` (5 s) each wait for data;
    - ``request_timeout`` (60 s) bounds each response and every body read whole; a blob body must instead
      keep up ``min_stream_rate`` bytes/s (1024) over each such period; ``max_retry_wait`` (60 s) bounds one
      call's sleeps between retries (see ``Transport``);
    - ``verify``/``ca_bundle`` for TLS; ``allow_insecure_auth`` lets a password go over plain http beyond
      loopback; ``retries`` (3; 0 for none) and ``pool_size`` (32) for the transport.
    """

    url: str
    user: str | None
    auth: RegistryAuth
    transport: Transport
    hub: bool
    deletes_ok: set[str]
    referrers_api: dict[str, bool]

    def __init__(
        self,
        url: str = "https://registry.hub.docker.com",
        *,
        user: str | None = None,
        password: str | None = None,
        open_timeout: float = 2,
        read_timeout: float = 5,
        verify: bool | str = True,
        ca_bundle: str | os.PathLike[str] | None = None,
        docker_config: bool = True,
        retries: int = 3,
        pool_size: int = 32,
        allow_insecure_auth: bool = False,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        min_stream_rate: float = DEFAULT_MIN_STREAM_RATE,
        max_retry_wait: float = DEFAULT_MAX_RETRY_WAIT,
    ) -> None:
        self.url = normalize_url(url)
        check_time_limits(
            request_timeout=request_timeout, min_stream_rate=min_stream_rate, max_retry_wait=max_retry_wait
        )
        check_flag("allow_insecure_auth", allow_insecure_auth)
        check_flag("docker_config", docker_config)
        check_count("retries", retries, minimum=0)
        check_count("pool_size", pool_size)
        check_credentials(user, password)
        explicit_credentials = user is not None
        if user is None and docker_config:
            auth = auth_from_files(self.url, allow_insecure=allow_insecure_auth)
        else:
            auth = RegistryAuth(user, password, origin=self.url, allow_insecure=allow_insecure_auth)
        if ca_bundle is not None:
            if not Path(ca_bundle).is_file():
                raise ValueError(f"ca_bundle {str(ca_bundle)!r} is not a file")
            verify = str(ca_bundle)
        connect_after = check_seconds("open_timeout", open_timeout)
        read_after = check_seconds("read_timeout", read_timeout)
        self.hub = self.url == DOCKER_HUB_API
        self.user = auth.user
        self.deletes_ok = set()  # repositories where a delete probe answered 404
        self.referrers_api = {}  # repository -> whether GET /v2/<name>/referrers/ is served
        self.auth = auth
        if explicit_credentials:
            self.auth.check_cleartext(self.url)
        self.transport = Transport(
            self.url,
            self.auth,
            open_timeout=connect_after,
            read_timeout=read_after,
            verify=verify,
            retries=retries,
            pool_size=pool_size,
            request_timeout=request_timeout,
            min_stream_rate=min_stream_rate,
            max_retry_wait=max_retry_wait,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r}, user={self.user!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.transport.close()

    @property
    def stats(self) -> StatsSnapshot:
        """Requests made by kind, retries and bytes read since this client was created."""
        return self.transport.stats.snapshot()

    @property
    def rate_limit(self) -> RateLimit | None:
        """Docker Hub style ``RateLimit-*`` headers as last seen, or None if the registry sends none."""
        return self.transport.rate_limit

    def repo(self, repository: str) -> str:
        """A checked repository name, with Docker Hub's implicit ``library/`` for official images."""
        validate_repository(repository)
        if self.hub and "/" not in repository:
            return f"library/{repository}"
        return repository

    def ping(self) -> None:
        """Check that a v2 registry answers and the credentials are good. With credentials for repository
        namespaces only, a 401 there is the answer expected: they are checked by the first request under
        their namespace."""
        try:
            response = self.transport.request("GET", "/v2/", kind="ping", ok=(404,))
        except E.RegistryAuthenticationError as exc:
            if exc.status == 401 and isinstance(self.auth, RegistryAuth) and self.auth.namespaces_only:
                return
            raise
        response.close()
        if response.status_code == 404:
            raise E.RegistryVersionError(f"{self.url} does not serve the registry v2 API (/v2/ is 404)", status=404)

    @classmethod
    def open(cls, url: str, **options: object) -> Self:
        """A client whose registry has answered ``/v2/``; closed again if it did not."""
        client = cls(url, **options)  # type: ignore[arg-type]  # options are checked by __init__
        try:
            client.ping()
        except BaseException:
            client.close()
            raise
        return client
