"""Accessories (signatures, SBOMs, attestations, referrers lists) go with their image, coverage is measured,
and garbage collection is advised truthfully.

Everything runs against the real registry (distribution 2.8, no referrers API): content is built with the
harness's builders exactly as cosign, BuildKit, ORAS and Helm publish it, and one SBOM is pushed with oras-py.
The referrers API path runs through ``regframe.testing.referrers_proxy.ReferrersProxy``, which serves it from
the registry's own storage. Every expected number comes from the content built here or from the fleet's plan.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import requests

import regframe
from regframe import cli, plot
from regframe.analysis import (
    GARBAGE_COLLECTION,
    dangling_entries,
    reclaimable_by_repository,
    reclaimable_bytes,
    stale_tags,
    supply_chain,
)
from regframe.client import mediatypes as MT
from regframe.inventory import Inventory
from regframe.policy import Policy
from regframe.testing import build_image, build_index, layer, local_registry, make_fleet, push_image, seeded_registry
from regframe.testing.faultproxy import Delay, FaultProxy, Rule
from regframe.testing.layers import Blob
from regframe.testing.oci_artifacts import (
    PREDICATE_SIGN,
    PREDICATE_SLSA,
    PREDICATE_SPDX,
    artifact,
    cosign_attestation,
    cosign_sbom,
    cosign_signature,
    oras_push,
    push_artifact,
    referrers_index,
    sigstore_bundle,
)
from regframe.testing.referrers_proxy import ReferrersProxy
from regframe.units import format_bytes
from regframe.widgets import storage_dashboard

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = datetime(2020, 3, 4, tzinfo=UTC)
GHOST = build_image([layer("sc-never-pushed", 300)], oci=True)
PNG = b"\x89PNG\r\n\x1a\n"
DONE = {"would delete": "deleted", "would update": "updated"}


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def fallback_tag(digest: str) -> str:
    return digest.replace(":", "-", 1)


def oras_sbom(subject, created: datetime) -> object:
    """An SBOM as ``oras attach --artifact-type application/spdx+json`` writes it."""
    document = json.dumps({"spdxVersion": "SPDX-2.3", "name": subject.digest}).encode()
    return artifact(
        kind="sbom",
        artifact_type=MT.SPDX_JSON,
        layers=[Blob.of(document, MT.SPDX_JSON)],
        subject=subject,
        annotations={MT.ANNOTATION_CREATED: stamp(created)},
    )


class Signed:
    """An image and its accessories as the tools publish them: cosign ``.sig`` and ``.att`` tags, and a
    Sigstore bundle signature and an ORAS SBOM as untagged referrers listed in the fallback tag."""

    def __init__(self, name: str, created: datetime):
        self.image = build_image([layer("sc-base", 2500), layer(f"sc-app-{name}", 1200 + len(name))], created=created)
        self.sig_tag, self.sig = cosign_signature(self.image, signatures=2)
        self.att_tag, self.att = cosign_attestation(self.image, PREDICATE_SLSA)
        self.bundle = sigstore_bundle(self.image, PREDICATE_SIGN, created=stamp(created))
        self.sbom = oras_sbom(self.image, created)
        self.fallback_tag = fallback_tag(self.image.digest)
        self.fallback = referrers_index([self.bundle, self.sbom])

    def push(self, client, repo: str, tag: str) -> None:
        push_image(client, repo, tag, self.image)
        push_artifact(client, repo, self.sig_tag, self.sig)
        push_artifact(client, repo, self.att_tag, self.att)
        push_artifact(client, repo, self.fallback_tag, self.fallback)

    @property
    def tags(self) -> set[str]:
        return {self.sig_tag, self.att_tag, self.fallback_tag}

    @property
    def untagged(self) -> list:
        return [self.bundle, self.sbom]

    def blobs(self) -> dict[str, int]:
        items = [self.image, self.sig, self.att, *self.untagged]
        return {blob.digest: blob.size for item in items for blob in (item.config, *item.layers)}


def hashes(client, repo: str) -> dict[str, str]:
    return client.tags(repo, with_hashes=True).get("hashes", {})


def manifest_status(url: str, repo: str, digest: str) -> int:
    """A manifest's HTTP status, read with plain requests, not with the code under test."""
    accept = ", ".join([MT.OCI_MANIFEST, MT.OCI_INDEX, MT.DOCKER_MANIFEST])
    return requests.head(f"{url}/v2/{repo}/manifests/{digest}", headers={"Accept": accept}, timeout=10).status_code


def decisions(stale: pd.DataFrame) -> dict[str, tuple[bool, str]]:
    return {str(t): (bool(s), str(r)) for t, s, r in zip(stale["tag"], stale["stale"], stale["reason"], strict=True)}


# --- point 6: accessories follow their subject --------------------------------------------------------------


def test_accessories_follow_their_subject_not_their_dates(anon, repo_name):
    """Cosign's zero dates never keep an accessory, a real old date never makes one stale, a recent one takes
    no keep_last place; an accessory is stale exactly when its image is, and an orphan always."""
    old, new = Signed("follow-old", OLD), Signed("follow-new", NOW - timedelta(days=10))
    old.push(anon, repo_name, "v1")
    new.push(anon, repo_name, "v2")
    # Accessories with real dates, tagged, carrying a subject field: an old one of the kept image, a fresh one
    # of the old image (newer than every image, so it would take keep_last's one place).
    old_sig_of_new = sigstore_bundle(new.image, PREDICATE_SIGN, created="2001-02-03T04:05:06Z")
    fresh_sbom_of_old = sigstore_bundle(old.image, PREDICATE_SPDX, created=stamp(NOW - timedelta(days=1)))
    push_artifact(anon, repo_name, "v2-signed-2001", old_sig_of_new)
    push_artifact(anon, repo_name, "v1-sbom-fresh", fresh_sbom_of_old)
    orphan_tag, orphan = cosign_signature(GHOST)
    push_artifact(anon, repo_name, orphan_tag, orphan)

    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="5d", keep_last=1, now=NOW)
    got = decisions(stale)
    assert got["v2"] == (False, "kept: among newest 1")
    assert got["v1"] == (True, "older than 5 days")
    for tag in (*new.tags, "v2-signed-2001"):
        assert got[tag] == (False, f"kept: subject {new.image.digest} is kept (tag 'v2')"), tag
    for tag in (*old.tags, "v1-sbom-fresh"):
        assert got[tag] == (True, f"subject {old.image.digest} is deleted with tag 'v1'"), tag
    assert got[orphan_tag] == (True, f"orphaned: subject {GHOST.digest} not found")
    subjects = dict(zip(stale["tag"].astype(str), stale["subject"], strict=True))
    assert subjects[old.sig_tag] == old.image.digest and pd.isna(subjects["v1"])

    keep = stale_tags(inv.manifests, older_than="5d", keep=r"^v1-sbom-fresh$", now=NOW)
    assert decisions(keep)["v1-sbom-fresh"] == (False, "kept: matches keep pattern")

    # Policies build on the same rule: accessories are not governed by the rules, they follow their subject.
    policy = Policy.from_dict({"rules": [{"name": "all", "keep_last": 1}]})
    decided = decisions(policy.evaluate(inv.manifests, now=NOW))
    assert decided["v2"][0] is False and decided["v1"][0] is True
    assert {tag: decided[tag] for tag in (*old.tags, *new.tags, orphan_tag)} == {
        tag: got[tag] for tag in (*old.tags, *new.tags, orphan_tag)
    }


def test_a_chain_of_accessories_follows_its_image(anon, repo_name):
    """A signature of an attestation goes when the attestation's image goes."""
    old = Signed("chain", OLD)
    old.push(anon, repo_name, "v1")
    sig_of_att_tag, sig_of_att = cosign_signature(old.att)
    push_artifact(anon, repo_name, sig_of_att_tag, sig_of_att)
    inv = anon.inventory(repo_name, progress=False)
    got = decisions(stale_tags(inv.manifests, older_than="5d", now=NOW))
    assert got[sig_of_att_tag] == (True, f"subject {old.att.digest} is deleted with tag '{old.att_tag}'")


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_cleanup_takes_a_signed_image_with_all_its_accessories(registry_url, anon, repo_name, delete_manifests):
    """Deleting a signed image removes its cosign tags and its fallback tag, and with delete_manifests its
    untagged referrers (by digest; without it they stay, untagged and unlisted, as the image does), leaving
    no orphan; the kept image keeps all of its own; the dry run lists exactly what the real run
    then does."""
    old, new = Signed("clean-old", OLD), Signed("clean-new", NOW - timedelta(days=1))
    old.push(anon, repo_name, "v1")
    new.push(anon, repo_name, "v2")
    before = hashes(anon, repo_name)
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW)
    assert set(stale.loc[stale["stale"], "tag"]) == {"v1", *old.tags}

    dry = anon.apply_cleanup(stale, dry_run=True, delete_manifests=delete_manifests)
    assert hashes(anon, repo_name) == before, "a dry run changes nothing"
    done = anon.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)

    def plan(frame):
        return sorted(
            (str(r.tag), r.digest, r.action, str(r.method), DONE.get(r.status, r.status))
            for r in frame.itertuples(index=False)
        )

    assert plan(dry) == plan(done)
    untagged = done[done["tag"].isna()]
    assert sorted(untagged["digest"]) == sorted(item.digest for item in old.untagged)
    if delete_manifests:
        assert set(untagged["method"]) == {"manifest"} and set(untagged["status"]) == {"deleted"}
    else:
        assert untagged["method"].isna().all() and set(untagged["status"]) == {"left untagged"}
    assert all(f"untagged referrer of {old.image.digest}" in reason for reason in untagged["reason"])
    row = done.set_index("tag").loc[old.fallback_tag]
    assert (row["method"], row["status"]) == ("fallback-index", "deleted")
    assert "2 entries removed, none left, so the tag is removed" in row["reason"]

    assert hashes(anon, repo_name) == {tag: before[tag] for tag in ("v2", *new.tags)}
    gone = 404 if delete_manifests else 200
    for item in old.untagged:
        assert manifest_status(registry_url, repo_name, item.digest) == gone
    for item in new.untagged:
        assert manifest_status(registry_url, repo_name, item.digest) == 200
    assert manifest_status(registry_url, repo_name, old.image.digest) == gone
    assert manifest_status(registry_url, repo_name, old.sig.digest) == gone

    after = anon.inventory(repo_name, progress=False)
    coverage = supply_chain(after.manifests, after.referrers)
    assert coverage.attrs["orphaned"] == 0 and coverage.attrs["images"] == 1 and coverage.attrs["signed"] == 1
    assert set(after.referrers["digest"]) == {new.sig.digest, new.att.digest, *(i.digest for i in new.untagged)}
    assert after.errors.empty, "nothing dangles"


def test_fallback_index_keeps_entries_still_referenced(registry_url, anon, repo_name):
    """An untagged referrer that a kept tag also names stays: its entry stays in the rewritten fallback
    index, whose tag then stays too; the other entry and its manifest go."""
    old = Signed("pinned", OLD)
    old.push(anon, repo_name, "v1")
    push_artifact(anon, repo_name, "sbom-pinned", old.sbom)
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", keep=r"^sbom-pinned$", now=NOW)
    dry = anon.apply_cleanup(stale, dry_run=True, delete_manifests=True)
    done = anon.apply_cleanup(stale, dry_run=False, delete_manifests=True)
    for result, status in ((dry, "would update"), (done, "updated")):
        row = result.set_index("tag").loc[old.fallback_tag]
        assert (row["action"], row["status"]) == ("update", status)
        assert "1 entry removed, 1 left, so the tag stays" in row["reason"]
        kept = result[result["digest"] == old.sbom.digest].iloc[0]
        assert kept["status"] == "skipped" and "kept: tagged 'sbom-pinned'" in kept["reason"]
    index = anon.manifest(repo_name, old.fallback_tag)
    assert [entry["digest"] for entry in index["manifests"]] == [old.sbom.digest]
    assert manifest_status(registry_url, repo_name, old.bundle.digest) == 404
    assert set(hashes(anon, repo_name)) == {"sbom-pinned", old.fallback_tag}


def test_accessories_of_a_subject_still_referenced_stay(anon, repo_name):
    """A tag another client puts on the image after the analysis keeps its accessories: only an accessory
    a deletion leaves pointing at nothing goes."""
    old = Signed("retagged", OLD)
    old.push(anon, repo_name, "v1")
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW)
    push_image(anon, repo_name, "release", old.image)
    before = hashes(anon, repo_name)
    done = anon.apply_cleanup(stale, dry_run=False)
    accessories = done[done["tag"].isin(old.tags)]
    assert set(accessories["status"]) == {"skipped"}
    assert all("still tagged 'release'" in reason for reason in accessories["reason"])
    assert hashes(anon, repo_name) == {t: d for t, d in before.items() if t != "v1"}


def test_rmtag_removes_only_the_tag(anon, repo_name):
    """rmtag stays what it was: the image's accessories are untouched."""
    old = Signed("rmtag", OLD)
    old.push(anon, repo_name, "v1")
    before = hashes(anon, repo_name)
    anon.rmtag(repo_name, "v1")
    assert hashes(anon, repo_name) == {t: d for t, d in before.items() if t != "v1"}


def test_untagged_referrers_the_api_names_go_with_their_subject():
    """Through a registry with the referrers API (the proxy serving it from the registry's storage), an
    untagged referrer no tag shows is counted by reclaimable_bytes(referrers=) and, with delete_manifests,
    deleted by digest with its image."""
    old = Signed("api", OLD)
    kept = build_image([layer("sc-api-kept", 900)], created=NOW)
    note = artifact(
        kind="attestation", artifact_type=MT.IN_TOTO, layers=[Blob.of(b'{"api": 1}', MT.IN_TOTO)], subject=old.image
    )
    with local_registry() as reg, ReferrersProxy(reg.url, storage=reg.storage) as proxy:
        with regframe.connect(proxy.url) as client:
            push_image(client, "app/api", "v1", old.image)
            push_image(client, "app/api", "v2", kept)
            push_artifact(client, "app/api", note.digest, note)
            inv = client.inventory(progress=False, referrers=True)
            listed = inv.referrers[inv.referrers["digest"] == note.digest]
            assert listed["via"].tolist() == ["api"] and listed["tag"].isna().all()
            stale = stale_tags(inv.manifests, older_than="30d", now=NOW)
            image_blobs = {b.digest: b.size for b in (old.image.config, *old.image.layers)}
            note_blobs = {b.digest: b.size for b in (note.config, *note.layers)}
            assert reclaimable_bytes(stale, inv.layers) == sum(image_blobs.values())
            with_api = reclaimable_bytes(stale, inv.layers, inv.referrers)
            assert with_api == sum({**image_blobs, **note_blobs}.values())
            done = client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        row = done[done["digest"] == note.digest].iloc[0]
        assert (row["method"], row["status"]) == ("manifest", "deleted")
        assert "(referrers API)" in row["reason"]
        assert manifest_status(reg.url, "app/api", note.digest) == 404


def test_reclaimable_bytes_counts_accessories_and_the_advised_collection_frees_exactly_them(tmp_path):
    """The run reclaimable_bytes assumes (apply_cleanup with delete_manifests, then plain garbage-collect)
    frees exactly the blobs it counts, accessories included, and leaves nothing dangling."""
    old, new = Signed("gc-old", OLD), Signed("gc-new", NOW - timedelta(days=1))
    orphan = sigstore_bundle(GHOST, PREDICATE_SIGN)
    with local_registry() as reg, regframe.connect(reg.url, docker_config=False) as client:
        old.push(client, "app/gc", "v1")
        new.push(client, "app/gc", "v2")
        push_artifact(client, "app/gc", "orphan-sig", orphan)
        inv = client.inventory(progress=False)
        stale = stale_tags(inv.manifests, older_than="30d", now=NOW)
        kept = new.blobs()
        freed = {d: s for d, s in {**old.blobs(), **_blob_sizes(orphan)}.items() if d not in kept}
        assert reclaimable_bytes(stale, inv.layers) == sum(freed.values())
        per_repository = reclaimable_by_repository(stale, inv.layers)
        assert per_repository.attrs["garbage_collection"] == GARBAGE_COLLECTION
        assert "delete_manifests=True" in GARBAGE_COLLECTION and "without --delete-untagged" in GARBAGE_COLLECTION
        assert "delete_manifests=True" in (reclaimable_bytes.__doc__ or "")

        client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        reg.garbage_collect()
        stored = _stored_blobs(reg)
        assert not set(freed) & stored
        assert set(kept) <= stored
        after = client.inventory(progress=False)
        assert after.errors.empty and dangling_entries(after.tags, after.errors).empty
        client.pull("app/gc", "v2", tmp_path / "v2")


def _blob_sizes(item) -> dict[str, int]:
    return {blob.digest: blob.size for blob in (item.config, *item.layers)}


def _stored_blobs(reg) -> set[str]:
    blobs = reg.storage / "docker" / "registry" / "v2" / "blobs" / "sha256"
    return {f"sha256:{p.parent.name}" for p in blobs.glob("*/*/data")}


# --- point 9: dangling entries, told apart from orphans -----------------------------------------------------


def test_dangling_entries_after_delete_untagged_are_reported_apart_from_orphans(tmp_path):
    """distribution 2.8's ``garbage-collect --delete-untagged`` deletes the platforms of a tagged index and
    the referrers a fallback index lists; the audit reports each dangling entry, not as an orphan. A gone
    entry hides no tag, so a real orphan beside it is still found."""
    orphan_tag, orphan = cosign_signature(GHOST)
    amd = build_image([layer("sc-dangle-amd", 800)], oci=True)
    arm = build_image([layer("sc-dangle-arm", 800)], architecture="arm64", variant="v8", oci=True)
    multi = build_index([amd, arm], oci=True)
    signed = Signed("dangle", NOW)
    with local_registry() as reg:
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "app/dangle", "multi", multi)
            signed.push(client, "app/dangle", "v1")
            push_artifact(client, "app/dangle", orphan_tag, orphan)
        reg.garbage_collect(delete_untagged=True)
        out = tmp_path / "audit"
        code = cli.main(["audit", reg.url, "--out", str(out), "--no-progress"])
    assert code == 1, "the crawl could not read the entries: they are errors too"
    expected = {
        ("app/dangle", "multi", multi.digest, amd.digest, "image"),
        ("app/dangle", "multi", multi.digest, arm.digest, "image"),
        *(
            ("app/dangle", signed.fallback_tag, signed.fallback.digest, item.digest, "fallback")
            for item in signed.untagged
        ),
    }
    written = pd.read_csv(out / "dangling.csv")
    assert set(written.itertuples(index=False, name=None)) == expected
    inv = Inventory.load(out)
    assert set(dangling_entries(inv.tags, inv.errors).itertuples(index=False, name=None)) == expected
    assert supply_chain(inv.manifests, inv.referrers, tags=inv.tags, errors=inv.errors).attrs["orphaned"] == 1
    decided = stale_tags(inv.manifests, tags=inv.tags, errors=inv.errors).set_index("tag")
    assert decided.loc[orphan_tag, "reason"] == f"orphaned: subject {GHOST.digest} not found"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["dangling_index_entries"], summary["dangling_fallback_entries"]) == (2, 2)
    assert summary["orphaned_accessories"] == 1
    text = (out / "summary.txt").read_text()
    assert "Dangling index entries: 2 in image indexes, 2 in referrers fallback indexes" in text
    assert "Dangling index entries (the index lists a manifest that is gone)" in (out / "report.md").read_text()


# --- point 8 and 10: coverage of a fleet, the audit, the chart, the dashboard ------------------------------

FLEET = {
    "repositories": 5,
    "tags_per_repo": 6,
    "seed": 41,
    "multi_platform_ratio": 0.3,
    "layer_size_range": (300, 3000),
    "base_layer_size_range": (4000, 9000),
    "signed_ratio": 0.6,
    "sbom_ratio": 0.4,
    "attestation_ratio": 0.3,
    "helm_charts": 2,
    "artifacts": 1,
    "orphans": 3,
}


@pytest.fixture(scope="module")
def fleet():
    return make_fleet(**FLEET)


@pytest.fixture(scope="module")
def fleet_url(fleet):
    with seeded_registry(fleet) as reg:
        yield reg.url


@pytest.fixture(scope="module")
def fleet_inv(fleet_url):
    with regframe.connect(fleet_url) as reg:
        return reg.inventory(progress=False)


def expected_coverage(fleet) -> pd.DataFrame:
    rows = [{"repository": repository, **counts} for repository, counts in fleet.coverage().items()]
    return pd.DataFrame(rows).sort_values("repository", ignore_index=True)


def test_fleet_options_change_nothing_of_the_images():
    """The accessory options draw from their own random stream: the images of a fleet stay the same."""
    plain = make_fleet(**{k: v for k, v in FLEET.items() if k not in ("attestation_ratio",)} | {"signed_ratio": 0})
    signed = make_fleet(**{k: v for k, v in FLEET.items() if k not in ("attestation_ratio",)})
    assert [r["manifest_digest"] for r in plain.records()] == [r["manifest_digest"] for r in signed.records()]
    assert not make_fleet(repositories=2, tags_per_repo=3).accessories


def test_supply_chain_equals_the_fleet_plan(fleet, fleet_inv):
    coverage = expected_coverage(fleet)
    assert coverage["signed"].sum() == round(0.6 * 5 * 4) and coverage["orphaned"].sum() == 3
    assert coverage["with_attestation"].sum() == round(0.3 * 5 * 4)
    got = supply_chain(fleet_inv.manifests, fleet_inv.referrers)
    assert got[list(coverage.columns)].to_dict("records") == coverage.to_dict("records")
    for column in coverage.columns[1:]:
        assert got.attrs[column] == int(coverage[column].sum()), column
    assert set(fleet_inv.manifests["kind"].astype(str)) >= {"image", "signature", "sbom", "attestation", "helm-chart"}

    want = pd.DataFrame(fleet.referrer_records()).sort_values(["repository", "digest"], ignore_index=True)
    rows = fleet_inv.referrers.astype(object).sort_values(["repository", "digest"], ignore_index=True)
    for column in ("repository", "subject", "digest", "kind", "size", "via"):
        assert rows[column].tolist() == want[column].tolist(), column
    assert [t if isinstance(t, str) else None for t in rows["tag"]] == [
        t if isinstance(t, str) else None for t in want["tag"]
    ]


def test_audit_writes_the_supply_chain_and_says_it(fleet, fleet_url, tmp_path):
    out = tmp_path / "audit"
    assert cli.main(["audit", fleet_url, "--out", str(out), "--no-progress"]) == 0
    coverage = expected_coverage(fleet)
    written = pd.read_csv(out / "supply_chain.csv")
    assert written[list(coverage.columns)].to_dict("records") == coverage.to_dict("records")
    assert len(pd.read_csv(out / "referrers.csv")) == len(fleet.referrer_records())
    images, signed = int(coverage["images"].sum()), int(coverage["signed"].sum())
    line = (
        f"signed: {signed} of {images} images ({signed / images:.0%}); SBOM: {coverage['with_sbom'].sum()}; "
        f"attestation: {coverage['with_attestation'].sum()}; orphaned accessories: {coverage['orphaned'].sum()} "
        f"({format_bytes(int(coverage['orphaned_bytes'].sum()))})"
    )
    text = (out / "summary.txt").read_text()
    assert line in text
    assert "Dangling" not in text
    flat = " ".join(text.split())
    assert "Safe on distribution 2.x: delete with delete_manifests" in flat and "plain `garbage-collect`" in flat
    assert "Never `--delete-untagged` on 2.x" in flat
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["signed_images"], summary["unsigned_images"]) == (signed, images - signed)
    assert summary["orphaned_accessories"] == coverage["orphaned"].sum()
    assert summary["dangling_index_entries"] == summary["dangling_fallback_entries"] == 0
    markdown = (out / "report.md").read_text()
    assert "### Supply chain" in markdown and "Never \\`--delete-untagged\\` on 2.x" in markdown
    html = (out / "report.html").read_text()
    assert 'id="supply-chain"' in html and 'data-chart="supply_chain"' in html
    assert "Never `--delete-untagged` on 2.x" in html
    assert (out / "charts" / "supply_chain.png").read_bytes().startswith(PNG)


def test_supply_chain_chart_draws_the_coverage(fleet):
    coverage = expected_coverage(fleet)
    ax = plot.supply_chain(coverage, alpha=0.5)
    bars = {container.get_label(): container for container in ax.containers}
    assert list(bars) == ["images", "signed", "with SBOM", "with attestation"]
    shown = coverage[coverage["images"] > 0].sort_values(["images", "repository"], ascending=[False, True])
    labels = [tick.get_text() for tick in ax.get_yticklabels()]
    assert labels == [plot.shorten(name) for name in shown["repository"]]
    for label, column in (("images", "images"), ("signed", "signed"), ("with SBOM", "with_sbom")):
        assert [patch.get_width() for patch in bars[label]] == shown[column].tolist(), label
    assert [p.get_width() for p in bars["with attestation"]] == shown["with_attestation"].tolist()
    assert all(patch.get_alpha() == 0.5 for patch in bars["signed"]), "keyword arguments reach the bars"
    assert ax.get_title(loc="left").startswith(
        f"Signed: {coverage['signed'].sum()} of {coverage['images'].sum()} images"
    )

    folded = plot.supply_chain(coverage, top=2)
    rows = [tick.get_text() for tick in folded.get_yticklabels()]
    assert rows[-1] == f"other ({len(shown) - 2} repositories)"
    assert folded.containers[0][-1].get_width() == shown["images"].iloc[2:].sum()
    with pytest.raises(ValueError, match="with_sbom"):
        plot.supply_chain(coverage.drop(columns="with_sbom"))
    empty = plot.supply_chain(coverage.iloc[:0])
    assert "No images" in [text.get_text() for text in empty.texts]
    plt.close("all")


def test_storage_dashboard_shows_the_supply_chain(fleet, fleet_inv):
    board = storage_dashboard(fleet_inv)
    coverage = expected_coverage(fleet)
    assert board.supply[list(coverage.columns)].to_dict("records") == coverage.to_dict("records")
    signed, images = int(coverage["signed"].sum()), int(coverage["images"].sum())
    assert re.search(rf"<b>{signed}</b> of {images} images signed", board.supply_summary.value)
    assert f"{int(coverage['orphaned'].sum())} orphaned accessories" in board.supply_summary.value
    assert board.supply_chart.value.tobytes().startswith(PNG)
    assert all(name in board.supply_table.value for name in coverage["repository"])


def test_oras_pushed_sbom_follows_its_image(registry_url, anon, repo_name, tmp_path):
    """An SBOM oras-py pushes with a subject, under a tag of its own, is an accessory of that image."""
    old = build_image([layer("sc-oras-old", 700)], created=OLD, oci=True)
    push_image(anon, repo_name, "v1", old)
    sbom_file, config_file = tmp_path / "sbom.spdx.json", tmp_path / "config.json"
    sbom_file.write_text('{"spdxVersion": "SPDX-2.3"}')
    config_file.write_text("{}")
    digest = oras_push(
        registry_url,
        repo_name,
        "v1-sbom",
        [(sbom_file, MT.SPDX_JSON)],
        config=(config_file, MT.SPDX_JSON),
        subject=old,
    )
    inv = anon.inventory(repo_name, progress=False)
    got = decisions(stale_tags(inv.manifests, older_than="30d", now=NOW))
    assert got["v1-sbom"] == (True, f"subject {old.digest} is deleted with tag 'v1'")
    done = anon.apply_cleanup(stale_tags(inv.manifests, older_than="30d", now=NOW), dry_run=False)
    assert set(done["status"]) == {"deleted"} and hashes(anon, repo_name) == {}
    assert manifest_status(registry_url, repo_name, digest) == 200, "a tagged accessory loses its tag, as images do"


# --- a policy's scope, and partial crawls: orphans only where known, deleted only where governed -------------


def test_a_policy_never_deletes_an_orphan_outside_its_repositories(anon, repo_name):
    """The user's report on a real inventory: team-a holds a cosign signature of an image that is gone; a
    native policy for team-b only, and a Harbor policy of project team-b, both leave it alone, and the dry
    run plans nothing in team-a. Within the policy's repositories the orphan still goes."""
    team_a, team_b = f"{repo_name}/team-a/api-00", f"{repo_name}/team-b/web"
    image = build_image([layer("sc-scope-a", 600)], created=OLD)
    orphan_tag, orphan = cosign_signature(GHOST)
    for repository in (team_a, team_b):
        push_image(anon, repository, "1.0", image)
        push_artifact(anon, repository, orphan_tag, orphan)
    inv = anon.inventory([team_a, team_b], progress=False)

    native = Policy.from_dict(
        {"rules": [{"name": "only-web", "repositories": [f"{repo_name}/team-b/**"], "tags": "^nothing-matches$"}]}
    )
    harbor = Policy.from_harbor(
        {
            "rules": [
                {
                    "template": "latestPushedK",
                    "params": {"latestPushedK": 1},
                    "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                }
            ]
        },
        project=f"{repo_name}/team-b",
    )
    for policy, outside in (
        (native, "kept: no rule covers this repository"),
        (harbor, f"kept: outside project '{repo_name}/team-b'"),
    ):
        result = policy.evaluate(inv.manifests, now=NOW, tags=inv.tags, errors=inv.errors)
        by_place = {
            (str(r), str(t)): (bool(s), str(why))
            for r, t, s, why in zip(result["repository"], result["tag"], result["stale"], result["reason"], strict=True)
        }
        assert by_place[(team_a, orphan_tag)] == (False, outside), policy.format
        plan = anon.apply_cleanup(result, dry_run=True)
        assert set(plan["repository"].astype(str)) <= {team_b}, policy.format
    in_scope = harbor.evaluate(inv.manifests, now=NOW)
    assert decisions(in_scope[in_scope["repository"] == team_b])[orphan_tag] == (
        True,
        f"orphaned: subject {GHOST.digest} not found",
    )
    assert hashes(anon, team_a) == hashes(anon, team_b)


def _signed_index(name: str) -> tuple[object, str, object]:
    amd = build_image([layer(f"sc-{name}-amd", 800)], oci=True)
    arm = build_image([layer(f"sc-{name}-arm", 800)], architecture="arm64", variant="v8", oci=True)
    multi = build_index([amd, arm], oci=True)
    sbom_tag, sbom = cosign_sbom(multi)
    return multi, sbom_tag, sbom


def test_a_partial_crawl_reports_no_healthy_accessory_as_an_orphan(tmp_path):
    """The platforms of index 3.3.2 are gone (``garbage-collect --delete-untagged``), so the crawl has
    error rows and no manifest row of 3.3.2, yet inv.tags lists it: its SBOM follows the kept tag in
    stale_tags and policies, and supply_chain counts no orphan."""
    multi, sbom_tag, sbom = _signed_index("partial")
    with local_registry() as reg:
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "team/web", "3.3.2", multi)
            push_artifact(client, "team/web", sbom_tag, sbom)
        reg.garbage_collect(delete_untagged=True)
        with regframe.connect(reg.url, docker_config=False) as client:
            inv = client.inventory(progress=False)
        assert audits_plan_no_orphan(reg.url, sbom_tag, tmp_path)
    assert "3.3.2" in set(inv.tags["tag"].astype(str)) and "3.3.2" not in set(inv.manifests["tag"].astype(str))
    assert set(inv.errors["stage"]) == {"child manifest"}
    kept = (False, f"kept: subject {multi.digest} is kept (tag '3.3.2')")
    assert decisions(stale_tags(inv.manifests, older_than="1d", tags=inv.tags))[sbom_tag] == kept
    assert decisions(stale_tags(inv.manifests, older_than="1d", tags=inv.tags, errors=inv.errors))[sbom_tag] == kept
    policy = Policy.from_dict({"rules": [{"name": "all"}]})
    assert decisions(policy.evaluate(inv.manifests, tags=inv.tags, errors=inv.errors))[sbom_tag] == kept
    assert supply_chain(inv.manifests, inv.referrers, tags=inv.tags).attrs["orphaned"] == 0


def audits_plan_no_orphan(url: str, accessory: str, folder) -> bool:
    """``regframe audit``, by age and by policy, counts no orphan and plans no deletion of ``accessory``
    (exit status 1: the crawl has error rows)."""
    policy_file = folder / "all.toml"
    policy_file.write_text('[[rules]]\nname = "all"\n')
    for name, rules in (("age", ["--older-than", "1d"]), ("policy", ["--policy", str(policy_file)])):
        out = folder / name
        assert cli.main(["audit", url, *rules, "--out", str(out), "--no-progress"]) == 1
        assert json.loads((out / "summary.json").read_text())["orphaned_accessories"] == 0, name
        planned = pd.read_csv(out / "cleanup_plan.csv", dtype=str, keep_default_na=False)
        assert accessory not in set(planned["tag"]), name
    return True


def test_a_crawl_stopped_by_its_budget_knows_of_no_orphan(anon, repo_name):
    """budget=2 stops the crawl before it reads every manifest: whatever accessory it did read is not an
    orphan, since no subject is known to be absent, and one whose subject inv.tags shows follows that tag."""
    multi, sbom_tag, sbom = _signed_index("budget")
    push_image(anon, repo_name, "3.3.2", multi)
    push_artifact(anon, repo_name, sbom_tag, sbom)
    inv = anon.inventory(repo_name, progress=False, budget=2, workers=1)
    assert not inv.complete and "budget" in set(inv.errors["stage"])
    stale = stale_tags(inv.manifests, older_than="1d", tags=inv.tags, errors=inv.errors)
    assert not stale["reason"].str.startswith("orphaned").any()
    if sbom_tag in set(stale["tag"].astype(str)) and "3.3.2" in set(inv.tags["tag"].astype(str)):
        assert decisions(stale)[sbom_tag] == (False, f"kept: subject {multi.digest} is kept (tag '3.3.2')")
    coverage = supply_chain(inv.manifests, inv.referrers, tags=inv.tags, errors=inv.errors)
    assert coverage.attrs["orphaned"] == 0


def test_signatures_kept_apart_from_their_images_are_never_orphans(anon, repo_name):
    """cosign's ``COSIGN_REPOSITORY`` keeps ``.sig`` tags in another repository than the image. One whose
    image another repository holds, and any in a repository of nothing but accessories (its images may be
    in a repository this crawl did not read), is kept and counted as no orphan, by stale_tags, policies,
    supply_chain and the cleanup plan. An orphan next to images is still one."""
    app, sigs, lone = f"{repo_name}/app", f"{repo_name}/app-sigs", f"{repo_name}/lone-sigs"
    image = build_image([layer("sc-apart", 700)], created=NOW - timedelta(days=1))
    push_image(anon, app, "1.0", image)
    sig_tag, sig = cosign_signature(image, repository=app)
    push_artifact(anon, sigs, sig_tag, sig)
    ghost_tag, ghost_sig = cosign_signature(GHOST)
    push_artifact(anon, lone, ghost_tag, ghost_sig)
    push_artifact(anon, app, ghost_tag, ghost_sig)
    inv = anon.inventory([app, sigs, lone], progress=False)

    stale = stale_tags(inv.manifests, older_than="90d", tags=inv.tags, errors=inv.errors, now=NOW)
    by_place = {
        (r, t): (s, why)
        for r, t, s, why in zip(stale["repository"], stale["tag"], stale["stale"], stale["reason"], strict=True)
    }
    for place in ((sigs, sig_tag), (lone, ghost_tag)):
        kept, why = by_place[place]
        assert not kept and "kept apart from their images" in why, place
    assert by_place[(app, ghost_tag)] == (True, f"orphaned: subject {GHOST.digest} not found")

    policy = Policy.from_dict({"rules": [{"name": "all", "keep_last": 5}]})
    decided = policy.evaluate(inv.manifests, tags=inv.tags, errors=inv.errors, now=NOW)
    assert set(zip(decided.loc[decided["stale"], "repository"], decided.loc[decided["stale"], "tag"])) == {
        (app, ghost_tag)
    }
    coverage = supply_chain(inv.manifests, inv.referrers, tags=inv.tags, errors=inv.errors).set_index("repository")
    assert coverage["orphaned"].to_dict() == {app: 1, sigs: 0, lone: 0}
    plan = anon.apply_cleanup(stale, dry_run=True)
    assert set(zip(plan["repository"], plan["tag"])) == {(app, ghost_tag)}


def test_an_entry_gone_from_one_repository_is_dangling_there_even_when_another_has_it(tmp_path):
    """``garbage-collect --delete-untagged`` removes an index's platforms from the repository where only the
    index tags them, not from one that tags them too. Content is the same everywhere, but presence is per
    repository: the crawl reports the entries dangling in ``b`` and not in ``a``, cold and warm alike (a
    cached summary is confirmed by a HEAD in each repository)."""
    amd = build_image([layer("sc-where-amd", 800)], oci=True)
    arm = build_image([layer("sc-where-arm", 800)], architecture="arm64", variant="v8", oci=True)
    multi = build_index([amd, arm], oci=True)
    with local_registry() as reg:
        with regframe.connect(reg.url, docker_config=False) as client:
            push_image(client, "where/a", "1.0", multi)
            push_image(client, "where/a", "amd", amd)
            push_image(client, "where/a", "arm", arm)
            push_image(client, "where/b", "1.0", multi)
        reg.garbage_collect(delete_untagged=True)
        with regframe.connect(reg.url, docker_config=False) as client:
            assert client.manifest_exists("where/b", amd.digest) is None, "gone from b"
            assert client.manifest_exists("where/a", amd.digest) == amd.digest, "still in a"
            for crawl in ("cold", "warm"):
                inv = client.inventory(progress=False, cache=tmp_path / "cache")
                dangling = dangling_entries(inv.tags, inv.errors)
                assert set(zip(dangling["repository"], dangling["digest"], strict=True)) == {
                    ("where/b", amd.digest),
                    ("where/b", arm.digest),
                }, crawl
                rows = inv.manifests
                platforms = set(zip(rows["repository"], rows["tag"], rows["manifest_digest"], strict=True))
                assert ("where/a", "1.0", amd.digest) in platforms and ("where/b", "1.0", amd.digest) not in platforms


def test_a_fallback_entry_for_another_subject_is_left_out(anon, repo_name):
    """The fallback tag of image P also lists a referrer whose ``subject`` is image Q (a careless writer):
    the spec has clients confirm each entry by its subject, so the inventory leaves it out of P's tag. P's
    fallback tag then goes with P, and Q's referrer is never planned for deletion with it."""
    old, new = Signed("stray-p", OLD), Signed("stray-q", NOW - timedelta(days=1))
    old.push(anon, repo_name, "v1")
    new.push(anon, repo_name, "v2")
    stray = sigstore_bundle(new.image, PREDICATE_SIGN, created=stamp(NOW))
    push_artifact(anon, repo_name, old.fallback_tag, referrers_index([old.bundle, old.sbom, stray]))

    inv = anon.inventory(repo_name, progress=False)
    listed = inv.referrers.astype({"digest": object, "subject": object})
    assert stray.digest not in set(listed.loc[listed["subject"] == old.image.digest, "digest"])
    stale = stale_tags(inv.manifests, older_than="90d", tags=inv.tags, errors=inv.errors, now=NOW)
    got = decisions(stale)
    assert got["v1"][0] and not got["v2"][0]
    assert got[old.fallback_tag] == (True, f"subject {old.image.digest} is deleted with tag 'v1'")
    plan = anon.apply_cleanup(stale, dry_run=True, delete_manifests=True)
    assert stray.digest not in set(plan["digest"])


def test_a_referrer_of_a_referrer_is_found_counted_and_cleaned_through_the_api():
    """Through the referrers API (the proxy serving it from the registry's storage; no fallback tags): a
    signature of an untagged attestation is a referrer of the attestation, which only a question about the
    attestation finds. The crawl asks it, reclaimable_bytes frees it with its chain, and cleanup (with
    delete_manifests) deletes it after the attestation, leaving nothing stored and nothing of the kept
    image's chain touched."""
    old = Signed("api-chain-old", OLD)
    kept = build_image([layer("sc-api-chain-kept", 900)], created=NOW)
    notes = {
        name: artifact(
            kind="attestation", artifact_type=MT.IN_TOTO, layers=[Blob.of(name.encode(), MT.IN_TOTO)], subject=image
        )
        for name, image in (("old", old.image), ("kept", kept))
    }
    signatures = {name: sigstore_bundle(note, PREDICATE_SIGN, created=stamp(NOW)) for name, note in notes.items()}
    with local_registry() as reg, ReferrersProxy(reg.url, storage=reg.storage) as proxy:
        with regframe.connect(proxy.url) as client:
            push_image(client, "app/chain", "v1", old.image)
            push_image(client, "app/chain", "v2", kept)
            for item in (*notes.values(), *signatures.values()):
                push_artifact(client, "app/chain", item.digest, item)
            inv = client.inventory(progress=False, referrers=True)
            found = inv.referrers.astype({"digest": object, "subject": object})
            pairs = set(zip(found["subject"], found["digest"], strict=True))
            for name in notes:
                assert (notes[name].digest, signatures[name].digest) in pairs, name
            stale = stale_tags(inv.manifests, older_than="30d", now=NOW)
            freed = [old.image, notes["old"], signatures["old"]]
            expected = {b.digest: b.size for item in freed for b in (item.config, *item.layers)}
            for item in (kept, notes["kept"], signatures["kept"]):
                for blob in (item.config, *item.layers):
                    expected.pop(blob.digest, None)
            assert reclaimable_bytes(stale, inv.layers, inv.referrers) == sum(expected.values())
            client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        for item, status in (
            (notes["old"], 404),
            (signatures["old"], 404),
            (notes["kept"], 200),
            (signatures["kept"], 200),
        ):
            assert manifest_status(reg.url, "app/chain", item.digest) == status


@pytest.mark.parametrize("delete_manifests", [False, True])
def test_a_signed_sbom_in_a_fallback_index_goes_with_its_image_and_its_signature(
    registry_url, anon, repo_name, delete_manifests
):
    """Without the referrers API: the old image's fallback tag lists its SBOM, and the SBOM's own fallback tag
    lists the SBOM's signature. The SBOM's subject is free only once the image's fallback tag is emptied, so
    cleanup judges the SBOM's fallback tag again after that: both fallback tags go, and the SBOM and its
    signature are deleted (with delete_manifests) or left untagged, and nothing is left as an orphan. The
    dry run lists what the real run does."""
    old = build_image([layer("sc-chain-fb-old", 1100)], created=OLD)
    new = build_image([layer("sc-chain-fb-new", 1100)], created=NOW)
    push_image(anon, repo_name, "old", old)
    push_image(anon, repo_name, "new", new)
    sbom = sigstore_bundle(old, PREDICATE_SPDX)
    signature = sigstore_bundle(sbom, PREDICATE_SIGN, created="2024-02-02T00:00:00Z")
    for item in (sbom, signature):
        push_artifact(anon, repo_name, item.digest, item)
    push_artifact(anon, repo_name, fallback_tag(old.digest), referrers_index([sbom]))
    push_artifact(anon, repo_name, fallback_tag(sbom.digest), referrers_index([signature]))

    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW, tags=inv.tags, errors=inv.errors)
    assert set(stale.loc[stale["stale"], "tag"]) == {"old", fallback_tag(old.digest), fallback_tag(sbom.digest)}
    dry = anon.apply_cleanup(stale, dry_run=True, delete_manifests=delete_manifests)
    done = anon.apply_cleanup(stale, dry_run=False, delete_manifests=delete_manifests)

    def plan(frame):
        return sorted((str(r.tag), r.digest, DONE.get(r.status, r.status)) for r in frame.itertuples(index=False))

    assert plan(dry) == plan(done)
    rows = done.set_index("digest")
    for item in (sbom, signature):
        assert rows.loc[item.digest, "status"] == ("deleted" if delete_manifests else "left untagged")
    assert set(hashes(anon, repo_name)) == {"new"}
    for item in (sbom, signature):
        assert manifest_status(registry_url, repo_name, item.digest) == (404 if delete_manifests else 200)
    after = anon.inventory(repo_name, progress=False)
    assert supply_chain(after.manifests, after.referrers).attrs["orphaned"] == 0


def test_the_audit_asks_the_referrers_api_unless_told_not_to(tmp_path, capsys):
    """Through the referrers API (the proxy serving it from the registry's storage) with no fallback tag, as
    on a registry that answers ``OCI-Subject``: the image's signature and SBOM are untagged referrers that
    only the API lists. The audit asks it by default, so the image counts as signed and the ``unsigned``
    gate holds; ``--no-referrers`` reads tags and indexes only, and then nothing shows the signature."""
    image = build_image([layer("sc-audit-api", 1000)], created=NOW)
    accessories = [sigstore_bundle(image, PREDICATE_SIGN), sigstore_bundle(image, PREDICATE_SPDX)]
    with local_registry() as reg, ReferrersProxy(reg.url, storage=reg.storage) as proxy:
        with regframe.connect(proxy.url) as client:
            push_image(client, "app/api", "v1", image)
            for item in accessories:
                push_artifact(client, "app/api", item.digest, item)
        common = ["audit", proxy.url, "--no-progress", "--fail-on", "unsigned>0"]
        asked = cli.main([*common, "--out", str(tmp_path / "asked")])
        skipped = cli.main([*common, "--out", str(tmp_path / "skipped"), "--no-referrers"])
    capsys.readouterr()
    summary = json.loads((tmp_path / "asked" / "summary.json").read_text())
    assert (asked, summary["signed_images"], summary["sbom_images"], summary["unsigned_images"]) == (0, 1, 1, 0)
    listed = pd.read_csv(tmp_path / "asked" / "referrers.csv")
    assert sorted(listed["digest"]) == sorted(item.digest for item in accessories)
    assert set(listed["via"]) == {"api"}
    without = json.loads((tmp_path / "skipped" / "summary.json").read_text())
    assert (skipped, without["signed_images"], without["unsigned_images"]) == (3, 0, 1)


def test_cleanup_keeps_the_signature_of_an_image_left_untagged_and_removes_a_true_orphan(anon, repo_name):
    """``v1`` is pushed again onto another image: the first stays in the repository, untagged, and can still be
    pulled and verified by digest. Its signature tag is an orphan to ``stale_tags`` (no tag carries its
    subject), but cleanup checks the subject before removing it and keeps it; a signature whose image was
    never pushed goes. The dry run says the same."""
    first = build_image([layer("sc-untagged-first", 900)], created=NOW)
    second = build_image([layer("sc-untagged-second", 900)], created=NOW)
    push_image(anon, repo_name, "v1", first)
    first_tag, first_sig = cosign_signature(first)
    ghost_tag, ghost_sig = cosign_signature(GHOST)
    for tag, item in ((first_tag, first_sig), (ghost_tag, ghost_sig)):
        push_artifact(anon, repo_name, tag, item)
    push_image(anon, repo_name, "v1", second)
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW, tags=inv.tags, errors=inv.errors)
    assert set(stale.loc[stale["stale"], "tag"]) == {first_tag, ghost_tag}, "both look orphaned from the tags"

    dry = anon.apply_cleanup(stale, dry_run=True)
    done = anon.apply_cleanup(stale, dry_run=False)
    for result in (dry, done):
        rows = result.set_index("tag")
        assert rows.loc[first_tag, "status"] == "skipped"
        assert rows.loc[first_tag, "reason"] == (
            f"accessory kept: its subject {first.digest} is still in the repository, untagged (it can be "
            "pulled by digest)"
        )
    assert done.set_index("tag").loc[ghost_tag, "status"] == "deleted"
    assert set(hashes(anon, repo_name)) == {"v1", first_tag}


def test_with_delete_manifests_a_signed_platform_goes_with_its_index_in_the_dry_run_too(anon, repo_name):
    """cosign signs a platform of the planned multi-platform tag ``1.0``. With ``delete_manifests`` the run
    deletes the index and its platforms, then the signature: the dry run, which deletes nothing, must say
    the same rather than find the platform still there."""
    amd = build_image([layer("sc-dm-amd", 900)], created=OLD, oci=True)
    arm = build_image([layer("sc-dm-arm", 900)], architecture="arm64", created=OLD, oci=True)
    push_image(anon, repo_name, "1.0", build_index([amd, arm], oci=True))
    push_image(anon, repo_name, "2.0", build_image([layer("sc-dm-new", 900)], created=NOW))
    sig_tag, sig = cosign_signature(amd)
    push_artifact(anon, repo_name, sig_tag, sig)
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW, tags=inv.tags, errors=inv.errors)
    dry = anon.apply_cleanup(stale, dry_run=True, delete_manifests=True)
    done = anon.apply_cleanup(stale, dry_run=False, delete_manifests=True)

    def plan(frame):
        return sorted((str(r.tag), r.digest, DONE.get(r.status, r.status)) for r in frame.itertuples(index=False))

    assert plan(dry) == plan(done)
    assert done.set_index("tag").loc[sig_tag, "status"] == "deleted"
    assert set(hashes(anon, repo_name)) == {"2.0"}


def test_the_api_referrers_of_an_image_left_untagged_stay_with_its_signature():
    """Through the referrers API (the proxy serving it from the registry's storage): after the plan, another
    client pushes ``v1`` again onto a new build. The old image stays, untagged and pullable by digest, so
    cleanup keeps its signature tag, and the SBOM the API names for it stays too."""
    image = build_image([layer("sc-api-kept-old", 900)], created=OLD)
    rebuild = build_image([layer("sc-api-kept-new", 900)], created=NOW)
    sig_tag, sig = cosign_signature(image)
    sbom = sigstore_bundle(image, PREDICATE_SPDX)
    with local_registry() as reg, ReferrersProxy(reg.url, storage=reg.storage) as proxy:
        with regframe.connect(proxy.url) as client:
            push_image(client, "app/kept", "v1", image)
            push_artifact(client, "app/kept", sig_tag, sig)
            push_artifact(client, "app/kept", sbom.digest, sbom)
            push_image(client, "app/kept", "v2", rebuild)
            inv = client.inventory(progress=False, referrers=True)
            stale = stale_tags(inv.manifests, older_than="30d", now=NOW, tags=inv.tags, errors=inv.errors)
            assert set(stale.loc[stale["stale"], "tag"]) == {"v1", sig_tag}
            push_image(client, "app/kept", "v1", rebuild)
            result = client.apply_cleanup(stale, dry_run=False, delete_manifests=True)
        assert result.set_index("tag").loc["v1", "status"] == "skipped"
        assert result.set_index("tag").loc[sig_tag, "status"] == "skipped"
        assert sbom.digest not in set(result["digest"].astype(str))
        for item in (image, sig, sbom):
            assert manifest_status(reg.url, "app/kept", item.digest) == 200


def test_without_delete_manifests_nothing_is_deleted_by_digest(registry_url, anon, repo_name):
    """README's advice when other clients may be tagging old images is to leave delete_manifests off. Then no
    manifest, untagged referrers included, is deleted by digest (the proxy sees no such DELETE), so a tag
    another client puts on the old image's SBOM at any moment of the cleanup cannot go with it."""
    old = Signed("no-digest-deletes", OLD)
    old.push(anon, repo_name, "v1")
    inv = anon.inventory(repo_name, progress=False)
    stale = stale_tags(inv.manifests, older_than="30d", now=NOW, tags=inv.tags, errors=inv.errors)
    watch = Rule(path=r"/manifests/sha256:(?!0{64})", method="DELETE", action=Delay(0))
    with FaultProxy(registry_url) as proxy:
        proxy.add_rule(watch)
        with regframe.connect(proxy.url) as client:
            done = client.apply_cleanup(stale, dry_run=False)
        # Each tag removed (its own, or an emptied fallback tag) goes by a placeholder deleted by digest.
        placeholders = int((done["tag"].notna() & (done["status"] == "deleted")).sum())
        deletes = next(s.matched for s in proxy.stats.rules if s.rule is watch)
    assert deletes == placeholders, "only the placeholders are deleted by digest"
    left = done[done["tag"].isna()]
    assert sorted(left["digest"]) == sorted(item.digest for item in old.untagged)
    assert set(left["status"]) == {"left untagged"}
    for item in (old.image, *old.untagged):
        assert manifest_status(registry_url, repo_name, item.digest) == 200
    assert hashes(anon, repo_name) == {}
