"""Credentials stay with their origin and never travel in clear text unless allowed; TLS failures say
what is wrong and which CA certificates were used.

Real htpasswd, token and TLS registries throughout. The fault proxy moves upload ``Location`` headers
to another origin (what a registry behind a misconfigured TLS-terminating proxy, or a hostile one,
sends), and a recording server on that origin shows what reached it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import ClassVar
from urllib.parse import urlsplit

import pytest

import regframe
from regframe.cli import main
from regframe.client.auth import RegistryAuth, cleartext_refusal, is_loopback
from regframe.client.transport import Request
from regframe.testing import build_image, layer, local_registry, push_image
from regframe.testing.faultproxy import Action, FaultProxy, RecordingServer, RedirectTo, Rule, SetHeader
from regframe.testing.tls import certificate_pem, make_ca
from regframe.testing.tokenserver import TokenServer

IMAGE = build_image([layer("security-auth", 1500)])
BLOB = b"credentials stay at home" * 40
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
UPLOADS = r"/blobs/uploads/$"


def connect(url: str, **options) -> regframe.Registry:
    options.setdefault("docker_config", False)
    return regframe.connect(url, **options)


class MoveLocation(Action):
    """Answer the upload POST as the registry did, with its ``Location`` moved to ``origin``."""

    def __init__(self, origin: str):
        self.origin = origin

    def apply(self, ex) -> None:
        response = ex.forward()
        location = urlsplit(response.get("Location"))
        response.set("Location", f"{self.origin}{location.path}?{location.query}")
        ex.respond(response)


@pytest.fixture(scope="module")
def token():
    with local_registry(auth="token") as reg:
        yield reg


@pytest.fixture
def no_proxy_env(monkeypatch):
    for name in (
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- credentials stay with their origin --------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1 << 20, 256], ids=["monolithic-put", "chunked-patch"])
@pytest.mark.parametrize("variant", ["basic", "token"])
def test_upload_location_on_another_host_gets_no_credentials(variant, chunk_size, request):
    reg = request.getfixturevalue(variant)
    user, password = reg.credentials("alice")
    with RecordingServer(reg.url) as foreign, FaultProxy(reg.url) as proxy:
        # "localhost" and "127.0.0.1" are different hosts to a client, whatever they resolve to.
        proxy.add_rule(Rule(path=UPLOADS, method="POST", action=MoveLocation(f"http://localhost:{foreign.port}")))
        with connect(proxy.url, user=user, password=password) as client:
            issued = reg.token_server.issued_count() if reg.token_server else 0
            with pytest.raises(regframe.RegistryAuthenticationError, match="never sent to another origin"):
                client.upload_blob(f"{variant}/moved", BLOB, chunk_size=chunk_size)
            if reg.token_server:
                # One token for the POST's push scope; none was fetched for the other host's challenge.
                assert reg.token_server.issued_count() == issued + 1
        sent = foreign.requests
    assert sent, "the upload went to the other host (bare), so there was something to leak"
    assert {r.method for r in sent} >= {"PATCH" if chunk_size == 256 else "PUT"}
    assert all("authorization" not in r.headers for r in sent), [r.headers.get("authorization") for r in sent]


@pytest.mark.parametrize("vector", ["redirect", "link", "upload"])
def test_a_url_that_parsers_read_differently_gets_no_credentials_and_is_not_sent(basic, vector):
    """``http://localhost:P\\@127.0.0.1:Q/...``: urllib reads host 127.0.0.1:Q (the registry), urllib3
    connects to localhost:P. The proxy hands it out as a redirect, a next-page link or an upload location,
    since no registry can be made to; it must be refused, and reach nothing."""
    user, password = basic.credentials("alice")
    repository = "alice/parsers"
    with connect(basic.url, user=user, password=password) as direct:
        push_image(direct, repository, "a", IMAGE)
    with RecordingServer(body=b"") as foreign, FaultProxy(basic.url) as proxy:
        sneaky = f"http://localhost:{foreign.port}\\@{urlsplit(proxy.url).netloc}"
        rule = {
            "redirect": Rule(path=r"/tags/list$", method="GET", action=RedirectTo(sneaky)),
            "link": Rule(
                path=r"/tags/list$",
                method="GET",
                action=SetHeader("Link", f'<{sneaky}/v2/{repository}/tags/list?last=a>; rel="next"'),
            ),
            "upload": Rule(path=UPLOADS, method="POST", action=MoveLocation(sneaky)),
        }[vector]
        proxy.add_rule(rule)
        with connect(proxy.url, user=user, password=password) as client, pytest.raises(regframe.RegistryError):
            if vector == "upload":
                client.upload_blob(repository, BLOB)
            else:
                client.tags(repository, auto_paginate=True)
        sent = foreign.requests
    assert sent == []


class _Challenge:
    """A 401 as the flow sees it; the real-registry tests above cover what a registry sends."""

    status_code = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Basic realm="registry"'}

    def close(self) -> None:
        pass


def test_flow_keeps_credentials_to_their_origin_for_every_request():
    """Unit test of the flow itself, for origins no local server can take (another https host, port or
    scheme): once the registry has asked for the password, only its own origin gets it."""
    auth = RegistryAuth("alice", "s3cret", origin="https://registry.example")
    flow = auth.auth_flow(Request("GET", "https://registry.example/v2/"))
    assert "Authorization" not in next(flow).headers
    retried = flow.send(_Challenge())
    assert retried.headers["Authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    at_home = next(auth.auth_flow(Request("PUT", "https://REGISTRY.example:443/v2/x")))
    assert at_home.headers["Authorization"] == retried.headers["Authorization"]
    for url in (
        "https://storage.example/v2/x",
        "https://registry.example:8443/v2/x",
        "http://registry.example.evil/v2/x",
        "https://registry.example.evil/v2/x",
    ):
        sent = next(auth.auth_flow(Request("PUT", url, {"authorization": retried.headers["Authorization"]})))
        assert not any(k.lower() == "authorization" for k in sent.headers), url
    with pytest.raises(regframe.InsecureTransportError, match="downgrade"):
        next(auth.auth_flow(Request("PUT", "http://registry.example/v2/x")))


def test_https_upload_location_downgraded_to_http_is_refused_before_sending():
    """Distribution builds Location from ``http.host`` (or Host and X-Forwarded-Proto): here it names
    plain http on the registry's own host, as behind a TLS-terminating proxy that drops the header."""
    with (
        RecordingServer(body=b"") as plain,
        local_registry(auth="basic", tls=True, http={"host": f"http://127.0.0.1:{plain.port}"}) as reg,
    ):
        user, password = reg.credentials("alice")
        with (
            connect(reg.url, user=user, password=password, ca_bundle=reg.ca_path) as client,
            pytest.raises(regframe.InsecureTransportError, match="refusing to downgrade from https") as err,
        ):
            client.upload_blob("tls/downgrade", BLOB)
        assert plain.requests == []
    assert f"http://127.0.0.1:{plain.port}/v2/tls/downgrade/blobs/uploads/" in str(err.value)
    assert "_state" not in str(err.value)


# -- no password in clear text ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000",
        "http://127.42.0.9",
        "http://[::1]:5000",
        "http://localhost:5000",
        "http://LOCALHOST.",
        "https://registry.example",
        "https://10.0.0.7:5000",
    ],
)
def test_cleartext_allowed_over_https_and_to_loopback(url):
    assert cleartext_refusal(url) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://registry.example:5000",
        "http://10.0.0.7:5000",
        "http://[fe80::1]",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://128.0.0.1",
        # urllib reads the host as 127.0.0.1, urllib3 connects to 10.1.2.3.
        "http://10.1.2.3:80\\@127.0.0.1/token",
    ],
)
def test_cleartext_refused_beyond_loopback(url):
    assert cleartext_refusal(url) is not None


def test_plain_http_endpoint_of_an_https_registry_is_refused_even_on_loopback():
    assert cleartext_refusal("http://127.0.0.1:4000/token", registry_https=True) is not None
    assert cleartext_refusal("https://auth.example/token", registry_https=True) is None
    assert is_loopback("::1") and is_loopback("127.255.255.254") and not is_loopback("registry.example")


def test_password_for_plain_http_beyond_loopback_is_refused_before_connecting():
    with pytest.raises(regframe.InsecureTransportError) as err:
        connect("http://registry.invalid.example:5000", user="alice", password="s3cret")
    message = str(err.value)
    assert "registry.invalid.example:5000" in message and "allow_insecure_auth" in message
    assert "s3cret" not in message
    with pytest.raises(regframe.RegistryUnknownError):  # allowed: now it really tries, and finds nothing
        connect("http://registry.invalid.example:5000", user="alice", password="s3cret", allow_insecure_auth=True)
    with pytest.raises(ValueError, match="allow_insecure_auth"):
        connect("http://127.0.0.1:9", allow_insecure_auth="yes")


def test_password_from_docker_config_is_refused_for_plain_http_beyond_loopback(basic, tmp_path, no_proxy_env):
    """A non-loopback name reaches the real registry through an HTTP proxy (the recording server), as a
    remote registry would; the registry asks for the password, and it is not sent."""
    remote = "registry.invalid.example:5000"
    user, password = basic.credentials("alice")
    secret = base64.b64encode(f"{user}:{password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {remote: {"auth": secret}}}))
    no_proxy_env.setenv("DOCKER_CONFIG", str(tmp_path))
    with RecordingServer(basic.url) as forward_proxy:
        no_proxy_env.setenv("http_proxy", forward_proxy.url)
        with pytest.raises(regframe.InsecureTransportError, match="allow_insecure_auth"):
            regframe.connect(f"http://{remote}")
        refused = forward_proxy.requests
        with regframe.connect(f"http://{remote}", allow_insecure_auth=True) as client:
            push_image(client, "insecure/allowed", "v1", IMAGE)
            assert client.tags("insecure/allowed")["tags"] == ["v1"]
    assert [r.path for r in refused] == [f"http://{remote}/v2/"], "only the anonymous ping went out"
    assert "authorization" not in refused[0].headers


def test_cli_refuses_plain_http_password_unless_insecure_auth(basic, no_proxy_env, monkeypatch, capsys):
    remote = "http://registry.invalid.example:5000"
    user, password = basic.credentials("alice")
    with connect(basic.url, user=user, password=password) as client:
        push_image(client, "cli/insecure", "v1", IMAGE)
    with RecordingServer(basic.url) as forward_proxy:
        no_proxy_env.setenv("http_proxy", forward_proxy.url)
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        assert main(["tags", remote, "cli/insecure", "--user", user, "--password-stdin"]) == 2
        assert "--insecure-auth" in capsys.readouterr().err
        assert forward_proxy.requests == []
        monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
        assert main(["tags", remote, "cli/insecure", "--user", user, "--password-stdin", "--insecure-auth"]) == 0
    assert "v1" in capsys.readouterr().out


@pytest.fixture(scope="module")
def https_registry_with_http_realm(tmp_path_factory):
    """A TLS registry whose token endpoint is a real token server on plain http."""
    users = {"alice": "alice-password-1"}
    with TokenServer(users, service="sec-registry", issuer="sec-issuer") as tokens:
        bundle = tmp_path_factory.mktemp("realm") / "signing.pem"
        bundle.write_bytes(tokens.certificate_pem)
        with local_registry(
            tls=True,
            auth__token={
                "realm": tokens.realm,
                "service": "sec-registry",
                "issuer": "sec-issuer",
                "rootcertbundle": str(bundle),
            },
        ) as reg:
            yield reg, tokens, users


def test_plain_http_token_realm_of_an_https_registry_is_refused_unless_allowed(https_registry_with_http_realm):
    reg, tokens, users = https_registry_with_http_realm
    assert tokens.realm.startswith("http://")
    with pytest.raises(regframe.InsecureTransportError) as err:
        connect(reg.url, user="alice", password=users["alice"], ca_bundle=reg.ca_path)
    assert f"token endpoint {urlsplit(tokens.realm).netloc}" in str(err.value)
    assert "allow_insecure_auth" in str(err.value)
    assert tokens.issued_count() == 0 and tokens.rejected == 0, "the token server never heard of it"
    with connect(
        reg.url, user="alice", password=users["alice"], ca_bundle=reg.ca_path, allow_insecure_auth=True
    ) as client:
        push_image(client, "realm/allowed", "v1", IMAGE)
        assert client.tags("realm/allowed")["tags"] == ["v1"]
    assert tokens.issued_count() > 0


# -- TLS: say what is wrong, honour the CA environment ----------------------------------------------


def test_plain_http_to_a_tls_registry_says_to_use_https(tls):
    with pytest.raises(
        regframe.RegistryUnknownError, match=f"speaks HTTPS here; connect to https://127.0.0.1:{tls.port}"
    ):
        connect(f"http://127.0.0.1:{tls.port}")


def test_hostname_mismatch_is_named(tls):
    # 127.1 is 127.0.0.1 to the resolver, but not a name in the certificate (localhost, 127.0.0.1).
    with pytest.raises(regframe.RegistrySSLError) as err:
        connect(f"https://127.1:{tls.port}", ca_bundle=tls.ca_path)
    message = str(err.value)
    assert "hostname mismatch" in message
    assert "not 127.1" in message and "localhost" in message and "127.0.0.1" in message
    assert "verify=False" not in message


def test_unknown_ca_suggests_ca_bundle_before_turning_checks_off(tls, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(regframe.RegistrySSLError) as err:
        connect(tls.url)
    message = str(err.value)
    assert "the system store" in message
    assert message.index("ca_bundle=") < message.index("verify=False")


@pytest.fixture
def foreign_ca(tmp_path):
    path = tmp_path / "other-ca.pem"
    path.write_bytes(certificate_pem(make_ca("not the registry's CA").certificate))
    return path


def test_requests_ca_bundle_is_honoured_and_an_explicit_ca_wins(tls, foreign_ca, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    with connect(tls.url) as client:
        client.ping()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign_ca))
    with pytest.raises(regframe.RegistrySSLError, match=r"\$REQUESTS_CA_BUNDLE"):
        connect(tls.url)
    with connect(tls.url, ca_bundle=tls.ca_path) as client:
        client.ping()
    with pytest.warns(Warning), connect(tls.url, verify=False) as client:
        client.ping()


def test_requests_ca_bundle_comes_before_ssl_cert_file(tls, foreign_ca, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_path))
    with connect(tls.url) as client:
        client.ping()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(foreign_ca))
    with pytest.raises(regframe.RegistrySSLError, match=r"\$REQUESTS_CA_BUNDLE"):
        connect(tls.url)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.ca_path))
    monkeypatch.setenv("SSL_CERT_FILE", str(foreign_ca))
    with connect(tls.url) as client:
        client.ping()


def test_missing_ca_bundle_from_the_environment_is_a_clear_error(tls, tmp_path, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "gone.pem"))
    with pytest.raises(ValueError, match="REQUESTS_CA_BUNDLE"):
        connect(tls.url)
