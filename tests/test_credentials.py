"""Every credential source docker, podman and skopeo users have, against real registries.

Auth files are real files in a temporary HOME (with XDG_RUNTIME_DIR, XDG_CONFIG_HOME, DOCKER_CONFIG and
REGISTRY_AUTH_FILE set per test); credential helpers are real programs on PATH; identity tokens, registry
tokens and the OAuth2 grants go to the harness's token server in front of the real docker-registry.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

import regframe
from regframe.client.credentials import auth_files, load_credentials
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.tokenserver import Scope

IMAGE = build_image([layer("credentials-layer", 900)])
HELPER_SECRET = "helper-output-s3cret-do-not-print"


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Home:
    """A temporary HOME with the podman and docker credential locations under it."""

    root: Path
    runtime: Path
    monkeypatch: pytest.MonkeyPatch

    @property
    def runtime_auth(self) -> Path:
        return self.runtime / "containers" / "auth.json"

    @property
    def config_auth(self) -> Path:
        return self.root / ".config" / "containers" / "auth.json"

    @property
    def docker_config(self) -> Path:
        return self.root / ".docker" / "config.json"

    @property
    def dockercfg(self) -> Path:
        return self.root / ".dockercfg"

    def write(self, path: Path, content: object) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))
        return path

    def helper(self, name: str, script: str) -> Path:
        """A ``docker-credential-<name>`` program on PATH running ``script`` (sh)."""
        bin_dir = self.root / "bin"
        bin_dir.mkdir(exist_ok=True)
        program = bin_dir / f"docker-credential-{name}"
        program.write_text("#!/bin/sh\n" + script)
        program.chmod(program.stat().st_mode | stat.S_IEXEC)
        self.monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return program


@pytest.fixture
def home(tmp_path, monkeypatch):
    root = tmp_path / "home"
    runtime = tmp_path / "run"
    root.mkdir()
    runtime.mkdir()
    monkeypatch.setenv("HOME", str(root))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    for name in ("XDG_CONFIG_HOME", "DOCKER_CONFIG", "REGISTRY_AUTH_FILE"):
        monkeypatch.delenv(name, raising=False)
    return Home(root, runtime, monkeypatch)


@pytest.fixture(scope="module")
def token():
    with local_registry(auth="token") as reg:
        alice = regframe.connect(reg.url, user="alice", password=reg.users["alice"], docker_config=False)
        push_image(alice, "shared/app", "v1", IMAGE)
        alice.close()
        yield reg


# -- where credentials are found ---------------------------------------------------------------------


def test_auth_files_are_searched_in_podman_order(home):
    """containers-auth.json(5): the XDG_RUNTIME_DIR file, ~/.config/containers/auth.json, docker's
    config.json, ~/.dockercfg; the first file with an entry for the registry wins."""
    host = "registry.example.com"
    home.write(home.runtime_auth, {"auths": {host: {"auth": b64("runtime", "p1")}}})
    home.write(home.config_auth, {"auths": {host: {"auth": b64("config", "p2")}}})
    home.write(home.docker_config, {"auths": {host: {"auth": b64("docker", "p3")}}})
    home.write(home.dockercfg, {f"https://{host}": {"auth": b64("legacy", "p4"), "email": "x@example.com"}})
    order = [
        (home.runtime_auth, "runtime", "p1"),
        (home.config_auth, "config", "p2"),
        (home.docker_config, "docker", "p3"),
        (home.dockercfg, "legacy", "p4"),
    ]
    for path, user, password in order:
        found = load_credentials(host)
        assert (found.user, found.password) == (user, password)
        assert str(path) in found.source
        path.unlink()
    assert load_credentials(host) is None


def test_a_file_without_the_registry_passes_to_the_next(home):
    home.write(home.runtime_auth, {"auths": {"other.example.com": {"auth": b64("other", "x")}}})
    home.write(home.docker_config, {"auths": {"registry.example.com": {"auth": b64("docker", "p")}}})
    assert load_credentials("registry.example.com").user == "docker"


def test_registry_auth_file_is_the_only_file_read(home, tmp_path):
    """REGISTRY_AUTH_FILE is podman's --authfile default, and an explicit auth file replaces the search."""
    home.write(home.runtime_auth, {"auths": {"registry.example.com": {"auth": b64("runtime", "p")}}})
    explicit = home.write(tmp_path / "explicit.json", {"auths": {"registry.example.com": {"auth": b64("mine", "p")}}})
    home.monkeypatch.setenv("REGISTRY_AUTH_FILE", str(explicit))
    assert load_credentials("registry.example.com").user == "mine"
    assert auth_files() == [(explicit, False)]
    explicit.write_text(json.dumps({"auths": {}}))
    assert load_credentials("registry.example.com") is None, "no fallback to the other files"


def test_docker_config_folder_replaces_the_default_docker_file(home, tmp_path):
    home.write(home.docker_config, {"auths": {"registry.example.com": {"auth": b64("default", "p")}}})
    folder = tmp_path / "docker-config"
    home.write(folder / "config.json", {"auths": {"registry.example.com": {"auth": b64("folder", "p")}}})
    home.monkeypatch.setenv("DOCKER_CONFIG", str(folder))
    assert load_credentials("registry.example.com").user == "folder"
    (folder / "config.json").unlink()
    assert load_credentials("registry.example.com") is None, "~/.docker/config.json is not read then"


def test_xdg_config_home_moves_the_containers_file(home, tmp_path):
    home.write(tmp_path / "xdg" / "containers" / "auth.json", {"auths": {"r.example": {"auth": b64("xdg", "p")}}})
    home.write(home.config_auth, {"auths": {"r.example": {"auth": b64("dot-config", "p")}}})
    home.monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert load_credentials("r.example").user == "xdg"


def test_without_xdg_runtime_dir_the_per_uid_run_file_comes_first(home):
    home.monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert auth_files()[0].path == Path(f"/run/containers/{os.getuid()}/auth.json")
    assert auth_files()[1:] == [
        (home.config_auth, False),
        (home.docker_config, False),
        (home.dockercfg, True),
    ]


def test_entry_keys_as_podman_and_docker_write_them(home):
    """Keys may be a host, a URL (old docker logins, https://host/v1/) or a namespace; Docker Hub has aliases."""
    home.write(
        home.docker_config,
        {
            "auths": {
                "https://old.example.com/v1/": {"auth": b64("url-key", "p")},
                "https://index.docker.io/v1/": {"auth": b64("hub", "p")},
                "ns.example.com/team": {"auth": b64("team", "p")},
                "ns.example.com/team/app": {"auth": b64("app", "p")},
                "ns.example.com": {"auth": b64("host", "p")},
            }
        },
    )
    assert load_credentials("old.example.com").user == "url-key"
    assert load_credentials("registry-1.docker.io").user == "hub"
    assert load_credentials("ns.example.com").user == "host"
    assert load_credentials("ns.example.com", "team/app").user == "app"
    assert load_credentials("ns.example.com", "team/other").user == "team"
    assert load_credentials("ns.example.com", "teammate/app").user == "host"


def test_docker_hub_namespace_keys_as_podman_writes_them(home):
    home.write(home.runtime_auth, {"auths": {"docker.io/team": {"auth": b64("team", "p")}}})
    assert load_credentials("registry-1.docker.io", "team/app").user == "team"
    assert load_credentials("registry-1.docker.io", "library/alpine") is None


def test_namespace_keys_pick_the_credentials_per_repository(token, home):
    """podman's ``host/namespace`` keys: repositories under ``creds-ns`` use alice (who may push), the
    rest of the registry bob (who may only pull), in one client."""
    home.write(
        home.runtime_auth,
        {
            "auths": {
                f"{token.host}/creds-ns": {"auth": b64("alice", token.users["alice"])},
                token.host: {"auth": b64("bob", token.users["bob"])},
            }
        },
    )
    server = token.token_server
    start = len(server.issued)
    with regframe.connect(token.url) as reg:
        assert reg.user == "bob"
        push_image(reg, "creds-ns/app", "v1", IMAGE)
        assert reg.tags("creds-ns/app")["tags"] == ["v1"]
        with pytest.raises(regframe.RegistryAuthorizationError, match="user 'bob' lacks the right"):
            push_image(reg, "creds-nsx/app", "v1", IMAGE)
    users = {(t.user, s.name) for t in server.issued[start:] for s in t.requested}
    assert ("alice", "creds-ns/app") in users and ("bob", "creds-nsx/app") in users
    assert ("bob", "creds-ns/app") not in users and ("alice", "creds-nsx/app") not in users


def test_namespace_keys_alone_connect_to_a_basic_auth_registry(basic, home):
    """Only ``host/namespace`` keys, as ``podman login host/creds-only`` leaves: the ``/v2/`` check has no
    repository, so it goes without credentials and the registry's 401 is the answer expected; requests
    under the namespace then use its credentials, and one outside it is refused as anonymous."""
    home.write(
        home.runtime_auth,
        {"auths": {f"{basic.host}/creds-only": {"auth": b64("alice", basic.users["alice"])}}},
    )
    with regframe.connect(basic.url) as reg:
        push_image(reg, "creds-only/app", "v1", IMAGE)
        assert reg.tags("creds-only/app")["tags"] == ["v1"]
        with pytest.raises(regframe.RegistryAuthenticationError, match="none were given"):
            reg.tags("elsewhere/app")


def test_malformed_auth_file_names_the_file_not_the_contents(home):
    home.write(home.runtime_auth, {"auths": {"r.example": {"auth": "bm90LWEtcGFpcg=="}}})  # "not-a-pair"
    with pytest.raises(regframe.RegistryAuthenticationError, match="malformed auth field") as err:
        load_credentials("r.example")
    assert str(home.runtime_auth) in str(err.value) and "not-a-pair" not in str(err.value)
    assert err.value.__context__ is None
    home.runtime_auth.write_text("{ not json")
    with pytest.raises(regframe.RegistryAuthenticationError, match="cannot read credentials file"):
        load_credentials("r.example")


def test_errors_about_secrets_do_not_chain_the_exception_holding_them(basic, home):
    """A parser's exception holds what it parsed (a JSONDecodeError's ``doc``, a UnicodeDecodeError's
    ``object``): chained as ``__context__``, it would hand every other secret in the file, or the helper's
    answer, to whatever reads the exception (error reporters, debuggers), even with ``from None``."""
    other = {"auth": b64("alice", "the-other-registrys-password")}
    home.write(home.runtime_auth, {})
    home.runtime_auth.write_text(json.dumps({"auths": {"other.example": other, "r.example": {}}})[:-1] + ",}")
    with pytest.raises(regframe.RegistryAuthenticationError, match="cannot read credentials file") as err:
        load_credentials("r.example")
    assert err.value.__context__ is None
    latin = base64.b64encode(b"alice:\xff-secret").decode()
    home.write(home.runtime_auth, {"auths": {"r.example": {"auth": latin}}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="malformed auth field") as err:
        load_credentials("r.example")
    assert err.value.__context__ is None
    home.helper("junk", f'echo "{{ {HELPER_SECRET}"\n')
    home.write(home.runtime_auth, {"credHelpers": {basic.host: "junk"}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="not credentials") as err:
        regframe.connect(basic.url)
    assert err.value.__context__ is None


def test_connect_uses_the_podman_file_before_docker_config(basic, home):
    home.write(home.runtime_auth, {"auths": {basic.host: {"auth": b64("bob", basic.users["bob"])}}})
    home.write(home.docker_config, {"auths": {basic.host: {"auth": b64("alice", "wrong")}}})
    with regframe.connect(basic.url) as reg:
        assert reg.user == "bob"
        push_image(reg, "creds/podman-file", "v1", IMAGE)


# -- credential helpers ------------------------------------------------------------------------------


def test_helper_that_fails_names_itself_and_the_registry_but_not_its_output(basic, home):
    home.helper("x", f'echo "{HELPER_SECRET}"\necho "{HELPER_SECRET}" >&2\nexit 1\n')
    home.write(home.docker_config, {"credHelpers": {basic.host: "x"}})
    with pytest.raises(regframe.RegistryAuthenticationError) as err:
        regframe.connect(basic.url)
    message = str(err.value)
    assert "docker-credential-x" in message and basic.host in message and "exit status 1" in message
    assert HELPER_SECRET not in message and HELPER_SECRET not in repr(err.value)


def test_helper_printing_past_the_limit_is_stopped_there(basic, home, monkeypatch):
    """A helper printing without end (a loop, a bug) must not fill memory until its timeout: its output is
    read as it comes and the helper killed once past HELPER_OUTPUT_LIMIT, whatever it would do next (here,
    sleep past the timeout)."""
    monkeypatch.setattr("regframe.client.credentials.HELPER_TIMEOUT", 20.0)
    home.helper("chatty", f'echo "{HELPER_SECRET}"\nhead -c 3000000 /dev/zero\nexec sleep 60\n')
    home.write(home.docker_config, {"credHelpers": {basic.host: "chatty"}})
    started = time.monotonic()
    with pytest.raises(regframe.RegistryAuthenticationError, match="answered something that is not credentials") as err:
        regframe.connect(basic.url)
    assert time.monotonic() - started < 10
    assert HELPER_SECRET not in str(err.value) and err.value.__context__ is None


def test_helper_stderr_is_neither_kept_nor_shown(basic, home):
    """A helper's standard error is discarded unread: however much it writes there, only its answer counts."""
    answer = json.dumps({"Username": "carol", "Secret": basic.users["carol"]})
    home.helper("noisy", f"head -c 3000000 /dev/zero >&2\necho '{answer}'\n")
    home.write(home.docker_config, {"credHelpers": {basic.host: "noisy"}})
    with regframe.connect(basic.url) as reg:
        assert reg.user == "carol"


def test_missing_helper_names_itself_and_the_registry(basic, home):
    home.write(home.docker_config, {"credHelpers": {basic.host: "regframe-absent"}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="not on PATH") as err:
        regframe.connect(basic.url)
    assert "docker-credential-regframe-absent" in str(err.value) and basic.host in str(err.value)


def test_failing_creds_store_names_itself_and_the_registry(basic, home):
    home.helper("store", "exit 3\n")
    home.write(home.runtime_auth, {"credsStore": "store"})
    with pytest.raises(regframe.RegistryAuthenticationError, match="docker-credential-store failed") as err:
        regframe.connect(basic.url)
    assert basic.host in str(err.value) and "exit status 3" in str(err.value)


def test_helper_without_credentials_for_the_registry_means_none(basic, home):
    """docker-credential-helpers exit 1 with this message when they hold nothing for a server."""
    home.helper("empty", 'echo "credentials not found in native keychain"\nexit 1\n')
    home.write(home.docker_config, {"credHelpers": {basic.host: "empty"}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="requires credentials and none were given"):
        regframe.connect(basic.url)


def test_helper_credentials_reach_the_registry(basic, home):
    answer = json.dumps({"ServerURL": basic.host, "Username": "carol", "Secret": basic.users["carol"]})
    home.helper("ok", f'read host\n[ "$host" = "{basic.host}" ] || exit 1\necho \'{answer}\'\n')
    home.write(home.runtime_auth, {"credHelpers": {basic.host: "ok"}})
    with regframe.connect(basic.url) as reg:
        assert reg.user == "carol"
        push_image(reg, "creds/helper", "v1", IMAGE)


# -- identity tokens: the OAuth2 refresh-token grant -------------------------------------------------


def test_identity_token_is_exchanged_with_the_refresh_token_grant(token, home):
    server = token.token_server
    refresh = server.refresh_token_for("bob")
    home.write(home.docker_config, {"auths": {token.host: {"identitytoken": refresh}}})
    start = len(server.issued)
    with regframe.connect(token.url) as reg:
        assert reg.tags("shared/app")["tags"] == ["v1"], "the registry accepts the exchanged token"
        with pytest.raises(regframe.RegistryAuthorizationError, match=r"identity token .* lacks the right"):
            push_image(reg, "shared/bob-push", "v1", IMAGE)
    issued = server.issued[start:]
    assert issued and {t.grant for t in issued} == {"refresh_token"}, "never the GET endpoint"
    assert {t.user for t in issued} == {"bob"} and {t.client_id for t in issued} == {"regframe"}
    assert any(str(s) == "repository:shared/app:pull" for t in issued for s in t.granted)


def test_identity_token_from_a_helper(token, home):
    """A helper answering the username ``<token>`` holds an identity token (docker and podman read it so)."""
    refresh = token.token_server.refresh_token_for("alice")
    answer = json.dumps({"ServerURL": token.host, "Username": "<token>", "Secret": refresh})
    home.helper("tok", f"echo '{answer}'\n")
    home.write(home.runtime_auth, {"credHelpers": {token.host: "tok"}})
    start = len(token.token_server.issued)
    with regframe.connect(token.url) as reg:
        push_image(reg, "creds/identity-helper", "v1", IMAGE)
        assert reg.tags("creds/identity-helper")["tags"] == ["v1"]
    assert {t.grant for t in token.token_server.issued[start:]} == {"refresh_token"}


def test_refused_identity_token_is_a_clear_error(token, home):
    home.write(home.docker_config, {"auths": {token.host: {"identitytoken": "revoked-or-unknown-token"}}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="refused the identity token") as err:
        regframe.connect(token.url)
    message = str(err.value)
    assert "invalid_grant" in message and str(home.docker_config) in message
    assert "revoked-or-unknown-token" not in message


def test_identity_token_needs_a_token_server_with_oauth2(token, home, monkeypatch):
    monkeypatch.setattr(token.token_server, "oauth", False)
    refresh = token.token_server.refresh_token_for("alice")
    home.write(home.docker_config, {"auths": {token.host: {"identitytoken": refresh}}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="does not support the OAuth2 refresh-token grant"):
        regframe.connect(token.url)


# -- registry tokens ---------------------------------------------------------------------------------


def test_registry_token_is_the_bearer_token_itself(token, home):
    server = token.token_server
    bearer = server.make_token("carol", [Scope("repository", "shared/app", ("pull",))])
    home.write(home.runtime_auth, {"auths": {token.host: {"registrytoken": bearer}}})
    start = len(server.issued)
    with regframe.connect(token.url) as reg:
        assert reg.manifest("shared/app", "v1").digest
        with pytest.raises(regframe.RegistryAuthorizationError, match=r"registry token .* lacks the right"):
            reg.tags("shared/other")
    assert len(server.issued) == start, "nothing was asked of the token server"


def test_registry_token_the_registry_refuses(token, home):
    foreign = token.token_server.make_token("alice", [], service="another-registry")
    home.write(home.runtime_auth, {"auths": {token.host: {"registrytoken": foreign}}})
    with pytest.raises(regframe.RegistryAuthenticationError, match=r"the registry token .* refused") as err:
        regframe.connect(token.url)
    assert foreign not in str(err.value)


# -- a stored password the registry rejects ---------------------------------------------------------


STALE_PASSWORD = "stale-password-from-an-old-login"


def test_rejected_password_from_an_auth_file_names_the_file_and_entry(basic, home):
    """A stale ``podman login`` left in one of five places: the error says which file and entry, as it does
    for tokens, so the user knows what to fix; the password itself is never shown."""
    home.write(home.runtime_auth, {"auths": {basic.host: {"auth": b64("alice", STALE_PASSWORD)}}})
    with pytest.raises(regframe.RegistryAuthenticationError) as err:
        regframe.connect(basic.url)
    assert str(err.value) == (
        f"{basic.host} rejected the username/password for user 'alice' (from {home.runtime_auth} entry '{basic.host}')"
    )
    assert STALE_PASSWORD not in str(err.value)


@pytest.mark.parametrize("refuse_get", [None, 405], ids=["token-get", "password-grant"])
def test_password_from_a_helper_rejected_by_the_token_server_names_the_helper(token, home, monkeypatch, refuse_get):
    monkeypatch.setattr(token.token_server, "refuse_get", refuse_get)
    answer = json.dumps({"Username": "alice", "Secret": STALE_PASSWORD})
    home.helper("stale", f"echo '{answer}'\n")
    home.write(home.docker_config, {"credHelpers": {token.host: "stale"}})
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the credentials for user 'alice'") as err:
        regframe.connect(token.url)
    assert "for user 'alice' (from credential helper docker-credential-stale)" in str(err.value)
    assert STALE_PASSWORD not in str(err.value)


# -- the OAuth2 password grant when the realm refuses the basic GET ----------------------------------


@pytest.mark.parametrize("refusal", [404, 405])
def test_password_grant_when_the_realm_does_not_serve_get(token, monkeypatch, refusal):
    server = token.token_server
    monkeypatch.setattr(server, "refuse_get", refusal)
    start = len(server.issued)
    user, password = token.credentials("alice")
    with regframe.connect(token.url, user=user, password=password, docker_config=False) as reg:
        push_image(reg, f"creds/password-grant-{refusal}", "v1", IMAGE)
        assert reg.tags(f"creds/password-grant-{refusal}")["tags"] == ["v1"]
        issued = server.issued[start:]
        assert {t.grant for t in issued} == {"password"} and {t.client_id for t in issued} == {"regframe"}
        assert reg.stats["requests"]["token"] == len(issued) + 1, "one refused GET, then POSTs only"


def test_password_grant_with_a_wrong_password(token, monkeypatch):
    monkeypatch.setattr(token.token_server, "refuse_get", 405)
    rejected = token.token_server.rejected
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the credentials for user 'alice'") as err:
        regframe.connect(token.url, user="alice", password="wrong-password-x", docker_config=False)
    assert "password grant, HTTP 400: invalid_grant" in str(err.value)
    assert "wrong-password-x" not in str(err.value)
    assert token.token_server.rejected == rejected + 1


def test_get_refused_for_bad_credentials_is_not_retried_as_a_password_grant(token):
    """A 401 to the GET means the password is wrong; it is not sent again another way."""
    server = token.token_server
    start, rejected = len(server.issued), server.rejected
    with pytest.raises(regframe.RegistryAuthenticationError, match="rejected the credentials"):
        regframe.connect(token.url, user="alice", password="wrong", docker_config=False)
    assert server.rejected == rejected + 1 and len(server.issued) == start


def test_token_server_without_get_or_oauth(token, monkeypatch):
    monkeypatch.setattr(token.token_server, "refuse_get", 404)
    monkeypatch.setattr(token.token_server, "oauth", False)
    user, password = token.credentials("alice")
    with pytest.raises(regframe.RegistryAuthenticationError, match=r"neither a token by GET \(HTTP 404\)"):
        regframe.connect(token.url, user=user, password=password, docker_config=False)


# -- secrets stay secret -----------------------------------------------------------------------------


def test_tokens_and_passwords_never_in_reprs_logs_or_errors(token, home, caplog):
    caplog.set_level(logging.DEBUG)
    server = token.token_server
    refresh = server.refresh_token_for("alice")
    bearer = server.make_token("alice", [Scope("repository", "shared/app", ("pull",))])
    password = token.users["alice"]
    texts: list[str] = []
    home.write(home.docker_config, {"auths": {token.host: {"identitytoken": refresh, "auth": b64("alice", password)}}})
    found = load_credentials(token.host)
    texts += [repr(found), str(found)]
    with regframe.connect(token.url) as reg:
        reg.manifest("shared/app", "v1")
        texts += [repr(reg), repr(reg.auth), reg._repr_html_()]
        access = [t.value for t in reg.auth._tokens.values()]
    home.write(home.docker_config, {"auths": {token.host: {"registrytoken": bearer}}})
    with regframe.connect(token.url) as reg:
        reg.manifest("shared/app", "v1")
        texts += [repr(reg), repr(reg.auth), repr(load_credentials(token.host))]
        with pytest.raises(regframe.RegistryAuthorizationError) as denied:
            reg.tags("shared/other")
        texts += [str(denied.value), repr(denied.value)]
    texts.append(caplog.text)
    assert access
    for text in texts:
        for secret in (refresh, bearer, password, *access):
            assert secret not in text


# -- the token server's OAuth2 endpoint, by hand -----------------------------------------------------


def test_token_server_oauth2_endpoint_as_the_spec_describes(token):
    """distribution's docs/spec/auth/oauth.md: form POST, client_id required, access_type=offline gives a
    refresh token, the refresh-token grant answers access_token, scope, expires_in and the refresh token."""
    server = token.token_server
    user, password = token.credentials("bob")
    form = {"grant_type": "password", "username": user, "password": password, "service": server.service}
    post = lambda data: requests.post(server.realm, data=data, timeout=10)  # noqa: E731
    assert post(form).json()["error"] == "invalid_request", "client_id is required"
    form["client_id"] = "test"
    online = post({**form, "scope": "repository:shared/app:pull"}).json()
    assert online["scope"] == "repository:shared/app:pull" and online["expires_in"] == server.expires_in
    assert "refresh_token" not in online
    offline = post({**form, "access_type": "offline"}).json()
    refresh = offline["refresh_token"]
    answer = post(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh,
            "client_id": "test",
            "service": server.service,
            "scope": "repository:shared/app:pull repository:shared/app:push",
        }
    )
    body = answer.json()
    assert answer.status_code == 200 and body["refresh_token"] == refresh
    assert body["scope"] == "repository:shared/app:pull", "bob may pull only"
    manifest = requests.get(
        f"{token.url}/v2/shared/app/manifests/v1",
        headers={"Authorization": f"Bearer {body['access_token']}", "Accept": IMAGE.media_type},
        timeout=10,
    )
    assert manifest.status_code == 200
    for bad in (
        {**form, "password": "wrong"},
        {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": "t", "service": "elsewhere"},
        {"grant_type": "refresh_token", "refresh_token": "unknown", "client_id": "t", "service": server.service},
    ):
        refused = post(bad)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert post({**form, "grant_type": "client_credentials"}).json()["error"] == "unsupported_grant_type"


def test_token_server_refusals_are_configurable(token, monkeypatch):
    server = token.token_server
    monkeypatch.setattr(server, "refuse_get", 405)
    assert requests.get(server.realm, timeout=10).status_code == 405
    monkeypatch.setattr(server, "oauth", False)
    assert requests.post(server.realm, data={"grant_type": "password"}, timeout=10).status_code == 404
