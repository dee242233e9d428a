"""A Docker token server (the ``auth.token`` half of distribution) for tests.

``GET /token?service=S&scope=repository:foo/bar:pull,push&scope=...`` with optional HTTP
Basic credentials answers ``{"token", "access_token", "expires_in", "issued_at"}``. Like
real token servers it never refuses a scope: it grants the intersection of what was asked
and what the rules allow, and the registry answers ``401 insufficient_scope`` for the rest.

``POST /token`` is the OAuth2 endpoint of the distribution token spec (form-encoded,
``client_id`` and ``grant_type`` required): ``grant_type=password`` with ``username`` and
``password`` (and ``access_type=offline`` for a refresh token), or ``grant_type=refresh_token``
with a ``refresh_token`` this server issued for that ``service`` (:meth:`TokenServer.refresh_token_for`
makes one, as ``docker login`` leaves an ``identitytoken``). Answers ``{"access_token", "scope",
"expires_in", "issued_at"}`` plus ``refresh_token``; refusals are RFC 6749 errors (400
``invalid_grant``, ``invalid_request``, ``unsupported_grant_type``). ``oauth=False`` answers
POST with 404, as token servers without OAuth2 do; ``refuse_get=404`` or ``405`` refuses every
GET, as OAuth2-only ones do. :meth:`TokenServer.answer_next` makes the next requests fail with a status
such as 429 or 503 (and ``Retry-After``), as an overloaded token server does (Docker Hub's answers 429),
which no real one does on demand.

Access rules map a user name (``None`` for anonymous requests) to ``(pattern, actions)``
pairs. A pattern without ``:`` is a repository-name glob (``fnmatch``: ``*`` also crosses
``/``); a pattern with ``:`` is matched against ``type:name``, so :data:`CATALOG`
(``"registry:catalog"``) with ``{"*"}`` grants the catalog. ``"*"`` in ``actions`` grants
whatever was asked. Users missing from the rules get nothing, not the anonymous rights.

Tokens are JWTs signed (ES256 or RS256) with a key made at start-up; their header carries
``kid``, the libtrust key ID distribution 2.8 looks up among the certificates of its
``rootcertbundle`` (see :attr:`TokenServer.certificate_pem`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import secrets
import ssl
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .tls import certificate_pem, self_signed_certificate

CATALOG = "registry:catalog"
"""Rule pattern for the catalog: ``(CATALOG, {"*"})`` allows ``GET /v2/_catalog``."""

ALL_ACTIONS = "*"
FORM_LIMIT = 64 * 1024

Rule = tuple[str, Collection[str]]
AccessRules = Mapping[str | None, Sequence[Rule]]
Algorithm = Literal["ES256", "RS256"]


def default_access_rules() -> dict[str | None, list[Rule]]:
    """alice may do everything; bob and anonymous pull; carol pulls and pushes; only alice lists the catalog."""
    return {
        "alice": [("*", {ALL_ACTIONS}), (CATALOG, {ALL_ACTIONS})],
        "bob": [("*", {"pull"})],
        "carol": [("*", {"pull", "push"})],
        None: [("*", {"pull"})],
    }


@dataclass(frozen=True)
class Scope:
    """One ``type:name:actions`` resource scope, as in a challenge or a token's ``access`` claim."""

    type: str
    name: str
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """Parse ``repository:foo/bar:pull,push``; the name may itself contain ``:``."""
        head, sep, actions = text.rpartition(":")
        type_, sep2, name = head.partition(":")
        if not (sep and sep2 and type_ and name):
            raise ValueError(f"scope {text!r} is not of the form type:name:actions")
        return cls(type_, name, tuple(a for a in actions.split(",") if a))

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(self.actions)}"

    def claim(self) -> dict[str, object]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class IssuedToken:
    """What one successful ``/token`` request asked for and got."""

    user: str | None
    service: str
    requested: tuple[Scope, ...]
    granted: tuple[Scope, ...]
    expires_in: int | None
    token: str
    grant: str = "get"
    """``"get"`` for the GET endpoint, else the OAuth2 ``grant_type`` (``"password"``, ``"refresh_token"``)."""
    client_id: str | None = None


def libtrust_key_id(public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey) -> str:
    """The key ID distribution 2.8 expects in ``kid``: base32 of the first 240 bits of SHA-256(SPKI)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(b32[i : i + 4] for i in range(0, len(b32), 4))


def _matches(pattern: str, scope: Scope) -> bool:
    if ":" in pattern:
        return fnmatchcase(f"{scope.type}:{scope.name}", pattern)
    return scope.type == "repository" and fnmatchcase(scope.name, pattern)


def grant(rules: Sequence[Rule], requested: Sequence[Scope]) -> tuple[Scope, ...]:
    """Intersect each requested scope with what ``rules`` allow; scopes left empty are dropped."""
    granted = []
    for scope in requested:
        allowed: set[str] = set()
        for pattern, actions in rules:
            if _matches(pattern, scope):
                allowed.update(actions)
        actions = scope.actions if ALL_ACTIONS in allowed else tuple(a for a in scope.actions if a in allowed)
        if actions:
            granted.append(Scope(scope.type, scope.name, tuple(dict.fromkeys(actions))))
    return tuple(granted)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(obj: object) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


class TokenServer:
    """The token endpoint in a daemon thread on 127.0.0.1 and a free port.

    ``expires_in`` is what responses announce (``None`` leaves the field out, so clients
    fall back to 60 s); ``token_ttl`` sets the JWT's real lifetime when it should differ
    (the registry allows 60 s of clock leeway, so an already-rejected token needs
    ``token_ttl <= -61``). Both may be changed while the server runs, and so may ``oauth``
    (serve the OAuth2 POST) and ``refuse_get`` (``None``, or the status every GET gets).
    """

    def __init__(
        self,
        users: Mapping[str, str],
        access: AccessRules | None = None,
        *,
        service: str = "regframe-local-registry",
        issuer: str = "regframe-token-server",
        expires_in: int | None = 300,
        token_ttl: int | None = None,
        algorithm: Algorithm = "ES256",
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        oauth: bool = True,
        refuse_get: int | None = None,
    ):
        if algorithm == "ES256":
            self._key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "RS256":
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}; use 'ES256' or 'RS256'")
        self.users = dict(users)
        self.access: dict[str | None, list[Rule]] = {
            user: list(rules) for user, rules in (default_access_rules() if access is None else access).items()
        }
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.token_ttl = token_ttl
        self.oauth = oauth
        self.refuse_get = refuse_get
        self.algorithm: Algorithm = algorithm
        self.key_id = libtrust_key_id(self._key.public_key())
        self.certificate_pem = certificate_pem(self_signed_certificate(self._key, "regframe token signer"))
        self._ssl_context = ssl_context
        self._host = host
        self._lock = threading.Lock()
        self._issued: list[IssuedToken] = []
        self._rejected = 0
        self._arrived = 0
        self._overload: tuple[int, int, str | None] = (0, 0, None)  # (times left, status, Retry-After)
        self._refresh_tokens: dict[str, tuple[str, str]] = {}  # refresh token -> (user, service)
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> TokenServer:
        if self._httpd is not None:
            raise RuntimeError("token server is already running")
        httpd = _Server((self._host, 0), _Handler)
        httpd.token_server = self
        if self._ssl_context is not None:
            httpd.socket = self._ssl_context.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="regframe-token-server", kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("token server is not running")
        scheme = "https" if self._ssl_context is not None else "http"
        return f"{scheme}://{self._host}:{self._httpd.server_address[1]}"

    @property
    def realm(self) -> str:
        """The URL the registry's ``auth.token.realm`` points at."""
        return f"{self.url}/token"

    # -- counters --------------------------------------------------------------------------
    @property
    def issued(self) -> list[IssuedToken]:
        """A copy of every token issued so far, oldest first."""
        with self._lock:
            return list(self._issued)

    @property
    def rejected(self) -> int:
        """How many requests were refused for bad credentials."""
        with self._lock:
            return self._rejected

    def issued_count(self, scope: str | None = None) -> int:
        """Tokens issued, or only those whose request included ``scope`` (e.g. ``repository:a:pull``)."""
        with self._lock:
            if scope is None:
                return len(self._issued)
            return sum(any(str(s) == scope for s in t.requested) for t in self._issued)

    @property
    def arrived(self) -> int:
        """How many requests reached ``/token`` (GET or POST), whatever they were answered."""
        with self._lock:
            return self._arrived

    def reset(self) -> None:
        with self._lock:
            self._issued.clear()
            self._rejected = 0
            self._arrived = 0
            self._overload = (0, 0, None)

    # -- overload --------------------------------------------------------------------------
    def answer_next(self, times: int, status: int = 429, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests to ``/token`` with ``status`` (and ``Retry-After`` when given)
        instead of serving them; ``answer_next(0)`` ends it."""
        with self._lock:
            self._overload = (times, status, retry_after)

    def _arrival(self) -> tuple[int, str | None] | None:
        """Count a request to ``/token``; the status and ``Retry-After`` to answer it with when overloaded."""
        with self._lock:
            self._arrived += 1
            times, status, retry_after = self._overload
            if times <= 0:
                return None
            self._overload = (times - 1, status, retry_after)
            return status, retry_after

    # -- refresh tokens --------------------------------------------------------------------
    def refresh_token_for(self, user: str, service: str | None = None) -> str:
        """A refresh token for ``user`` and ``service``, as the password grant with ``access_type=offline``
        (what ``docker login`` stores as ``identitytoken``) would give."""
        if user not in self.users:
            raise KeyError(f"no user {user!r}; users are {sorted(self.users)}")
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh_tokens[token] = (user, service or self.service)
        return token

    def revoke_refresh_tokens(self) -> None:
        with self._lock:
            self._refresh_tokens.clear()

    def _refresh_owner(self, token: str, service: str) -> str:
        with self._lock:
            owner = self._refresh_tokens.get(token)
        if owner is None or owner[1] != service:
            raise PermissionError("unknown refresh token, or one issued for another service")
        return owner[0]

    # -- tokens ----------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> str | None:
        """Return the user named by a Basic ``Authorization`` header, ``None`` if absent.

        Raises PermissionError for a malformed header, an unknown user or a wrong password.
        """
        if not authorization:
            return None
        scheme, _, payload = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise PermissionError(f"unsupported authorization scheme {scheme!r}")
        try:
            user, sep, password = base64.b64decode(payload.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise PermissionError("malformed Basic credentials") from None
        if not sep:
            raise PermissionError("invalid username or password")
        return self.check_password(user, password)

    def check_password(self, user: str, password: str) -> str:
        """Return ``user`` if ``password`` is theirs; raise PermissionError otherwise."""
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(password.encode(), expected.encode()):
            raise PermissionError("invalid username or password")
        return user

    def make_token(
        self, user: str | None, access: Sequence[Scope], *, service: str | None = None, ttl: int | None = None
    ) -> str:
        """Sign a JWT granting exactly ``access``; tests may call it to craft tokens directly."""
        now = int(time.time())
        if ttl is None:
            ttl = self.token_ttl
        if ttl is None:
            ttl = 60 if self.expires_in is None else self.expires_in
        header = {"typ": "JWT", "alg": self.algorithm, "kid": self.key_id}
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": service or self.service,
            "exp": now + ttl,
            "nbf": now,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [scope.claim() for scope in access],
        }
        signing_input = f"{_b64json(header)}.{_b64json(claims)}".encode()
        return f"{signing_input.decode()}.{_b64url(self._sign(signing_input))}"

    def _sign(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def issue(
        self,
        user: str | None,
        service: str | None,
        requested: Sequence[Scope],
        *,
        grant_type: str = "get",
        client_id: str | None = None,
    ) -> dict[str, object]:
        """Grant what the rules allow of ``requested`` and return the token response body."""
        granted = grant(self.access.get(user, ()), requested)
        expires_in = self.expires_in
        token = self.make_token(user, granted, service=service)
        with self._lock:
            self._issued.append(
                IssuedToken(
                    user, service or self.service, tuple(requested), granted, expires_in, token, grant_type, client_id
                )
            )
        body: dict[str, object] = {
            "token": token,
            "access_token": token,
            "issued_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        if grant_type != "get":
            body = {k: v for k, v in body.items() if k != "token"}
            body["scope"] = " ".join(str(scope) for scope in granted)
        if expires_in is not None:
            body["expires_in"] = expires_in
        return body

    def _count_rejection(self) -> None:
        with self._lock:
            self._rejected += 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    token_server: TokenServer

    def handle_error(self, request, client_address) -> None:
        """Clients that hang up or fail the TLS handshake are normal in fault tests: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> None:
        self._reply(status, {"errors": [{"code": code, "message": message, "detail": None}]}, headers)

    def _oauth_error(self, status: int, error: str, description: str) -> None:
        self._reply(status, {"error": error, "error_description": description})

    def _overloaded(self) -> bool:
        """Count this request, and answer it with the status ``answer_next`` set, if any (then True)."""
        answer = self.server.token_server._arrival()
        if answer is None:
            return False
        status, retry_after = answer
        code = "TOOMANYREQUESTS" if status == 429 else "UNAVAILABLE"
        self._error(status, code, "token server overloaded", {"Retry-After": retry_after} if retry_after else None)
        return True

    def do_GET(self) -> None:
        ts = self.server.token_server
        url = urlsplit(self.path)
        if url.path != "/token":
            self._error(404, "NOT_FOUND", f"no endpoint at {url.path}")
            return
        if self._overloaded():
            return
        if ts.refuse_get is not None:
            self._error(ts.refuse_get, "UNSUPPORTED", "this token server only serves OAuth2 POST", {"Allow": "POST"})
            return
        query = parse_qs(url.query)
        try:
            requested = [Scope.parse(s) for value in query.get("scope", []) for s in value.split()]
        except ValueError as exc:
            self._error(400, "INVALID_SCOPE", str(exc))
            return
        try:
            user = ts.authenticate(self.headers.get("Authorization"))
        except PermissionError as exc:
            ts._count_rejection()
            self._error(401, "UNAUTHORIZED", str(exc), {"WWW-Authenticate": f'Basic realm="{ts.issuer}"'})
            return
        self._reply(200, ts.issue(user, query.get("service", [None])[0], requested))

    def do_POST(self) -> None:
        ts = self.server.token_server
        url = urlsplit(self.path)
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            length = -1
        if not 0 <= length <= FORM_LIMIT:
            self.close_connection = True
            self._oauth_error(400, "invalid_request", f"a form of 0 to {FORM_LIMIT} bytes is expected")
            return
        raw = self.rfile.read(length)
        if url.path == "/token" and self._overloaded():
            return
        if url.path != "/token" or not ts.oauth:
            self._error(404, "NOT_FOUND", f"no OAuth2 endpoint at {url.path}")
            return
        if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            self._oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
            return
        try:
            form = {
                k: v[-1] for k, v in parse_qs(raw.decode(), keep_blank_values=True, strict_parsing=bool(raw)).items()
            }
        except (ValueError, UnicodeDecodeError):
            self._oauth_error(400, "invalid_request", "malformed form")
            return
        grant_type, client_id = form.get("grant_type"), form.get("client_id")
        service = form.get("service") or ts.service
        if not client_id:
            self._oauth_error(400, "invalid_request", "client_id is required")
            return
        try:
            requested = [Scope.parse(s) for s in form.get("scope", "").split()]
        except ValueError as exc:
            self._oauth_error(400, "invalid_scope", str(exc))
            return
        refresh = None
        try:
            if grant_type == "password":
                user = ts.check_password(form.get("username", ""), form.get("password", ""))
                if form.get("access_type") == "offline":
                    refresh = ts.refresh_token_for(user, service)
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                user = ts._refresh_owner(refresh, service)
            else:
                self._oauth_error(400, "unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
                return
        except PermissionError as exc:
            ts._count_rejection()
            self._oauth_error(400, "invalid_grant", str(exc))
            return
        body = ts.issue(user, service, requested, grant_type=grant_type, client_id=client_id)
        if refresh is not None:
            body["refresh_token"] = refresh
        self._reply(200, body)
