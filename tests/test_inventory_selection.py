"""Which repositories ``inventory()`` crawls: exact names with ``repositories=``, patterns with ``match=``,
against the shared real registry (each test plants its own repositories, named after the test)."""

from __future__ import annotations

import re
import time

import pytest

import regframe
from regframe.testing import build_image, layer, push_image


def plant(client, base: str) -> tuple[str, str, str]:
    """``base/api``, ``base/api-v2`` and ``x/base/api``: the names a substring selection confuses."""
    names = (f"{base}/api", f"{base}/api-v2", f"x/{base}/api")
    for number, name in enumerate(names):
        push_image(client, name, "1.0", build_image([layer(f"{name}-{number}", 400)]))
    return names


def crawled(inv) -> set[str]:
    return set(inv.catalog["repository"].astype(str)) | set(inv.tags["repository"].astype(str))


@pytest.mark.parametrize("shape", ["str", "list", "tuple", "set"])
def test_exact_names_crawl_exactly_those(anon, repo_name, shape):
    api, _, nested = plant(anon, repo_name)
    given = {"str": api, "list": [api], "tuple": (api,), "set": {api}}[shape]
    inv = anon.inventory(given, progress=False)
    assert crawled(inv) == {api}
    assert list(inv.tags["tag"].astype(str)) == ["1.0"]
    assert inv.stats["requests"]["tags"] == 1, "one tag list read: no other repository was crawled"
    both = anon.inventory([nested, api, nested], progress=False)
    assert crawled(both) == {api, nested}
    assert both.stats["requests"]["tags"] == 2


def test_match_selects_by_substring_or_regex(anon, repo_name):
    api, v2, nested = plant(anon, repo_name)
    assert crawled(anon.inventory(match=re.escape(api), progress=False)) == {api, v2, nested}
    assert crawled(anon.inventory(match="^" + re.escape(api) + "$", progress=False)) == {api}
    flags_kept = re.compile(re.escape(repo_name) + "/API-V2$", re.IGNORECASE)
    assert crawled(anon.inventory(match=flags_kept, progress=False)) == {v2}


def test_names_and_match_intersect(anon, repo_name):
    api, v2, _ = plant(anon, repo_name)
    inv = anon.inventory([api, v2], match=r"/api$", progress=False)
    assert crawled(inv) == {api}, "x/.../api matches but was not listed; api-v2 is listed but does not match"
    assert inv.stats["requests"]["tags"] == 1
    assert crawled(anon.inventory(api, match="nothing-matches", progress=False)) == set()


def test_an_unknown_name_is_an_error_row_saying_names_are_exact(anon, repo_name):
    """A name the catalog does not list is crawled, not refused up front (catalogs filtered by permissions
    leave out readable repositories); its tag list answers 404, and the error row says names are exact."""
    api, _, _ = plant(anon, repo_name)
    prefix = repo_name.split("/")[0]
    inv = anon.inventory([prefix, api], progress=False)
    assert crawled(inv) == {api}
    assert inv.errors[["repository", "stage"]].astype(str).values.tolist() == [[prefix, "tags"]]
    error = str(inv.errors["error"].iloc[0])
    assert f"repository {prefix} not found" in error
    assert "catalog does not list it" in error and "exact repository names, not patterns" in error


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"repositories": re.compile("team-a")}, ValueError, "exact repository names; select by pattern with match="),
        ({"repositories": 5}, ValueError, "repositories must be None, a repository name or a list"),
        ({"repositories": b"team-a/api"}, ValueError, "not bytes"),
        ({"repositories": "Team-A/api"}, regframe.InvalidReferenceError, "upper-case"),
        ({"repositories": ["team-a/api", "bad//name"]}, regframe.InvalidReferenceError, "bad//name"),
        ({"repositories": ["team-a/api", None]}, regframe.InvalidReferenceError, "must be a string, not NoneType"),
        ({"match": "(unclosed"}, ValueError, r"match pattern '\(unclosed' is not a valid regular expression"),
        ({"match": 5}, ValueError, "match must be a regular expression string"),
        ({"match": re.compile(b"api")}, ValueError, "must be text"),
        ({"repositories": ["team-a/api"], "match": "(unclosed"}, ValueError, "not a valid regular expression"),
    ],
)
def test_bad_values_are_refused_before_any_request(anon, options, error, message):
    before = anon.stats["total_requests"]
    with pytest.raises(error, match=message):
        anon.inventory(**options, progress=False)
    assert anon.stats["total_requests"] == before


def test_catastrophic_match_on_given_names_is_refused_before_any_request(anon):
    before, started = anon.stats["total_requests"], time.monotonic()
    with pytest.raises(ValueError, match=r"match pattern '\(a\|aa\)\+\$' took longer than 1 s on repository"):
        anon.inventory(["a" * 60 + "b"], match="(a|aa)+$", progress=False)
    assert time.monotonic() - started < 30
    assert anon.stats["total_requests"] == before


def test_catastrophic_match_on_the_catalog_ends_the_crawl_with_the_error(anon, repo_name):
    slow = f"{repo_name}/{'a' * 60}b"
    push_image(anon, slow, "1.0", build_image([layer(slow, 400)]))
    started = time.monotonic()
    with pytest.raises(ValueError, match="took longer than 1 s on repository"):
        anon.inventory(match="(a|aa)+$", progress=False)
    assert time.monotonic() - started < 30


def test_docker_hub_single_names_are_library_names_before_duplicates_are_dropped(registry_url, repo_name):
    """Docker Hub files ``alpine`` under ``library/alpine``: given both ways, it was crawled twice (every tag
    twice, every blob shared with itself) and the frames kept whichever spelling was typed. Docker Hub cannot
    be reached from the tests, so its rule is applied to the local registry with the client's ``hub`` flag,
    which ``connect("docker.io")`` sets."""
    single = repo_name.replace("/", "-")
    with regframe.connect(registry_url, docker_config=False) as client:
        push_image(client, f"library/{single}", "1.0", build_image([layer(f"{single}-hub", 500)]))
        client.hub = True
        inv = client.inventory([single, f"library/{single}"], progress=False)
        alone = client.inventory(single, progress=False)
    assert crawled(inv) == crawled(alone) == {f"library/{single}"}
    assert len(inv.tags) == 1 and inv.stats["requests"]["tags"] == 1
    assert list(inv.params["repositories"]) == list(alone.params["repositories"]) == [f"library/{single}"]


def test_command_line_names_on_docker_hub_are_library_names():
    """``--repositories`` (and ``--repositories-from``) name Docker Hub repositories as Hub does, so two
    spellings are one repository and audits line up in ``--history`` and ``regframe diff``; other registries
    keep single names as given."""
    from regframe.cli import parser
    from regframe.cli_shared import chosen_repositories

    def chosen(url: str) -> list[str] | None:
        args = parser().parse_args(
            ["audit", url, "--out", "out", "--repositories", "alpine", "library/alpine", "team/app"]
        )
        return chosen_repositories(args)

    assert chosen("docker.io") == chosen("https://index.docker.io") == ["library/alpine", "team/app"]
    assert chosen("https://registry.example.com") == ["alpine", "library/alpine", "team/app"]
