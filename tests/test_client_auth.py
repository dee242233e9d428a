"""Authentication, TLS and credential hygiene against real htpasswd, token and TLS registries."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest

import regframe
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
