"""Authentication, TLS and credential hygiene against real htpasswd, token and TLS registries."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import warnings

import pytest
from urllib3.exceptions import InsecureRequestWarning

import regframe
from regframe.client.auth import repository_of
from regframe.client.transport import InsecureTLSWarning
from regframe.testing import build_image, layer, local_registry, push_image

IMAGE = build_image([layer("auth-layer", 1200)])


@pytest.fixture(scope="module")
def token():
    with local_registry(auth="token") as reg:
        alice = regframe.connect(reg.url, user="alice", password=reg.users["alice"], docker_config=False)
        push_image(alice, "shared/app", "v1", IMAGE)
        alice.close()
        yield reg


# -- basic -----------------------------------------------------------------------------------------


def test_basic_auth_reads_and_writes(basic):
    with regframe.connect(basic.url, user="alice", password=basic.users["alice"], docker_config=False) as reg:
        push_image(reg, "basic/app", "v1", IMAGE)
        assert reg.tags("basic/app")["tags"] == ["v1"]


def test_basic_auth_wrong_password_fails_at_connect(basic):
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the username/password"):
        regframe.connect(basic.url, user="alice", password="wrong", docker_config=False)


def test_basic_registry_refuses_anonymous(basic):
    with pytest.raises(regframe.RegistryAuthenticationError, match="requires credentials"):
        regframe.connect(basic.url, docker_config=False)


def test_credentials_from_docker_config(basic, tmp_path, monkeypatch):
    secret = base64.b64encode(f"bob:{basic.users['bob']}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {basic.host: {"auth": secret}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with regframe.connect(basic.url) as reg:
        assert reg.user == "bob"
        reg.search()


def test_credentials_from_a_credential_helper(basic, tmp_path, monkeypatch):
    # A real helper program on PATH, speaking the docker-credential protocol on stdin/stdout.
    helper = tmp_path / "bin" / "docker-credential-regframetest"
    helper.parent.mkdir()
    answer = json.dumps({"ServerURL": basic.host, "Username": "carol", "Secret": basic.users["carol"]})
    helper.write_text(f'#!/bin/sh\nread host\n[ "$host" = "{basic.host}" ] || exit 1\necho \'{answer}\'\n')
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {basic.host: "regframetest"}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    with regframe.connect(basic.url) as reg:
        assert reg.user == "carol"


# -- token -----------------------------------------------------------------------------------------


def test_token_anonymous_pull_allowed(token):
    with regframe.connect(token.url, docker_config=False) as reg:
        assert reg.tags("shared/app")["tags"] == ["v1"]
        with pytest.raises(regframe.RegistryAuthenticationError, match="anonymous access refused"):
            push_image(reg, "shared/anon", "v1", IMAGE)


def test_token_cached_per_scope(token):
    server = token.token_server
    with regframe.connect(token.url, user="alice", password=token.users["alice"], docker_config=False) as reg:
        start = server.issued_count()
        for _ in range(5):
            reg.manifest("shared/app", "v1")
            reg.tags("shared/app")
        assert server.issued_count() - start == 1, "one token for repository:shared/app:pull, reused"
        reg.search()
        assert server.issued_count() - start == 2, "the catalog scope needs its own token"


def test_token_renewed_after_expiry(token):
    now = [1000.0]
    with regframe.connect(token.url, user="alice", password=token.users["alice"], docker_config=False) as reg:
        reg.auth._clock = lambda: now[0]
        reg.manifest("shared/app", "v1")
        issued = token.token_server.issued_count()
        now[0] += 60  # well inside the server's expires_in
        reg.manifest("shared/app", "v1")
        assert token.token_server.issued_count() == issued
        now[0] += token.token_server.expires_in + 1
        reg.manifest("shared/app", "v1")
        assert token.token_server.issued_count() == issued + 1


def test_rejected_cached_token_is_replaced_once(token):
    with regframe.connect(token.url, user="alice", password=token.users["alice"], docker_config=False) as reg:
        reg.manifest("shared/app", "v1")
        for cached in reg.auth._tokens.values():
            cached.value = "not-a-valid-token"
        issued = token.token_server.issued_count()
        assert reg.manifest("shared/app", "v1").digest
        assert token.token_server.issued_count() == issued + 1


def test_pull_only_user_cannot_push(token):
    with regframe.connect(token.url, user="bob", password=token.users["bob"], docker_config=False) as reg:
        assert reg.manifest("shared/app", "v1")
        with pytest.raises(regframe.RegistryAuthorizationError, match="lacks the right"):
            push_image(reg, "shared/bob", "v1", IMAGE)


def test_user_without_catalog_access(token):
    with regframe.connect(token.url, user="carol", password=token.users["carol"], docker_config=False) as reg:
        with pytest.raises(regframe.RegistryAuthorizationError):
            reg.search()
        assert reg.tags("shared/app")["tags"] == ["v1"]


def test_token_wrong_password_fails_at_connect(token):
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the credentials"):
        regframe.connect(token.url, user="alice", password="wrong", docker_config=False)


def test_secrets_never_shown(token, caplog):
    password = token.users["alice"]
    caplog.set_level(logging.DEBUG)
    with regframe.connect(token.url, user="alice", password=password, docker_config=False) as reg:
        reg.manifest("shared/app", "v1")
        tokens = [t.value for t in reg.auth._tokens.values()]
        texts = [repr(reg), str(reg), repr(reg.auth), reg._repr_html_(), caplog.text]
        try:
            regframe.connect(token.url, user="alice", password=password + "x", docker_config=False)
        except regframe.RegistryError as exc:
            texts += [str(exc), repr(exc)]
    assert tokens
    for text in texts:
        assert password not in text
        for value in tokens:
            assert value not in text


# -- TLS -------------------------------------------------------------------------------------------


def test_tls_with_ca_bundle(tls):
    with regframe.connect(tls.url, ca_bundle=tls.ca_path, docker_config=False) as reg:
        push_image(reg, "tls/app", "v1", IMAGE)
        assert reg.digest("tls/app", "v1").startswith("sha256:")


def test_tls_unknown_ca_raises_ssl_error(tls):
    with pytest.raises(regframe.RegistrySSLError, match="certificate"):
        regframe.connect(tls.url, docker_config=False)


def test_tls_verification_can_be_disabled(tls):
    with pytest.warns(Warning), regframe.connect(tls.url, verify=False, docker_config=False) as reg:
        reg.search()


def test_unchecked_tls_is_one_warning_per_client_not_one_per_connection():
    """``verify=False`` warned on every new connection to the registry, and urllib3 on every request to a
    TLS token server: a crawl printed it once per worker. Once per client says it."""
    with local_registry(auth="token", tls=True) as reg:
        user, password = "alice", reg.users["alice"]
        with regframe.connect(reg.url, user=user, password=password, ca_bundle=reg.ca_path) as client:
            for n in range(6):
                push_image(client, f"tls/app-{n}", "v1", IMAGE)
        with warnings.catch_warnings(record=True) as told:
            warnings.simplefilter("always")
            with regframe.connect(reg.url, user=user, password=password, verify=False) as client:
                inv = client.inventory(workers=6)
    assert len(inv.tags) == 6 and inv.errors.empty
    [warning] = [w for w in told if issubclass(w.category, InsecureRequestWarning)]
    assert warning.category is InsecureTLSWarning
    assert str(warning.message).startswith(f"TLS certificates are not checked (verify=False) for {reg.host} ")


# -- an overloaded token endpoint ------------------------------------------------------------------


@pytest.fixture
def token_server(token):
    """The token server of ``token``, told afterwards to serve every request again."""
    server = token.token_server
    yield server
    server.answer_next(0)
    server.refuse_get = None


def _recorded_waits(reg) -> list[float]:
    """The waits before retries, recorded instead of slept through the transport's wait hook."""
    waits: list[float] = []
    reg.transport.wait_hook = lambda seconds, sleep: waits.append(seconds)
    return waits


@pytest.mark.parametrize("status, retry_after", [(429, "1"), (503, None)])
def test_token_endpoint_overload_is_retried(token, token_server, status, retry_after):
    """The token endpoint answers twice 429 (Retry-After: 1) or 503, then a token: the read succeeds after
    the registry's own retries, having waited at least what was asked. No real token server answers so on
    demand (Docker Hub's auth server does send 429), so the harness's is told to."""
    with regframe.connect(token.url, user="alice", password=token.users["alice"], docker_config=False) as reg:
        waits = _recorded_waits(reg)
        arrived, congestion = token_server.arrived, reg.transport.stats.congestion
        token_server.answer_next(2, status, retry_after)
        assert reg.tags("shared/app")["tags"] == ["v1"]
        assert token_server.arrived - arrived == 3
        assert reg.stats["retries"] == {str(status): 2}
        assert reg.transport.stats.congestion - congestion == 2, "an overloaded token server slows a crawl too"
    assert len(waits) == 2
    if retry_after is not None:
        assert min(waits) >= 1


@pytest.mark.parametrize("status, error", [(429, regframe.RateLimitedError), (503, regframe.RegistryError)])
def test_token_endpoint_still_overloaded_after_the_retries(token, token_server, status, error):
    """After ``retries`` retries the token endpoint's status is raised as the registry's would be (429 is
    RateLimitedError), not as refused credentials, naming the endpoint and no secret."""
    password = token.users["alice"]
    with regframe.connect(token.url, user="alice", password=password, retries=2, docker_config=False) as reg:
        waits = _recorded_waits(reg)
        arrived = token_server.arrived
        token_server.answer_next(100, status, "1")
        with pytest.raises(error) as info:
            reg.tags("shared/app")
        assert token_server.arrived - arrived == 3, "the first request and retries=2"
        tokens = [t.value for t in reg.auth._tokens.values()]
    exc = info.value
    assert not isinstance(exc, regframe.RegistryAuthenticationError)
    assert exc.status == status and len(waits) == 2
    assert f"token endpoint GET {token_server.realm}: " in str(exc)
    assert exc.url == token_server.realm
    texts = [str(exc), repr(exc)]
    assert tokens
    for text in texts:
        assert password not in text and "Basic " not in text and "?" not in text and "scope" not in text
        assert all(value not in text for value in tokens)
    if status == 429:
        assert exc.retry_after == 1


def test_token_endpoint_waits_are_bounded_by_max_retry_wait(token, token_server):
    with regframe.connect(
        token.url, user="alice", password=token.users["alice"], max_retry_wait=1.5, docker_config=False
    ) as reg:
        waits = _recorded_waits(reg)
        arrived = token_server.arrived
        token_server.answer_next(100, 429, "1")
        with pytest.raises(regframe.RateLimitedError, match=r"max_retry_wait=1\.5\)"):
            reg.tags("shared/app")
    assert waits == [1]
    assert token_server.arrived - arrived == 2, "one wait of 1 s fits in 1.5 s, a second does not"


def test_token_endpoint_429_to_the_oauth2_post_is_retried(token, token_server):
    """A 429 says nothing was done, so the password grant's POST is retried like a GET."""
    token_server.refuse_get = 405
    with regframe.connect(token.url, user="alice", password=token.users["alice"], docker_config=False) as reg:
        _recorded_waits(reg)
        arrived = token_server.arrived
        token_server.answer_next(1, 429, "1")
        assert reg.tags("shared/app")["tags"] == ["v1"]
        assert token_server.arrived - arrived == 2
    assert token_server.issued[-1].grant == "password"


def test_token_endpoint_refusal_is_not_retried(token, token_server):
    arrived, rejected = token_server.arrived, token_server.rejected
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the credentials"):
        regframe.connect(token.url, user="alice", password="wrong", docker_config=False)
    assert token_server.arrived - arrived == 1 and token_server.rejected - rejected == 1


# -- credentials per namespace ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, repository",
    [
        ("/v2/team/blobs/app/manifests/latest", "team/blobs/app"),
        ("/v2/team/blobs/app/manifests/sha256:abc", "team/blobs/app"),
        ("/v2/team/blobs/app/blobs/sha256:abc", "team/blobs/app"),
        ("/v2/team/blobs/app/blobs/uploads/", "team/blobs/app"),
        ("/v2/team/blobs/app/blobs/uploads/0b3c-uuid", "team/blobs/app"),
        ("/v2/team/blobs/app/tags/list", "team/blobs/app"),
        ("/v2/team/blobs/app/referrers/sha256:abc", "team/blobs/app"),
        ("/v2/app/manifests/v1", "app"),
        ("/v2/manifests/manifests/manifests/v1", "manifests/manifests"),
        ("/v2/blobs/blobs/blobs/sha256:abc", "blobs/blobs"),
        ("/v2/a/blobs/uploads/blobs/uploads/", "a/blobs/uploads"),
        ("/v2/a/blobs/uploads/blobs/uploads/x", "a/blobs/uploads"),
        ("/v2/uploads/blobs/uploads/x", "uploads"),
        ("/v2/tags/list/tags/list", "tags/list"),
        ("/v2/referrers/referrers/referrers/sha256:abc", "referrers/referrers"),
        ("/v2/team/manifests/blobs/sha256:abc", "team/manifests"),
        ("/v2/", None),
        ("/v2/_catalog", None),
        ("/v2/app/manifests/", None),
        ("/v2/app/tags/list/more", None),
        ("/v2/app/blobs/uploads/x/y", None),
        ("/v2/a//b/manifests/v1", None),
        ("/other/app/manifests/v1", None),
    ],
)
def test_repository_is_read_from_the_whole_v2_path(path, repository):
    assert repository_of(path) == repository


def test_the_most_specific_namespace_key_wins_over_a_namespace_named_like_an_endpoint(token, tmp_path, monkeypatch):
    """``host/bns/blobs`` (alice, who may push) is the key for ``bns/blobs/app``, not ``host/bns`` (bob, who
    may only pull), though the repository's second component is ``blobs``; ``bns/other`` gets bob's."""
    auths = {
        token.host: {"auth": base64.b64encode(f"carol:{token.users['carol']}".encode()).decode()},
        f"{token.host}/bns": {"auth": base64.b64encode(f"bob:{token.users['bob']}".encode()).decode()},
        f"{token.host}/bns/blobs": {"auth": base64.b64encode(f"alice:{token.users['alice']}".encode()).decode()},
    }
    (tmp_path / "auth.json").write_text(json.dumps({"auths": auths}))
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    server = token.token_server
    start = len(server.issued)
    with regframe.connect(token.url) as reg:
        assert reg.user == "carol"
        push_image(reg, "bns/blobs/app", "v1", IMAGE)
        assert reg.tags("bns/blobs/app")["tags"] == ["v1"]
        with pytest.raises(regframe.RegistryAuthorizationError, match="user 'bob' lacks the right"):
            push_image(reg, "bns/other", "v1", IMAGE)
    users = {(t.user, s.name) for t in server.issued[start:] for s in t.requested}
    assert ("alice", "bns/blobs/app") in users and ("bob", "bns/other") in users
    assert {user for user, name in users if name == "bns/blobs/app"} == {"alice"}
