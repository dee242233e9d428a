"""The test harness against the real docker-registry: launcher, basic and token auth, TLS."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from regframe.testing import CATALOG, Scope, grant, local_registry

TIMEOUT = 10


# -- helpers (plain requests, independent of the code under test) ---------------------------


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_file(storage: Path, digest: str) -> Path:
    """Where distribution's filesystem driver keeps a blob's bytes."""
    hexpart = digest.split(":", 1)[1]
    return storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"


def challenge(response: requests.Response) -> dict[str, str]:
    header = response.headers["WWW-Authenticate"]
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class TokenClient:
    """The Docker token dance done by hand: request, read the challenge, fetch a token, retry."""

    def __init__(self, registry, user: str | None = None, password: str | None = None):
        self.registry = registry
        self.verify = str(registry.ca_path) if registry.ca_path else True
        self.auth = None if user is None else (user, password or registry.users[user])
        self.tokens: list[dict] = []

    def request(self, method: str, url: str, **kw) -> requests.Response:
        response = requests.request(method, url, verify=self.verify, timeout=TIMEOUT, **kw)
        if response.status_code != 401:
            return response
        params = challenge(response)
        token = requests.get(
            params["realm"],
            auth=self.auth,
            verify=self.verify,
            timeout=TIMEOUT,
            params={"service": params["service"], "scope": params.get("scope", "")},
        )
        assert token.status_code == 200, token.text
        self.tokens.append(token.json())
        headers = {**kw.pop("headers", {}), "Authorization": f"Bearer {token.json()['token']}"}
        return requests.request(method, url, verify=self.verify, timeout=TIMEOUT, headers=headers, **kw)


def push_blob(url: str, repo: str, data: bytes, request=None) -> requests.Response:
    """Monolithic upload (POST, then PUT ?digest=); returns the POST's answer if it fails."""
    request = request or (lambda method, u, **kw: requests.request(method, u, timeout=TIMEOUT, **kw))
    started = request("POST", f"{url}/v2/{repo}/blobs/uploads/")
    if started.status_code != 202:
        return started
    location = started.headers["Location"]
    if location.startswith("/"):
        location = url + location
    return request(
        "PUT",
        location,
        params={"digest": sha256_digest(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def jwt_part(token: str, index: int) -> dict:
    part = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def refused(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) != 0


# -- fixtures: one registry per kind for the module -----------------------------------------

HEADER_VALUE = 'quoted "value": with # and \' and \\ and ünïcode'


@pytest.fixture(scope="module")
def plain():
    with local_registry(http__headers={"X-Regframe-Test": [HEADER_VALUE]}) as registry:
        yield registry


@pytest.fixture(scope="module")
def token():
    with local_registry(auth="token") as registry:
        yield registry


# -- anonymous --------------------------------------------------------------------------------


def test_anonymous_registry_answers_v2(plain):
    response = requests.get(f"{plain.url}/v2/", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert plain.url == f"http://{plain.host}" and plain.host == f"127.0.0.1:{plain.port}"
    assert plain.ca_path is None and plain.token_server is None


def test_anonymous_push_then_head_and_get(plain):
    data = secrets.token_bytes(100)
    digest = sha256_digest(data)
    assert push_blob(plain.url, "harness/anon", data).status_code == 201
    head = requests.head(f"{plain.url}/v2/harness/anon/blobs/{digest}", timeout=TIMEOUT)
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert int(head.headers["Content-Length"]) == len(data)
    assert requests.get(f"{plain.url}/v2/harness/anon/blobs/{digest}", timeout=TIMEOUT).content == data
    assert blob_file(plain.storage, digest).read_bytes() == data


def test_config_overrides_reach_the_registry(plain):
    response = requests.get(f"{plain.url}/v2/", timeout=TIMEOUT)
    assert response.headers["X-Regframe-Test"].encode("latin-1").decode() == HEADER_VALUE
    assert str(plain.storage) in plain.config_path.read_text()


def test_delete_is_enabled_by_default(plain):
    data = b"to be deleted"
    assert push_blob(plain.url, "harness/del", data).status_code == 201
    blob_url = f"{plain.url}/v2/harness/del/blobs/{sha256_digest(data)}"
    assert requests.delete(blob_url, timeout=TIMEOUT).status_code == 202
    assert requests.head(blob_url, timeout=TIMEOUT).status_code == 404


def test_delete_disabled():
    with local_registry(delete=False) as registry:
        data = b"kept"
        assert push_blob(registry.url, "harness/keep", data).status_code == 201
        response = requests.delete(f"{registry.url}/v2/harness/keep/blobs/{sha256_digest(data)}", timeout=TIMEOUT)
        assert response.status_code == 405
        assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert not registry.delete_enabled


def test_two_registries_run_concurrently(plain):
    with local_registry() as other:
        assert other.port != plain.port and other.storage != plain.storage
        data = b"only in the second registry"
        assert push_blob(other.url, "harness/two", data).status_code == 201
        path = f"/v2/harness/two/blobs/{sha256_digest(data)}"
        assert requests.head(other.url + path, timeout=TIMEOUT).status_code == 200
        assert requests.head(plain.url + path, timeout=TIMEOUT).status_code == 404


def test_garbage_collect_removes_unreferenced_blobs():
    with local_registry() as registry:
        data = b"no manifest references this blob"
        digest = sha256_digest(data)
        assert push_blob(registry.url, "harness/gc", data).status_code == 201
        assert blob_file(registry.storage, digest).exists()
        assert digest in registry.garbage_collect(dry_run=True)
        assert blob_file(registry.storage, digest).exists()
        assert digest in registry.garbage_collect()
        assert not blob_file(registry.storage, digest).exists()
        assert requests.head(f"{registry.url}/v2/harness/gc/blobs/{digest}", timeout=TIMEOUT).status_code == 404


# -- lifecycle --------------------------------------------------------------------------------


def test_everything_is_gone_after_exit():
    with local_registry(auth="token") as registry:
        pid, port, workdir = registry.pid, registry.port, registry.config_path.parent
        token_port = int(registry.token_server.url.rsplit(":", 1)[1])
        assert requests.get(f"{registry.url}/v2/", timeout=TIMEOUT).status_code == 401
        assert not refused(token_port)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert refused(port) and refused(token_port)
    assert not workdir.exists()


def test_demo_stopped_by_sigterm_leaves_no_registry_behind(tmp_path):
    """``python -m regframe.demo --keep-running`` ended by SIGTERM (``kill``, a service manager) rather than
    Ctrl-C stops the registry it started in its own session and removes its folder."""
    log = tmp_path / "demo.log"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    command = [sys.executable, "-m", "regframe.demo", "--keep-running", "--repositories", "1", "--tags", "1"]
    with log.open("w") as out:
        demo = subprocess.Popen(
            [*command, "--out", str(tmp_path / "report")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "TMPDIR": str(scratch)},
        )
    pid = None
    try:
        deadline = time.monotonic() + 120
        while (
            running := re.search(r"still running at http://127\.0\.0\.1:(\d+) \(pid (\d+)\)", log.read_text())
        ) is None:
            assert demo.poll() is None, f"the demo exited with {demo.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the demo did not say it was running:\n{log.read_text()}"
            time.sleep(0.2)
        port, pid = int(running[1]), int(running[2])
        (workdir,) = scratch.glob("regframe-registry-*")
        assert not refused(port)
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=30) == 0, log.read_text()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert refused(port)
        assert not workdir.exists()
        assert list(scratch.iterdir()) == []
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        leftover = Path(f"/proc/{pid}/cmdline")
        if pid is not None and leftover.exists() and b"docker-registry" in leftover.read_bytes():
            os.kill(pid, signal.SIGKILL)


def test_early_exit_raises_with_the_registry_output(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(RuntimeError, match="exactly one storage type"), local_registry(storage__inmemory={}):
        pass
    assert list(tmp_path.iterdir()) == []


def test_registry_environment_variables_do_not_leak(monkeypatch):
    monkeypatch.setenv("REGISTRY_STORAGE_DELETE_ENABLED", "false")
    monkeypatch.setenv("REGISTRY_HTTP_ADDR", "127.0.0.1:1")
    with local_registry() as registry:
        assert registry.port != 1
        data = b"deletable despite the environment"
        assert push_blob(registry.url, "harness/env", data).status_code == 201
        assert (
            requests.delete(f"{registry.url}/v2/harness/env/blobs/{sha256_digest(data)}", timeout=TIMEOUT).status_code
            == 202
        )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"auth": "ldap"}, "auth must be"),
        ({"access": {None: []}}, "only apply with auth='token'"),
        ({"log_level": "loud"}, "log_level"),
        ({"http__addr": "127.0.0.1:5000"}, "http.addr"),
        ({"users": {"a:b": "pw"}}, "contain no ':'"),
    ],
)
def test_invalid_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)), local_registry(**kwargs):
        pass


# -- basic auth -------------------------------------------------------------------------------


def test_basic_auth_needs_credentials(basic):
    url = f"{basic.url}/v2/"
    anonymous = requests.get(url, timeout=TIMEOUT)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    for user, password in basic.users.items():
        assert requests.get(url, auth=(user, password), timeout=TIMEOUT).status_code == 200
    assert requests.get(url, auth=("alice", basic.users["alice"] + "x"), timeout=TIMEOUT).status_code == 401
    assert requests.get(url, auth=("mallory", "secret"), timeout=TIMEOUT).status_code == 401


def test_basic_auth_users_may_push(basic):
    def as_bob(method, url, **kw):
        return requests.request(method, url, auth=basic.credentials("bob"), timeout=TIMEOUT, **kw)

    assert push_blob(basic.url, "harness/basic", b"pushed by bob", as_bob).status_code == 201
    with pytest.raises(KeyError, match="mallory"):
        basic.credentials("mallory")


def test_default_users_get_random_passwords(basic, token):
    assert set(basic.users) == set(token.users) == {"alice", "bob", "carol"}
    assert all(len(pw) >= 12 for pw in basic.users.values())
    assert all(basic.users[u] != token.users[u] for u in basic.users)


# -- token auth -------------------------------------------------------------------------------


def test_token_challenge_names_realm_and_service(token):
    response = requests.get(f"{token.url}/v2/_catalog", timeout=TIMEOUT)
    assert response.status_code == 401
    params = challenge(response)
    assert params["realm"] == token.token_server.realm
    assert params["service"] == token.token_server.service
    assert params["scope"] == "registry:catalog:*"


def test_alice_pushes_through_the_token_flow(token):
    alice = TokenClient(token, "alice")
    data = b"alice's blob"
    assert push_blob(token.url, "harness/alice", data, alice.request).status_code == 201
    head = alice.request("HEAD", f"{token.url}/v2/harness/alice/blobs/{sha256_digest(data)}")
    assert head.status_code == 200
    granted = jwt_part(alice.tokens[0]["token"], 1)["access"]
    assert [{**g, "actions": sorted(g["actions"])} for g in granted] == [
        {"type": "repository", "name": "harness/alice", "actions": ["pull", "push"]}
    ]


def test_bob_pulls_but_may_not_push(token):
    data = b"pushed by alice for bob"
    assert push_blob(token.url, "harness/bob", data, TokenClient(token, "alice").request).status_code == 201
    bob = TokenClient(token, "bob")
    assert bob.request("HEAD", f"{token.url}/v2/harness/bob/blobs/{sha256_digest(data)}").status_code == 200
    refused_push = bob.request("POST", f"{token.url}/v2/harness/bob/blobs/uploads/")
    assert refused_push.status_code == 401
    assert challenge(refused_push)["error"] == "insufficient_scope"
    assert jwt_part(bob.tokens[-1]["token"], 1)["access"] == [
        {"type": "repository", "name": "harness/bob", "actions": ["pull"]}
    ]


def test_catalog_for_alice_but_not_carol(token):
    assert (
        push_blob(token.url, "harness/carol", b"carol may push", TokenClient(token, "carol").request).status_code == 201
    )
    carol = TokenClient(token, "carol").request("GET", f"{token.url}/v2/_catalog")
    assert carol.status_code == 401
    assert challenge(carol)["error"] == "insufficient_scope"
    alice = TokenClient(token, "alice").request("GET", f"{token.url}/v2/_catalog")
    assert alice.status_code == 200
    assert "harness/carol" in alice.json()["repositories"]


def test_anonymous_pull_on_a_token_registry(token):
    data = b"public blob"
    assert push_blob(token.url, "harness/public", data, TokenClient(token, "alice").request).status_code == 201
    anonymous = TokenClient(token)
    got = anonymous.request("GET", f"{token.url}/v2/harness/public/blobs/{sha256_digest(data)}")
    assert got.status_code == 200 and got.content == data
    push = anonymous.request("POST", f"{token.url}/v2/harness/public/blobs/uploads/")
    assert push.status_code == 401 and challenge(push)["error"] == "insufficient_scope"


def test_token_endpoint_refuses_bad_credentials(token):
    ts = token.token_server
    before = ts.rejected
    for auth in [("alice", "wrong"), ("mallory", token.users["alice"])]:
        response = requests.get(
            ts.realm, auth=auth, timeout=TIMEOUT, params={"service": ts.service, "scope": "repository:x:pull"}
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert ts.rejected == before + 2


def test_token_response_and_jwt_as_distribution_expects(token):
    ts = token.token_server
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    body = requests.get(
        ts.realm,
        auth=token.credentials("alice"),
        timeout=TIMEOUT,
        params={"service": ts.service, "scope": "repository:harness/jwt:pull"},
    ).json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert before <= dt.datetime.fromisoformat(body["issued_at"]) <= dt.datetime.now(dt.UTC)

    header, claims = jwt_part(body["token"], 0), jwt_part(body["token"], 1)
    bundle = x509.load_pem_x509_certificate(
        Path(re.search(r'rootcertbundle: "(.*)"', token.config_path.read_text())[1]).read_bytes()
    )
    spki = bundle.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    b32 = base64.b32encode(hashlib.sha256(spki).digest()[:30]).decode()
    assert header["alg"] == "ES256"
    assert header["kid"] == ":".join(b32[i : i + 4] for i in range(0, 48, 4))
    assert claims["aud"] == ts.service and claims["iss"] == ts.issuer and claims["sub"] == "alice"
    assert all(type(claims[k]) is int for k in ("exp", "nbf", "iat"))
    assert claims["exp"] - claims["iat"] == 300
    assert claims["access"] == [{"type": "repository", "name": "harness/jwt", "actions": ["pull"]}]


def test_tokens_are_counted_per_scope(token):
    ts = token.token_server
    scope = "repository:harness/count:pull"
    assert ts.issued_count(scope) == 0
    for _ in range(3):
        requests.get(ts.realm, params={"service": ts.service, "scope": scope}, timeout=TIMEOUT)
    assert ts.issued_count(scope) == 3
    assert [t.user for t in ts.issued if scope in map(str, t.requested)] == [None] * 3


def test_registry_rejects_expired_and_foreign_tokens(token):
    ts = token.token_server
    catalog = [Scope("registry", "catalog", ("*",))]
    url = f"{token.url}/v2/_catalog"

    def status(jwt: str) -> tuple[int, str | None]:
        response = requests.get(url, headers={"Authorization": f"Bearer {jwt}"}, timeout=TIMEOUT)
        return response.status_code, challenge(response).get("error") if response.status_code == 401 else None

    assert status(ts.make_token("alice", catalog)) == (200, None)
    assert status(ts.make_token("alice", catalog, ttl=-120)) == (401, "invalid_token")
    assert status(ts.make_token("alice", catalog, service="elsewhere")) == (401, "invalid_token")
    log = token.log_text()
    assert "token not to be used after" in log and "another audience" in log


def test_lifetime_knobs(token):
    ts = token.token_server
    params = {"service": ts.service, "scope": "registry:catalog:*"}
    try:
        ts.expires_in = None
        body = requests.get(ts.realm, params=params, auth=token.credentials("alice"), timeout=TIMEOUT).json()
        claims = jwt_part(body["token"], 1)
        assert "expires_in" not in body and claims["exp"] - claims["iat"] == 60
        ts.expires_in, ts.token_ttl = 300, -120
        alice = TokenClient(token, "alice")
        rejected = alice.request("GET", f"{token.url}/v2/_catalog")
        assert alice.tokens[0]["expires_in"] == 300
        assert rejected.status_code == 401 and challenge(rejected)["error"] == "invalid_token"
    finally:
        ts.expires_in, ts.token_ttl = 300, None


def test_custom_access_rules():
    rules = {"dave": [("team/*", {"pull", "push"})], None: []}
    with local_registry(auth="token", users={"dave": "dave-pw"}, access=rules) as registry:
        dave = TokenClient(registry, "dave")
        assert push_blob(registry.url, "team/app", b"team blob", dave.request).status_code == 201
        outside = push_blob(registry.url, "other/app", b"not here", dave.request)
        assert outside.status_code == 401 and challenge(outside)["error"] == "insufficient_scope"
        path = f"/v2/team/app/blobs/{sha256_digest(b'team blob')}"
        assert TokenClient(registry).request("HEAD", registry.url + path).status_code == 401
        assert dave.request("HEAD", registry.url + path).status_code == 200


def test_rs256_tokens_are_accepted():
    with local_registry(auth="token", token_algorithm="RS256") as registry:
        alice = TokenClient(registry, "alice")
        assert alice.request("GET", f"{registry.url}/v2/_catalog").status_code == 200
        assert jwt_part(alice.tokens[0]["token"], 0)["alg"] == "RS256"


def test_grant_intersects_requests_with_rules():
    rules = [("*", {"pull"}), ("team/*", {"push"}), ("team/admin", {"*"}), (CATALOG, {"*"})]
    requested = [
        Scope("repository", "a/b/c", ("pull", "push")),
        Scope("repository", "team/x", ("pull", "push", "delete")),
        Scope("repository", "team/admin", ("delete",)),
        Scope("repository", "other", ("delete",)),
        Scope("registry", "catalog", ("*",)),
    ]
    assert grant(rules, requested) == (
        Scope("repository", "a/b/c", ("pull",)),
        Scope("repository", "team/x", ("pull", "push")),
        Scope("repository", "team/admin", ("delete",)),
        Scope("registry", "catalog", ("*",)),
    )
    assert grant([("*", {"pull", "push"})], [Scope("registry", "catalog", ("*",))]) == ()


def test_scope_parsing():
    assert Scope.parse("repository:foo/bar:pull,push") == Scope("repository", "foo/bar", ("pull", "push"))
    assert Scope.parse("registry:catalog:*") == Scope("registry", "catalog", ("*",))
    assert Scope.parse("repository:host:5000/x:pull").name == "host:5000/x"
    assert str(Scope("repository", "a", ("pull", "push"))) == "repository:a:pull,push"
    with pytest.raises(ValueError, match="type:name:actions"):
        Scope.parse("repository:pull")


# -- TLS --------------------------------------------------------------------------------------


def test_tls_works_with_the_throwaway_ca(tls):
    assert tls.url == f"https://127.0.0.1:{tls.port}"
    ca = str(tls.ca_path)
    assert requests.get(f"{tls.url}/v2/", verify=ca, timeout=TIMEOUT).status_code == 200
    assert requests.get(f"https://localhost:{tls.port}/v2/", verify=ca, timeout=TIMEOUT).status_code == 200


def test_tls_fails_with_the_system_trust_store(tls):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls.url}/v2/", verify=True, timeout=TIMEOUT)


def test_tls_with_token_auth():
    with local_registry(auth="token", tls=True) as registry:
        assert registry.token_server.realm.startswith("https://127.0.0.1:")
        alice = TokenClient(registry, "alice")
        assert push_blob(registry.url, "harness/tls", b"over https", alice.request).status_code == 201
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(registry.token_server.realm, verify=True, timeout=TIMEOUT)


# -- optional dependencies ----------------------------------------------------------------------

WITHOUT_CRYPTOGRAPHY_OR_BCRYPT = """
import http.client, json, sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("cryptography", "bcrypt"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocked())

import regframe.testing
from regframe.testing import local_registry

with local_registry() as registry:
    conn = http.client.HTTPConnection(registry.host, timeout=10)
    conn.request("GET", "/v2/")
    status = conn.getresponse().status
    conn.close()
refusals = {}
for name, options in (("tls", {"tls": True}), ("token", {"auth": "token"}), ("basic", {"auth": "basic"})):
    try:
        with local_registry(**options):
            refusals[name] = None
    except ModuleNotFoundError as error:
        refusals[name] = [str(error), error.name]
try:
    regframe.testing.TokenServer
    lazy = None
except ModuleNotFoundError as error:
    lazy = error.name
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("cryptography", "bcrypt"))
print(json.dumps({"status": status, "refusals": refusals, "lazy": lazy, "loaded": loaded}))
"""


def test_anonymous_registry_needs_neither_cryptography_nor_bcrypt(tmp_path):
    """Where ``cryptography`` and ``bcrypt`` cannot be imported, an anonymous registry starts and answers;
    TLS, token and htpasswd registries are refused before anything starts, naming the missing package."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_CRYPTOGRAPHY_OR_BCRYPT],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["status"] == 200
    assert answer["loaded"] == []
    assert answer["lazy"] == "cryptography"
    for name, package in (("tls", "cryptography"), ("token", "cryptography"), ("basic", "bcrypt")):
        message, missing = answer["refusals"][name]
        assert missing == package
        assert repr(package) in message and "regframe[testing]" in message, message
    assert list(tmp_path.iterdir()) == [], "nothing started or left behind"
