"""Bad input across the public API: refused with InvalidReferenceError or ValueError carrying a message,
never another exception, and never a request to the (running) registry.

Whether an input is valid is decided here, from the grammar of the OCI distribution spec, not by
asking the code under test.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import regframe
from regframe.analysis import parse_duration, stale_tags
from regframe.client.reference import (
    parse_platform,
    validate_digest,
    validate_reference,
    validate_repository,
    validate_tag,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# The OCI distribution spec's grammar (names at most 255 characters, as distribution enforces);
# regframe supports the sha256 and sha512 digests of the image spec.
COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
SPEC_NAME = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*")
SPEC_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
SPEC_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
PLATFORM = re.compile(r"[a-z0-9_.-]+/[a-z0-9_.-]+(?:/[a-z0-9_.-]+)?")


def spec_name(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 255 and SPEC_NAME.fullmatch(value) is not None


def spec_tag(value: object) -> bool:
    return isinstance(value, str) and SPEC_TAG.fullmatch(value) is not None


def spec_digest(value: object) -> bool:
    return isinstance(value, str) and SPEC_DIGEST.fullmatch(value) is not None


def spec_reference(value: object) -> bool:
    """A manifest reference: a digest if it has a ':', else a tag."""
    return spec_digest(value) if isinstance(value, str) and ":" in value else spec_tag(value)


HEX = "0123456789abcdef"
digests = st.one_of(
    st.builds(lambda h: f"sha256:{h}", st.text(HEX, min_size=64, max_size=64)),
    st.builds(lambda h: f"sha512:{h}", st.text(HEX, min_size=128, max_size=128)),
    st.builds(
        lambda a, h: f"{a}:{h}",
        st.sampled_from(["sha256", "sha512", "md5", "SHA256", "sha384", ""]),
        st.text(HEX + "ABCDEFxyz=_-", max_size=130),
    ),
)
names = st.one_of(
    st.from_regex(SPEC_NAME, fullmatch=True),
    st.text(alphabet="abcXYZ019._-/:@ \n\t\u00e9", max_size=40),
    st.sampled_from(
        [
            "",
            "/",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            ".a",
            "a.",
            "a__b",
            "a___b",
            "a--b",
            "library/ubuntu",
            "Upper/case",
            "a" * 256,
            "a/" * 127 + "a",
            "a\nb",
            "a b",
            "ü/x",
        ]
    ),
    st.text(max_size=30),
)
tags = st.one_of(
    st.from_regex(SPEC_TAG, fullmatch=True),
    st.text(alphabet="aZ09._-:@/ \n", max_size=20),
    st.sampled_from(["", ".x", "-x", "x" * 128, "x" * 129, "latest", "v1.0", "a\n", "ü"]),
    st.text(max_size=20),
)
references = st.one_of(tags, digests)
not_strings = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=10),
    st.booleans(),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
)


def refused(call) -> BaseException | None:
    """Run ``call``; a refusal must be InvalidReferenceError or ValueError with a message."""
    try:
        call()
    except (regframe.InvalidReferenceError, ValueError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        return exc
    return None


# -- the reference grammar ----------------------------------------------------------------------


@FUZZ
@given(
    st.one_of(
        st.builds(
            lambda n, t, d: n + (f":{t}" if t is not None else "") + (f"@{d}" if d is not None else ""),
            names,
            st.none() | tags,
            st.none() | digests,
        ),
        st.text(max_size=60),
        not_strings,
    )
)
@example("localhost:5000/app:v1")
@example("app@sha256:" + "a" * 64)
@example("app:v1@sha256:" + "A" * 64)
def test_parse_reference(text):
    match = (
        re.fullmatch(r"(?P<name>[^:@]*)(?::(?P<tag>[^@]*))?(?:@(?P<digest>.*))?", text, re.S)
        if isinstance(text, str)
        else None
    )
    valid = (
        match is not None
        and spec_name(match["name"])
        and (match["tag"] is None or spec_tag(match["tag"]))
        and (match["digest"] is None or spec_digest(match["digest"]))
    )
    try:
        ref = regframe.parse_reference(text)
    except regframe.InvalidReferenceError as exc:
        assert str(exc).strip()
        assert not valid, f"{text!r} follows the grammar but was refused: {exc}"
        return
    assert valid, f"{text!r} was accepted"
    assert (ref.repository, ref.tag, ref.digest) == (match["name"], match["tag"], match["digest"])
    assert str(ref) == text


@FUZZ
@given(st.one_of(names, tags, digests, not_strings))
def test_validators_accept_exactly_the_grammar(value):
    for validate, valid in (
        (validate_repository, spec_name),
        (validate_tag, spec_tag),
        (validate_digest, spec_digest),
        (validate_reference, spec_reference),
    ):
        exc = refused(functools.partial(validate, value))
        assert (exc is None) == valid(value), (validate.__name__, value, exc)
        if exc is not None:
            assert isinstance(exc, regframe.InvalidReferenceError)


@FUZZ
@given(
    st.one_of(
        st.from_regex(PLATFORM, fullmatch=True),
        st.text(alphabet="linux/amd64vARM8 ", max_size=25),
        st.text(max_size=20),
        not_strings,
    )
)
def test_parse_platform(value):
    exc = refused(lambda: parse_platform(value))
    valid = isinstance(value, str) and PLATFORM.fullmatch(value) is not None
    assert (exc is None) == valid, (value, exc)
    if valid:
        assert str(parse_platform(value)) == value


# -- client calls: bad arguments never reach the network ----------------------------------------------


def check_call(reg, call, valid: bool) -> None:
    before = reg.stats["total_requests"]
    try:
        call()
    except (regframe.InvalidReferenceError, ValueError) as exc:
        assert str(exc).strip()
        assert not valid, f"valid arguments refused: {exc}"
        assert reg.stats["total_requests"] == before, "a refused call made a request"
        return
    except regframe.RegistryError as exc:  # the registry's answer to a well-formed request
        assert valid, f"invalid arguments reached the registry: {exc!r}"
        assert exc.status is not None
    assert valid, "invalid arguments were accepted"
    assert reg.stats["total_requests"] > before


counts = st.one_of(
    st.none(), st.integers(-3, 5), st.integers(10**3, 10**20), st.booleans(), st.floats(), st.text(max_size=3)
)


@FUZZ
@given(repository=names, count=counts, last=st.one_of(tags, st.none(), st.integers(-1, 1)))
def test_tags_arguments(anon, repository, count, last):
    valid = (
        spec_name(repository)
        and (count is None or (isinstance(count, int) and not isinstance(count, bool) and count >= 1))
        and (not last or spec_tag(last))
    )
    check_call(anon, lambda: anon.tags(repository, count=count, last=last), valid)


@FUZZ
@given(repository=st.one_of(names, not_strings), reference=st.one_of(references, not_strings))
def test_manifest_arguments(anon, repository, reference):
    valid = spec_name(repository) and spec_reference(reference)
    check_call(anon, lambda: anon.manifest(repository, reference), valid)


@FUZZ
@given(
    repository=names,
    digest=st.one_of(digests, tags, not_strings),
    max_size=st.one_of(st.none(), st.integers(-2, 10), st.floats(), st.booleans()),
)
def test_blob_arguments(anon, repository, digest, max_size):
    valid = (
        spec_name(repository)
        and spec_digest(digest)
        and (max_size is None or (isinstance(max_size, int) and not isinstance(max_size, bool) and max_size >= 0))
    )
    check_call(anon, lambda: anon.blob(repository, digest, max_size=max_size), valid)


@FUZZ
@given(
    repository=names,
    reference=references,
    platform=st.one_of(st.none(), st.from_regex(PLATFORM, fullmatch=True), st.text(max_size=12), not_strings),
)
def test_digest_arguments(anon, repository, reference, platform):
    valid = (
        spec_name(repository)
        and spec_reference(reference)
        and (platform is None or (isinstance(platform, str) and PLATFORM.fullmatch(platform) is not None))
    )
    check_call(anon, lambda: anon.digest(repository, reference, platform=platform), valid)


@FUZZ
@given(
    url=st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "",
                " ",
                "ftp://x",
                "http://",
                "http://[::1",
                "http://host:99999",
                "http://u:p@host",
                "https://host/v2/",
                "localhost:5000",
                "http://127.0.0.1:1/",
                "file:///etc/passwd",
                "http://\n",
            ]
        ),
    )
    | not_strings,
    timeout=st.one_of(st.just(2), st.integers(-2, 0), st.floats(), st.text(max_size=3), st.none()),
)
def test_client_construction_never_touches_the_network(url, timeout):
    try:
        client = regframe.Registry(url, open_timeout=timeout, docker_config=False)
    except (regframe.InvalidReferenceError, ValueError) as exc:
        assert str(exc).strip()
        return
    try:
        assert isinstance(timeout, (int, float)) and timeout > 0
        assert client.stats["total_requests"] == 0
        assert client.url.startswith(("http://", "https://"))
    finally:
        client.close()


# -- analysis arguments ---------------------------------------------------------------------------------


UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


@FUZZ
@given(
    st.one_of(
        st.text(max_size=15),
        st.text(alphabet="0123456789.smhdwy -+eE", max_size=15),
        st.integers(),
        st.floats(allow_nan=True),
        st.booleans(),
        st.none(),
        st.timedeltas(),
        st.builds(pd.Timedelta, st.integers(-(10**18), 10**18)),
        st.binary(max_size=5),
        st.lists(st.integers(), max_size=2),
    )
)
@example("1e400d")
@example("99999999999999999999y")
@example("٣d")  # a non-ASCII digit
def test_parse_duration_refuses_cleanly(value):
    exc = refused(lambda: parse_duration(value))
    if exc is None:
        result = parse_duration(value)
        assert isinstance(result, pd.Timedelta) and result >= pd.Timedelta(0)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**5), st.sampled_from(sorted(UNITS))), min_size=1, max_size=3))
def test_parse_duration_values(parts):
    text = "".join(f"{n}{unit}" for n, unit in parts)
    seconds = sum(n * UNITS[unit] for n, unit in parts)
    if seconds * 10**9 > pd.Timedelta.max.value:
        with pytest.raises(ValueError, match="longer than pandas can represent"):
            parse_duration(text)
    else:
        assert parse_duration(text) == pd.Timedelta(seconds=seconds)


# pandas holds nanoseconds: about 292 years either way.
IN_RANGE = st.timedeltas(min_value=dt.timedelta(days=-106751), max_value=dt.timedelta(days=106751))
NOW = pd.Timestamp("2026-01-01", tz="UTC")
MANIFESTS = pd.DataFrame(
    {
        "repository": ["app", "app", "web"],
        "tag": ["latest", "1.0", "v2"],
        "digest": ["d1", "d1", "d2"],
        "manifest_digest": ["d1", "d1", "d2"],
        "created": pd.to_datetime([NOW - pd.Timedelta(days=400), NOW - pd.Timedelta(days=400), None], utc=True),
        "size": pd.array([10, 10, 20], dtype="Int64"),
    }
)
patterns = st.one_of(
    st.none(),
    st.text(alphabet="^$()[]{}*+?.|\\ab0-", max_size=8),
    st.text(max_size=5),
    st.integers(),
    st.binary(max_size=3),
    st.sampled_from(["(", "[", "a{99999999999}", "(?P<"]),
)


@FUZZ
@given(
    older_than=st.one_of(st.text(max_size=6), st.integers(-5, 10**6), st.floats(), st.none(), IN_RANGE),
    keep=patterns,
    match=patterns,
    keep_last=st.one_of(st.none(), st.integers(-2, 5), st.floats(), st.text(max_size=2), st.booleans()),
)
def test_stale_tags_arguments(older_than, keep, match, keep_last):
    exc = refused(
        lambda: stale_tags(MANIFESTS, older_than=older_than, keep=keep, match=match, keep_last=keep_last, now=NOW)
    )
    if exc is None:
        result = stale_tags(MANIFESTS, older_than=older_than, keep=keep, match=match, keep_last=keep_last, now=NOW)
        assert len(result) == 3
        assert not result.set_index("tag").loc["v2", "stale"], "an undated tag is never stale"


@pytest.mark.parametrize(
    "older_than", [dt.timedelta(days=106752), pd.Timedelta(dt.timedelta(days=10**6))], ids=["just-beyond", "far-beyond"]
)
def test_threshold_beyond_pandas_range_is_refused(older_than):
    with pytest.raises(ValueError, match="longer than pandas can represent"):
        stale_tags(MANIFESTS, older_than=older_than, now=NOW)


@pytest.mark.parametrize("older_than", ["90d", 90, dt.timedelta(days=90), pd.Timedelta(days=90)])
def test_stale_tags_threshold_forms_agree(older_than):
    result = stale_tags(MANIFESTS, older_than=older_than, now=NOW).set_index("tag")["stale"]
    assert result.to_dict() == {"latest": True, "1.0": True, "v2": False}
