"""Authentication as a request/response flow: anonymous, HTTP basic, and Docker bearer tokens.

A bearer token comes from the challenge's realm, asked in the first way that applies:

- a ``registry_token`` is the bearer token itself (docker config ``registrytoken``): nothing is asked;
- an ``identity_token`` (docker config ``identitytoken``, an OAuth2 refresh token) is exchanged with the
  OAuth2 refresh-token grant: ``POST`` ``grant_type=refresh_token``;
- otherwise ``GET`` with HTTP basic credentials (or none), which every token server supports; when the
  realm answers that ``GET`` with 404 or 405 (it does not serve it) and there is a password, the OAuth2
  password grant follows (``POST`` ``grant_type=password``), and that realm gets POSTs from then on.
  A 401 or 403 to the ``GET`` means the password was refused and is not tried again another way.

The transport drives ``auth_flow``: the flow yields the request to send, receives the response,
and may yield more requests (to a token endpoint, then the original again) before it finishes. The
transport retries a token request on 429, 502, 503 and 504 as it retries the registry's, and raises
those statuses itself, so the flow sees a token endpoint's other answers only.

Every request passes through the flow, so this is where credentials are kept to the origin they
were given for: a URL on another scheme, host or port (an upload ``Location``, say) is sent bare,
and a password never travels in clear text unless the user allowed it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import threading
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from . import errors as E
from .transport import Request, Response, is_http_url, origin, read_raw

Flow = Generator[Request, Response, None]

_PARAM = re.compile(r'\s*([A-Za-z][\w-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s"]*)\s*(?:,|$)')
DEFAULT_TOKEN_TTL = 60
TOKEN_BODY_LIMIT = 1024 * 1024
OAUTH_CLIENT_ID = "regframe"
# A realm answering the basic GET with these does not serve GET: the OAuth2 password grant is tried.
GET_UNSUPPORTED = frozenset({404, 405})
_OAUTH_ERROR = re.compile(r"[A-Za-z_]{1,40}")
# The v2 endpoints under a repository, anchored at the path's end: the name before them may itself have
# components called blobs, manifests, tags, referrers or uploads, and no two of these suffixes overlap.
_REPOSITORY_PATH = re.compile(
    r"/v2/(?P<name>[^/]+(?:/[^/]+)*)"
    r"/(?:manifests/[^/]+|blobs/uploads/[^/]*|blobs/[^/]+|tags/list|referrers/[^/]+)"
)


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")


def parse_challenge(header: str | None) -> Challenge | None:
    """Parse one ``WWW-Authenticate`` challenge; raise RegistryAuthenticationError if it is malformed."""
    if not header or not header.strip():
        return None
    scheme, _, rest = header.strip().partition(" ")
    if not re.fullmatch(r"[A-Za-z][\w-]*", scheme):
        raise E.RegistryAuthenticationError(f"malformed WWW-Authenticate header: {header[:120]!r}")
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            raise E.RegistryAuthenticationError(f"malformed WWW-Authenticate header: {header[:120]!r}")
        key, value = m.group(1).lower(), m.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[key] = value
        pos = m.end()
    return Challenge(scheme.lower(), params)


def repository_of(path: str) -> str | None:
    """The repository a v2 API path is about (``/v2/<name>/manifests/<reference>``, ``/blobs/<digest>``,
    ``/blobs/uploads/[<uuid>]``, ``/tags/list``, ``/referrers/<digest>``), or None for any other path."""
    found = _REPOSITORY_PATH.fullmatch(path)
    return found.group("name") if found else None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (``localhost``, 127.0.0.0/8, ::1): clear text there never crosses a network."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# RFC 6750 b64token and every token format seen in practice (JWTs): visible ASCII, no spaces.
_TOKEN_TEXT = re.compile(r"[\x21-\x7e]+").fullmatch


def cleartext_refusal(url: str, *, registry_https: bool = False) -> str | None:
    """Why a password may not be sent to ``url``, or None when it may.

    https is fine; plain http only to loopback, and not even there when the registry itself is https
    (an https registry naming a plain-http token endpoint is a downgrade)."""
    if not is_http_url(url):
        return "it is not a valid http(s) URL"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https":
        return None
    if parts.scheme != "http":
        return f"{parts.scheme or 'no'} scheme is not https"
    if registry_https:
        return "the registry is https but this endpoint is plain http"
    if is_loopback(host):
        return None
    return "plain http to a host other than this machine"


class Auth:
    """Sends requests as they are; the base of every auth scheme."""

    user: str | None = None

    def auth_flow(self, request: Request) -> Flow:
        yield request


def _challenge_of(response: Response) -> Challenge | None:
    return parse_challenge(response.headers.get("WWW-Authenticate"))


class _Token:
    __slots__ = ("expires_at", "value")

    def __init__(self, value: str, expires_at: float) -> None:
        self.value = value
        self.expires_at = expires_at


class RegistryAuth(Auth):
    """Answers whatever the registry asks for: basic credentials or a bearer token per scope.

    Tokens are cached per scope until ``expires_in`` runs out, so a crawl fetches one token per
    repository, not one per request; a 401 on a cached token fetches a fresh one once.

    ``origin`` is the registry URL the credentials belong to: requests elsewhere get none, and an
    https origin is never downgraded to http on its own host. ``allow_insecure`` lets the password
    (or a token) go over plain http beyond loopback. ``identity_token`` and ``registry_token`` are
    docker config's ``identitytoken`` and ``registrytoken`` (see the module docstring); ``source``
    says where the credentials were found, for messages. ``namespaces`` maps repository namespaces
    (``team`` or ``team/app``) to the auth of their own credentials (podman's ``host/namespace`` keys):
    requests for a repository there go through the longest matching one.
    """

    def __init__(
        self,
        user: str | None = None,
        password: str | None = None,
        *,
        origin: str,
        allow_insecure: bool = False,
        clock: Callable[[], float] = time.monotonic,
        identity_token: str | None = None,
        registry_token: str | None = None,
        source: str = "",
        namespaces: Mapping[str, RegistryAuth] | None = None,
    ) -> None:
        self.user = user
        self._password = password
        self._identity_token = identity_token or None
        self._registry_token = registry_token or None
        self.source = source
        home = _origin(origin)
        if home is None:
            shown = "(not shown: it has an @, which may be a password)" if "@" in origin else repr(E.bare_url(origin))
            raise ValueError(f"origin {shown} is not an http(s) URL")
        self._home = home
        self._home_url = f"{urlsplit(origin).scheme}://{urlsplit(origin).netloc}"
        self._allow_insecure = bool(allow_insecure)
        self._clock = clock
        self._basic_needed = False
        self._bearer: Challenge | None = None
        self._tokens: dict[tuple[str, ...], _Token] = {}
        self._locks: dict[tuple[str, ...], threading.Lock] = {}
        self._lock = threading.Lock()
        self._post_realms: set[str] = set()  # realms that refused the basic GET: password grant there
        self._namespaces = sorted((namespaces or {}).items(), key=lambda item: -item[0].count("/"))

    def __repr__(self) -> str:
        return f"RegistryAuth(user={self.user!r})"

    @property
    def has_credentials(self) -> bool:
        """Whether there is a username and password (for basic auth and the password grant)."""
        return self.user is not None and self._password is not None

    @property
    def has_secret(self) -> bool:
        """Whether anything secret may be sent: a password, an identity token or a registry token."""
        return self.has_credentials or self._identity_token is not None or self._registry_token is not None

    @property
    def namespaces_only(self) -> bool:
        """Whether the only credentials are for repository namespaces (``podman login host/team``): a request
        outside them, such as the ``/v2/`` check, goes without any."""
        return not self.has_secret and bool(self._namespaces)

    def _from(self) -> str:
        return f" (from {self.source})" if self.source else ""

    def _secret_name(self) -> str:
        if self._registry_token is not None:
            return "the registry token" + self._from()
        if self._identity_token is not None:
            return "the identity token" + self._from()
        return f"the password of {self._user_named()}"

    def _user_named(self) -> str:
        """The user, and where its password came from when a file or helper gave it (never the password)."""
        return f"user {self.user!r}{self._from()}"

    def _who(self) -> str:
        if self._registry_token is not None or self._identity_token is not None:
            return self._secret_name()
        return f"user {self.user!r}" if self.has_credentials else "anonymous access"

    def _basic_header(self) -> str:
        raw = f"{self.user}:{self._password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def check_cleartext(self, url: str, *, what: str | None = None) -> None:
        """Raise InsecureTransportError if the secret may not be sent to ``url`` (or a token got with it)."""
        if not self.has_secret or self._allow_insecure:
            return
        reason = cleartext_refusal(url, registry_https=self._home[0] == "https")
        if reason is None:
            return
        raise E.InsecureTransportError(
            f"refusing to send {self._secret_name()} to {what or _host(url)} in clear text ({reason}); "
            "use https, or pass allow_insecure_auth=True (regframe --insecure-auth) to send it anyway",
            url=url,
        )

    def _at_home(self, request: Request) -> bool:
        """Whether ``request`` goes to the credentials' origin; refuses an https to http downgrade on the same host."""
        if request.url.startswith(self._home_url) and request.url[len(self._home_url) : len(self._home_url) + 1] == "/":
            return True
        target = _origin(request.url)
        if target == self._home:
            return True
        if (
            target is not None
            and target[0] == "http"
            and self._home[0] == "https"
            and _hostname(request.url) == _hostname(self._home_url)
        ):
            raise E.InsecureTransportError(
                f"{request.method} {E.bare_url(request.url)}: the registry at {self._home_url} sent a plain-http URL "
                "for its own host; refusing to downgrade from https (a TLS-terminating proxy in front of it "
                "must pass X-Forwarded-Proto: https)",
                url=request.url,
            )
        return False

    def _namespace_auth(self, request: Request) -> RegistryAuth | None:
        """The auth of the longest namespace holding the request's repository, if it has one of its own."""
        if not self._namespaces:
            return None
        repository = repository_of(_path(request.url))
        if repository is None:
            return None
        for namespace, auth in self._namespaces:
            if repository == namespace or repository.startswith(namespace + "/"):
                return auth
        return None

    def auth_flow(self, request: Request) -> Flow:
        if not request.authenticated:
            yield request
            return
        at_home = self._at_home(request)
        scoped = self._namespace_auth(request) if at_home else None
        if scoped is not None:
            yield from scoped.auth_flow(request)
            return
        if not at_home:
            for name in [k for k in request.headers if k.lower() == "authorization"]:
                del request.headers[name]
            response = yield request
            if response.status_code == 401:
                response.close()
                raise E.RegistryAuthenticationError(
                    f"{request.method} {E.bare_url(request.url)}: answered 401; the credentials for "
                    f"{self._home_url} are never sent to another origin",
                    status=401,
                    url=request.url,
                )
            return
        if self._basic_needed:
            self.check_cleartext(self._home_url)
            request.headers["Authorization"] = self._basic_header()
        elif self._bearer is not None and request.scopes:
            token = yield from self._token_for(request.scopes, self._bearer, fresh=False)
            request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        challenge = _challenge_of(response)
        if challenge is None:
            raise E.RegistryAuthenticationError(
                f"{request.method} {_path(request.url)}: 401 without a WWW-Authenticate challenge", status=401
            )
        if challenge.scheme == "basic":
            if not self.has_credentials and self.has_secret:
                raise E.RegistryAuthenticationError(
                    f"{_host(request.url)} asks for a username and password (HTTP basic); "
                    f"{self._secret_name()} is only good for bearer tokens",
                    status=401,
                )
            if not self.has_credentials:
                raise E.RegistryAuthenticationError(
                    f"{_host(request.url)} requires credentials and none were given (anonymous access refused)",
                    status=401,
                )
            if "Authorization" in request.headers:
                raise E.RegistryAuthenticationError(
                    f"{_host(request.url)} rejected the username/password for {self._user_named()}", status=401
                )
            self.check_cleartext(self._home_url)
            self._basic_needed = True
            request.headers["Authorization"] = self._basic_header()
            response = yield request
            if response.status_code == 401:
                raise E.RegistryAuthenticationError(
                    f"{_host(request.url)} rejected the username/password for {self._user_named()}", status=401
                )
            return
        if challenge.scheme == "bearer":
            yield from self._bearer_retry(request, challenge)
            return
        raise E.RegistryAuthenticationError(
            f"{_host(request.url)} asks for unsupported authentication scheme {challenge.scheme!r}", status=401
        )

    def _bearer_retry(self, request: Request, challenge: Challenge) -> Flow:
        if not challenge.realm:
            raise E.RegistryAuthenticationError(f"{_host(request.url)}: bearer challenge has no realm", status=401)
        self._bearer = Challenge("bearer", {k: v for k, v in challenge.params.items() if k in ("realm", "service")})
        scopes = tuple(challenge.params["scope"].split(" ")) if challenge.params.get("scope") else request.scopes
        token = yield from self._token_for(scopes, challenge, fresh=True)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            retry_challenge = _challenge_of(response)
            insufficient = retry_challenge is not None and retry_challenge.params.get("error") == "insufficient_scope"
            who = self._who()
            if insufficient and self.has_secret:
                raise E.RegistryAuthorizationError(
                    f"{request.method} {_path(request.url)}: {who} lacks the right for "
                    f"{' '.join(scopes) or 'this request'}",
                    status=401,
                    code="DENIED",
                )
            raise E.RegistryAuthenticationError(
                f"{request.method} {_path(request.url)}: {who} refused for {' '.join(scopes) or 'this request'}",
                status=401,
            )

    def _token_for(
        self, scopes: tuple[str, ...], challenge: Challenge, *, fresh: bool
    ) -> Generator[Request, Response, str]:
        if self._registry_token is not None:
            self.check_cleartext(self._home_url)
            return self._registry_token
        key = tuple(sorted(scopes))
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._tokens.get(key)
            if cached is not None and not fresh and cached.expires_at > self._clock():
                return cached.value
            if fresh and cached is not None:
                self._tokens.pop(key, None)
            token = yield from self._fetch_token(challenge, key)
            self._tokens[key] = token
            return token.value

    def _fetch_token(self, challenge: Challenge, scopes: tuple[str, ...]) -> Generator[Request, Response, _Token]:
        realm = challenge.realm or ""
        if not is_http_url(realm):
            raise E.RegistryAuthenticationError(f"bearer challenge realm {realm[:120]!r} is not an http(s) URL")
        service = challenge.params.get("service") or ""
        if self._identity_token is not None:
            return (yield from self._oauth_grant(realm, service, scopes, "refresh_token"))
        if self.has_credentials and realm in self._post_realms:
            return (yield from self._oauth_grant(realm, service, scopes, "password"))
        query = [("service", service)] if service else []
        query += [("scope", s) for s in scopes]
        headers = {"Accept": "application/json"}
        if self.has_credentials:
            self.check_cleartext(realm, what=f"token endpoint {_host(realm)}")
            self.check_cleartext(self._home_url)  # the token got with the password goes there
            headers["Authorization"] = self._basic_header()
        url = realm + ("&" if "?" in realm else "?") + urlencode(query) if query else realm
        response = yield Request("GET", url, headers, kind="token", authenticated=False)
        where = f"token endpoint {_host(realm)}"
        if response.status_code in GET_UNSUPPORTED and self.has_credentials:
            with self._lock:
                self._post_realms.add(realm)
            return (yield from self._oauth_grant(realm, service, scopes, "password", get_status=response.status_code))
        if response.status_code in (401, 403):
            raise E.RegistryAuthenticationError(
                f"{where} rejected the credentials" + (f" for {self._user_named()}" if self.user else ""),
                status=response.status_code,
            )
        if response.status_code != 200:
            raise E.RegistryAuthenticationError(
                f"{where} answered HTTP {response.status_code}", status=response.status_code
            )
        token, _ = self._parse_token(response, where)
        return token

    def _oauth_grant(
        self, realm: str, service: str, scopes: tuple[str, ...], grant: str, *, get_status: int | None = None
    ) -> Generator[Request, Response, _Token]:
        """The distribution token spec's OAuth2 ``POST``: the refresh-token grant or the password grant."""
        where = f"token endpoint {_host(realm)}"
        self.check_cleartext(realm, what=where)
        self.check_cleartext(self._home_url)
        form = [("grant_type", grant)]
        if service:
            form.append(("service", service))
        form.append(("client_id", OAUTH_CLIENT_ID))
        if scopes:
            form.append(("scope", " ".join(scopes)))
        if grant == "refresh_token":
            form.append(("refresh_token", self._identity_token or ""))
        else:
            form += [("username", self.user or ""), ("password", self._password or "")]
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        body = urlencode(form).encode()
        response = yield Request("POST", realm, headers, body, kind="token", authenticated=False)
        status = response.status_code
        if grant == "refresh_token":
            if status in GET_UNSUPPORTED:
                raise E.RegistryAuthenticationError(
                    f"{where} does not support the OAuth2 refresh-token grant (HTTP {status} to POST), "
                    f"which {self._secret_name()} needs; log in again with a password",
                    status=status,
                )
            if status in (400, 401, 403):
                raise E.RegistryAuthenticationError(
                    f"{where} refused {self._secret_name()} (OAuth2 refresh-token grant, HTTP {status}"
                    f"{_oauth_error(response, where)}); it may have expired or been revoked: log in again",
                    status=status,
                )
        else:
            if status in GET_UNSUPPORTED:
                raise E.RegistryAuthenticationError(
                    f"{where} serves neither a token by GET (HTTP {get_status}) nor the OAuth2 password grant "
                    f"(HTTP {status} to POST)",
                    status=status,
                )
            if status in (400, 401, 403):
                raise E.RegistryAuthenticationError(
                    f"{where} rejected the credentials for {self._user_named()} (OAuth2 password grant, HTTP {status}"
                    f"{_oauth_error(response, where)})",
                    status=status,
                )
        if status != 200:
            raise E.RegistryAuthenticationError(f"{where} answered HTTP {status} to POST", status=status)
        token, refresh = self._parse_token(response, where)
        if grant == "refresh_token" and refresh is not None:
            self._identity_token = refresh  # a server that rotates refresh tokens expects the new one next
        return token

    def _parse_token(self, response: Response, where: str) -> tuple[_Token, str | None]:
        """The token and its lifetime from a token response, and the OAuth2 ``refresh_token`` if any.

        The error is raised outside the ``except``: the parser's exception holds the whole response (a
        JSONDecodeError's ``doc``), and a chained ``__context__`` would carry it along."""
        problem = None
        try:
            raw = read_raw(response, TOKEN_BODY_LIMIT, where)
            if len(raw) > TOKEN_BODY_LIMIT:
                raise ValueError("token response too large")
            body = json.loads(raw)
            value = body.get("token") or body.get("access_token")
            if not isinstance(value, str) or not value:
                raise ValueError("no token in the response")
            if not _TOKEN_TEXT(value):
                raise ValueError("the token has characters an Authorization header cannot carry")
            expires_in = body.get("expires_in", DEFAULT_TOKEN_TTL)
            expires_in = DEFAULT_TOKEN_TTL if not isinstance(expires_in, (int, float)) else float(expires_in)
            refresh = body.get("refresh_token")
        except (ValueError, AttributeError, UnicodeDecodeError, RecursionError, OverflowError) as exc:
            problem = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
        if problem is not None:
            kind = response.headers.get("Content-Type", "unknown type").split(";")[0]
            raise E.RegistryAuthenticationError(f"{where} answered something that is not a token ({kind}: {problem})")
        # Renew a little early so a token does not expire between our check and the registry's.
        lifetime = max(1.0, min(expires_in, 86400.0) - min(10.0, expires_in / 10))
        token = _Token(value, self._clock() + lifetime)
        return token, refresh if isinstance(refresh, str) and refresh else None


def _oauth_error(response: Response, where: str) -> str:
    """``: invalid_grant`` from an RFC 6749 error body; only that code, which holds no secret, is shown."""
    try:
        body = json.loads(read_raw(response, 64 * 1024, where))
        code = body.get("error") if isinstance(body, dict) else None
    except (E.RegistryError, ValueError, UnicodeDecodeError, RecursionError):
        return ""
    return f": {code}" if isinstance(code, str) and _OAUTH_ERROR.fullmatch(code) else ""


def _host(url: str) -> str:
    return urlsplit(url).netloc or url[:60]


def _hostname(url: str) -> str:
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def _origin(url: str) -> tuple[str, str] | None:
    try:
        return origin(url) if is_http_url(url) else None
    except ValueError:
        return None


def _path(url: str) -> str:
    return urlsplit(url).path
