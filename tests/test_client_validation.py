"""Every public client method checks its arguments before any request.

The client points at a port where nothing listens: a request would fail with a connection error, so an
``InvalidReferenceError``/``ValueError`` and a request count of zero show nothing was sent."""

from __future__ import annotations

import re

import pytest

from regframe import InvalidReferenceError
from regframe.client import RegistryClient

DIGEST = "sha256:" + "a" * 64
BAD_REPO = "Bad Name"

CALLS = {
    "tags": lambda c: c.tags(BAD_REPO),
    "manifest": lambda c: c.manifest(BAD_REPO, "latest"),
    "manifest bad reference": lambda c: c.manifest("ok/repo", "bad tag!"),
    "manifest_exists": lambda c: c.manifest_exists(BAD_REPO, "latest"),
    "digest": lambda c: c.digest(BAD_REPO, "latest"),
    "digest bad platform": lambda c: c.digest("ok/repo", "latest", platform="not a platform"),
    "blob_size": lambda c: c.blob_size(BAD_REPO, DIGEST),
    "blob_exists": lambda c: c.blob_exists(BAD_REPO, DIGEST),
    "blob_exists bad digest": lambda c: c.blob_exists("ok/repo", "sha256:short"),
    "blob": lambda c: c.blob(BAD_REPO, DIGEST),
    "open_blob": lambda c: c.open_blob(BAD_REPO, DIGEST),
    "open_blob bad digest": lambda c: c.open_blob("ok/repo", "md5:abc"),
    "upload_blob": lambda c: c.upload_blob(BAD_REPO, b"x"),
    "upload_blob not bytes": lambda c: c.upload_blob("ok/repo", "text"),
    "put_stream": lambda c: c.put_stream(BAD_REPO, DIGEST, [b"x"], 1),
    "put_stream bad digest": lambda c: c.put_stream("ok/repo", "nope", [b"x"], 1),
    "put_stream bad size": lambda c: c.put_stream("ok/repo", DIGEST, [b"x"], -1),
    "put_stream bad mount": lambda c: c.put_stream("ok/repo", DIGEST, [b"x"], 1, mount_from=BAD_REPO),
    "put_manifest": lambda c: c.put_manifest(BAD_REPO, "latest", b"{}", "application/json"),
    "put_manifest not bytes": lambda c: c.put_manifest("ok/repo", "latest", {}, "application/json"),
    "delete_manifest": lambda c: c.delete_manifest(BAD_REPO, DIGEST),
    "rmtag": lambda c: c.rmtag(BAD_REPO, "latest"),
    "rmtag bad expected digest": lambda c: c.rmtag("ok/repo", "latest", expected_digest="x"),
    "rmrepo": lambda c: c.rmrepo(BAD_REPO),
    "pull": lambda c: c.pull(BAD_REPO, "latest", "/nonexistent-dir"),
    "tag": lambda c: c.tag(BAD_REPO, "latest", "ok/repo", "new"),
    "tag bad new tag": lambda c: c.tag("ok/repo", "latest", "ok/repo", "bad tag!"),
    "copy": lambda c: c.copy(BAD_REPO, "latest", c, "ok/repo", "new"),
    "search": lambda c: c.search(3),
}


@pytest.fixture
def offline():
    with RegistryClient("http://127.0.0.1:1", docker_config=False) as client:
        yield client


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_bad_arguments_are_refused_before_any_request(offline, call):
    with pytest.raises((InvalidReferenceError, ValueError)):
        call(offline)
    assert offline.stats["total_requests"] == 0


# Plain arguments (flags, counts, seconds) read the same wherever they are checked.
PLAIN = {
    "tags count 0": (lambda c: c.tags("ok/repo", count=0), "count must be a positive integer or None, not 0"),
    "tags max_pages True": (lambda c: c.tags("ok/repo", max_pages=True), "max_pages must be a positive integer"),
    "catalog max_pages 0": (lambda c: list(c.catalog(max_pages=0)), "max_pages must be a positive integer, not 0"),
    "blob max_size -1": (
        lambda c: c.blob("ok/repo", DIGEST, max_size=-1),
        "max_size must be a non-negative integer or None, not -1",
    ),
    "open_blob size '1'": (
        lambda c: c.open_blob("ok/repo", DIGEST, size="1"),
        "size must be a non-negative integer or None, not '1'",
    ),
    "put_stream chunk_size 0": (
        lambda c: c.put_stream("ok/repo", DIGEST, [b"x"], 1, chunk_size=0),
        "chunk_size must be a positive integer, not 0",
    ),
    "put_stream size 1.0": (
        lambda c: c.put_stream("ok/repo", DIGEST, [b"x"], 1.0),
        "size must be a non-negative integer, not 1.0",
    ),
    "tag referrers 'yes'": (
        lambda c: c.tag("ok/repo", "1", "other/repo", "1", referrers="yes"),
        "referrers must be True or False, not 'yes'",
    ),
    "copy referrers 1": (
        lambda c: c.copy("ok/repo", "1", c, "other/repo", "1", referrers=1),
        "referrers must be True or False, not 1",
    ),
    "tags with_hashes 'false'": (
        lambda c: c.tags("ok/repo", with_hashes="false"),
        "with_hashes must be True or False, not 'false'",
    ),
    "tags auto_paginate 'no'": (
        lambda c: c.tags("ok/repo", auto_paginate="no"),
        "auto_paginate must be True or False, not 'no'",
    ),
    "catalog -1": (lambda c: list(c.catalog(-1)), "page_size must be a positive integer or None, not -1"),
    "catalog '5'": (lambda c: list(c.catalog("5")), "page_size must be a positive integer or None, not '5'"),
    "push mount_from None": (
        lambda c: c.push(None, "/nonexistent-dir", "ok/repo", "1", mount_from=None),
        "mount_from must be a repository name or a list of them (() for none), not None",
    ),
    "pull progress True": (
        lambda c: c.pull("ok/repo", "1", "/nonexistent-dir", progress=True),
        "progress must be None or a callable (bytes_done, bytes_total), not True; only inventory() takes True "
        "or False, for its progress bar",
    ),
    "blob progress False": (
        lambda c: c.blob("ok/repo", DIGEST, progress=False),
        "progress must be None or a callable (bytes_done, bytes_total), not False; only inventory()",
    ),
    "copy progress True": (
        lambda c: c.copy("ok/repo", "1", c, "other/repo", "1", progress=True),
        "progress must be None or a callable (bytes_done, bytes_total), not True",
    ),
    "push progress 'bar'": (
        lambda c: c.push(None, "/nonexistent-dir", "ok/repo", "1", progress="bar"),
        "progress must be None or a callable (bytes_done, bytes_total), not 'bar'",
    ),
}


@pytest.mark.parametrize(("call", "message"), PLAIN.values(), ids=PLAIN.keys())
def test_plain_arguments_name_the_problem_before_any_request(offline, call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call(offline)
    assert offline.stats["total_requests"] == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"open_timeout": 0}, "open_timeout must be a positive number of seconds, not 0"),
        ({"read_timeout": float("inf")}, "read_timeout must be a positive number of seconds, not inf"),
        ({"read_timeout": True}, "read_timeout must be a positive number of seconds, not True"),
        ({"allow_insecure_auth": "no"}, "allow_insecure_auth must be True or False, not 'no'"),
        ({"retries": "3"}, "retries must be a non-negative integer, not '3'"),
        ({"retries": -1}, "retries must be a non-negative integer, not -1"),
        ({"retries": True}, "retries must be a non-negative integer, not True"),
        ({"pool_size": 0}, "pool_size must be a positive integer, not 0"),
        ({"pool_size": -3}, "pool_size must be a positive integer, not -3"),
        ({"pool_size": 4.0}, "pool_size must be a positive integer, not 4.0"),
        ({"pool_size": False}, "pool_size must be a positive integer, not False"),
        ({"user": 5, "password": "pw"}, "user must be a str, not int"),
        ({"user": "u", "password": b"pw"}, "password must be a str, not bytes"),
        ({"user": "u:x", "password": "pw"}, "user must not contain ':'"),
        ({"user": "u"}, "give both user= and password=, or neither"),
    ],
)
def test_connection_options_name_the_problem(options, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        RegistryClient("http://127.0.0.1:1", **{"docker_config": False, **options})


def test_retries_zero_and_empty_credentials_are_still_accepted():
    """0 retries means one attempt; RFC 7617 allows an empty user name and password."""
    with RegistryClient("http://127.0.0.1:1", docker_config=False, retries=0, pool_size=1) as client:
        assert client.transport.retries == 0
    with RegistryClient("http://127.0.0.1:1", user="", password="") as client:
        assert client.user == ""


@pytest.mark.parametrize("docker_config", ["no", 0, None, "/home/me/.docker/config.json"])
def test_docker_config_is_a_flag(docker_config):
    """A truthy "no" used to read the auth files; the README documents only True and False."""
    with pytest.raises(ValueError, match=re.escape(f"docker_config must be True or False, not {docker_config!r}")):
        RegistryClient("http://127.0.0.1:1", docker_config=docker_config)


@pytest.mark.parametrize(
    "credentials", [{"user": "u", "password": b"hunter2"}, {"user": "me:hunter2", "password": "hunter2"}]
)
def test_a_refused_credential_is_never_echoed(credentials):
    with pytest.raises(ValueError) as refused:
        RegistryClient("http://127.0.0.1:1", **credentials)
    assert "hunter2" not in str(refused.value)


def test_credentials_in_the_url_are_refused_without_repeating_them():
    with pytest.raises(InvalidReferenceError) as refused:
        RegistryClient("http://me:hunter2@127.0.0.1:1", docker_config=False)
    assert "pass user= and password= instead" in str(refused.value)
    assert "hunter2" not in str(refused.value)
