"""``df.registry`` on hand-built frames: the analyses, column checks, and chart delegation.

Expected numbers are worked out by hand in each test. The chart methods are checked
against a stand-in ``regframe.plot`` module that records its calls (the real charts
have their own tests); one test also drives the real module when it is present.
"""

from __future__ import annotations

import inspect
import sys
import types

import numpy as np
import pandas as pd
import pytest

import regframe.accessor  # registers df.registry
from regframe import analysis

NOW = pd.Timestamp("2026-01-01", tz="UTC")

# Two repositories sharing base layer B (100 bytes); a's own layer A (10), b's own layer C (30).
# a has tags 1 and 2 on one manifest m1; b has tag x on m2.
LAYERS = pd.DataFrame(
    {
        "repository": ["a", "a", "a", "a", "b", "b"],
        "tag": ["1", "1", "2", "2", "x", "x"],
        "manifest_digest": ["m1", "m1", "m1", "m1", "m2", "m2"],
        "platform": "linux/amd64",
        "position": [0, 1, 0, 1, 0, 1],
        "layer_digest": ["B", "A", "B", "A", "B", "C"],
        "size": pd.array([100, 10, 100, 10, 100, 30], dtype="Int64"),
        "media_type": "application/vnd.oci.image.layer.v1.tar+gzip",
    }
)
# Tag 1 and 2 of a are 200 days old on one digest; b:x is 10 days old.
MANIFESTS = pd.DataFrame(
    {
        "repository": ["a", "a", "b"],
        "tag": ["1", "2", "x"],
        "digest": ["m1", "m1", "m2"],
        "manifest_digest": ["m1", "m1", "m2"],
        "created": [NOW - pd.Timedelta(days=200)] * 2 + [NOW - pd.Timedelta(days=10)],
        "size": pd.array([110, 110, 130], dtype="Int64"),
    }
)


def test_accessor_is_registered():
    assert hasattr(pd.DataFrame, "registry")


def test_storage_usage_and_sharing_through_the_accessor():
    usage = LAYERS.registry.storage_usage()
    # b stores B + C = 130, a stores B + A = 110; b first.
    columns = ["repository", "stored_bytes", "exclusive_bytes", "shared_bytes"]
    assert usage[columns].values.tolist() == [["b", 130, 30, 100], ["a", 110, 10, 100]]
    # a's logical bytes: two tags of 110 each.
    assert usage.set_index("repository").loc["a", "logical_bytes"] == 220
    matrix = LAYERS.registry.sharing_matrix()
    np.testing.assert_array_equal(matrix.to_numpy(), [[130, 100], [100, 110]])
    assert list(LAYERS.registry.sharing_matrix(top=1).index) == ["b"]
    shared = LAYERS.registry.shared_layers()
    assert shared.iloc[0][["layer_digest", "repositories", "tags"]].tolist() == ["B", 2, 3]


def test_stale_reclaim_and_plan_through_the_accessor():
    stale = MANIFESTS.registry.stale_tags(older_than="90d", now=NOW)
    assert stale.set_index("tag")["stale"].to_dict() == {"1": True, "2": True, "x": False}
    # a's tags are stale; A (10) is only theirs, B (100) is still used by b:x.
    assert stale.registry.reclaimable_bytes(LAYERS) == 10
    per_repo = stale.registry.reclaimable_by_repository(LAYERS)
    assert per_repo.to_dict("list") == {"repository": ["a"], "stale_tags": [2], "reclaimable_bytes": [10]}
    plan = stale.registry.cleanup_plan()
    assert list(plan["tag"]) == ["1", "2"]
    kept = MANIFESTS.registry.stale_tags(older_than="90d", keep="^2$", now=NOW)
    assert kept.registry.cleanup_plan().empty  # 1 shares its digest with kept tag 2


@pytest.mark.parametrize(
    "name",
    [
        "storage_usage",
        "shared_layers",
        "sharing_matrix",
        "stale_tags",
        "reclaimable_bytes",
        "reclaimable_by_repository",
        "cleanup_plan",
    ],
)
def test_each_analysis_method_takes_what_its_function_takes(name):
    """``df.registry.<name>(...)`` is ``analysis.<name>(df, ...)``: the same options, defaults included."""
    method = list(inspect.signature(getattr(regframe.accessor.RegistryAccessor, name)).parameters.values())[1:]
    function = list(inspect.signature(getattr(analysis, name)).parameters.values())[1:]
    assert [(p.name, p.kind, p.default) for p in method] == [(p.name, p.kind, p.default) for p in function]


def test_stale_tags_passes_the_crawl_frames_on():
    """``tags=`` and ``errors=`` reach the analysis, which checks them before any work."""
    tags = MANIFESTS[["repository", "tag", "digest"]]
    errors = pd.DataFrame({"repository": pd.Series(dtype=object), "stage": pd.Series(dtype=object)})
    given = MANIFESTS.registry.stale_tags(older_than="90d", now=NOW, tags=tags, errors=errors)
    pd.testing.assert_frame_equal(given, MANIFESTS.registry.stale_tags(older_than="90d", now=NOW))
    with pytest.raises(ValueError, match=r"stale_tags \(errors\).*'stage'"):
        MANIFESTS.registry.stale_tags(now=NOW, errors=errors.drop(columns="stage"))


def test_reclaimable_bytes_passes_the_referrers_on():
    # a:1 (image m1, layer A 10 bytes) is stale; its signature s1 is untagged (7 bytes), known only
    # from the referrers API, so only referrers= says it goes with its subject.
    layers = pd.DataFrame(
        {
            "repository": ["a", "a", "b"],
            "tag": ["1", None, "x"],
            "manifest_digest": ["m1", "s1", "m2"],
            "layer_digest": ["A", "S", "C"],
            "size": pd.array([10, 7, 30], dtype="Int64"),
        }
    )
    stale = pd.DataFrame({"repository": ["a", "b"], "tag": ["1", "x"], "digest": ["m1", "m2"], "stale": [True, False]})
    referrers = pd.DataFrame({"repository": ["a"], "subject": ["m1"], "digest": ["s1"], "tag": [None]})
    assert stale.registry.reclaimable_bytes(layers) == 10
    assert stale.registry.reclaimable_bytes(layers, referrers=referrers) == 10 + 7
    per_repo = stale.registry.reclaimable_by_repository(layers, referrers=referrers)
    assert per_repo.to_dict("list") == {"repository": ["a"], "stale_tags": [1], "reclaimable_bytes": [17]}
    with pytest.raises(ValueError, match="referrers frame"):
        stale.registry.reclaimable_bytes(layers, referrers=layers)


# a:1 is an image (m1: config 5, layer A 10) with a cosign signature (s1, tag sha256-m1.sig: config 1,
# payload S 2) and an SBOM (b1, untagged: config 1, payload B 3); b:x is an image (m2: layer C 30).
WITH_ACCESSORIES = pd.DataFrame(
    {
        "repository": ["a", "a", "a", "a", "a", "a", "b"],
        "tag": ["1", "1", "sha256-m1.sig", "sha256-m1.sig", None, None, "x"],
        "manifest_digest": ["m1", "m1", "s1", "s1", "b1", "b1", "m2"],
        "layer_digest": ["K1", "A", "K2", "S", "K3", "B", "C"],
        "size": pd.array([5, 10, 1, 2, 1, 3, 30], dtype="Int64"),
        "kind": pd.Categorical(
            ["image", "image", "signature", "signature", "sbom", "sbom", "image"],
            categories=["image", "signature", "attestation", "sbom", "helm-chart", "artifact"],
        ),
    }
)


def test_storage_usage_counts_images_but_not_their_accessories():
    usage = WITH_ACCESSORIES.registry.storage_usage().set_index("repository")
    assert usage.loc["a", "images"] == 1  # m1 only: s1 and b1 are not images
    assert usage.loc["a", "tags"] == 2  # the signature's tag is a tag
    assert usage.loc["a", "stored_bytes"] == 5 + 10 + 1 + 2 + 1 + 3  # accessories still cost their bytes
    assert usage["images"].sum() == 2
    by_kind = WITH_ACCESSORIES.registry.storage_usage(by="kind").set_index("kind")
    assert by_kind["images"].to_dict() == {"image": 2, "signature": 0, "sbom": 0}
    assert by_kind["stored_bytes"].to_dict() == {"image": 45, "signature": 3, "sbom": 4}
    both = WITH_ACCESSORIES.registry.storage_usage(by=["repository", "kind"])
    assert len(both) == 4 and both.attrs["total_bytes"] == 52


def test_storage_usage_without_kinds_counts_every_manifest():
    """Frames from before kinds (no ``kind`` column, or kinds unknown) keep counting every manifest."""
    usage = WITH_ACCESSORIES.drop(columns="kind").registry.storage_usage().set_index("repository")
    assert usage["images"].to_dict() == {"a": 3, "b": 1}
    unknown = WITH_ACCESSORIES.assign(kind=pd.Categorical([None] * 7, categories=["image", "signature"]))
    assert unknown.registry.storage_usage().set_index("repository")["images"].to_dict() == {"a": 3, "b": 1}


@pytest.mark.parametrize(
    ("frame", "call", "missing"),
    [
        (MANIFESTS, lambda f: f.registry.storage_usage(), "'layer_digest'"),
        (MANIFESTS, lambda f: f.registry.shared_layers(), "'layer_digest'"),
        (MANIFESTS, lambda f: f.registry.sharing_matrix(), "'layer_digest'"),
        (LAYERS, lambda f: f.registry.stale_tags(), "'digest', 'created'"),
        (LAYERS, lambda f: f.registry.cleanup_plan(), "'digest', 'created', 'age', 'stale', 'reason'"),
        (LAYERS, lambda f: f.registry.reclaimable_bytes(LAYERS), "'stale'"),
        (MANIFESTS, lambda f: f.registry.plot_layer_sizes(), "'layer_digest'"),
        (MANIFESTS, lambda f: f.registry.plot_sharing_heatmap(), "'layer_digest'"),
        (LAYERS, lambda f: f.registry.plot_stale_tags(), "'created', 'age', 'stale'"),
    ],
)
def test_wrong_frame_names_the_missing_columns(frame, call, missing):
    with pytest.raises(ValueError, match=missing):
        call(frame)


def test_reclaimable_bytes_checks_its_layers_argument():
    stale = MANIFESTS.registry.stale_tags(now=NOW)
    with pytest.raises(ValueError, match="'layer_digest'"):
        stale.registry.reclaimable_bytes(MANIFESTS)
    with pytest.raises(ValueError, match="layers frame"):
        stale.registry.reclaimable_bytes("layers.csv")


def test_plot_storage_needs_usage_or_layers():
    with pytest.raises(ValueError, match=r"storage_usage frame.*layers frame"):
        MANIFESTS.registry.plot_storage()


@pytest.fixture
def recording_plot(monkeypatch):
    """A stand-in regframe.plot recording what each chart function receives."""
    calls: list[tuple[str, pd.DataFrame, dict]] = []
    module = types.ModuleType("regframe.plot")
    for name in ("storage", "sharing_heatmap", "stale_tags", "layer_sizes"):

        def chart(frame, _name=name, **kwargs):
            calls.append((_name, frame, kwargs))
            return f"axes from {_name}"

        setattr(module, name, chart)
    monkeypatch.setitem(sys.modules, "regframe.plot", module)
    return calls


def test_plot_methods_delegate(recording_plot):
    assert LAYERS.registry.plot_storage(top=5, ax="AX") == "axes from storage"
    name, usage, kwargs = recording_plot[-1]
    # Called on layers: storage_usage is computed first (b 130 stored, a 110).
    assert list(usage["stored_bytes"]) == [130, 110] and kwargs == {"top": 5, "ax": "AX"}

    given = pd.DataFrame({"repository": ["r"], "stored_bytes": [1], "exclusive_bytes": [1], "shared_bytes": [0]})
    given.registry.plot_storage()
    assert recording_plot[-1][1] is given and recording_plot[-1][2] == {"top": 15, "ax": None}

    LAYERS.registry.plot_sharing_heatmap(top=3)
    name, matrix, kwargs = recording_plot[-1]
    # The chart gets the sharing matrix of the layers (b 130 stored, a 110, 100 in common).
    assert name == "sharing_heatmap" and matrix.to_numpy().tolist() == [[130, 100], [100, 110]]
    assert list(matrix.index) == ["b", "a"] and matrix.attrs["total_repositories"] == 2
    assert kwargs == {"top": 3, "ax": None}
    LAYERS.registry.plot_sharing_heatmap(top=1)
    assert list(recording_plot[-1][1].index) == ["b"] and recording_plot[-1][1].attrs["total_repositories"] == 2

    LAYERS.registry.plot_layer_sizes(ax="AX", color="red")
    assert recording_plot[-1][:2] == ("layer_sizes", LAYERS)
    assert recording_plot[-1][2] == {"ax": "AX", "color": "red"}

    stale = MANIFESTS.registry.stale_tags(older_than="90d", now=NOW)
    stale.registry.plot_stale_tags()
    assert recording_plot[-1][1] is stale and recording_plot[-1][2]["layers"] is None
    stale.registry.plot_stale_tags(layers=LAYERS, top=4)
    assert recording_plot[-1][1] is stale
    assert recording_plot[-1][2] == {"layers": LAYERS, "top": 4, "ax": None}


def test_plot_methods_take_options_by_keyword_and_check_layers_first(recording_plot):
    stale = MANIFESTS.registry.stale_tags(older_than="90d", now=NOW)
    for call in (
        lambda: LAYERS.registry.plot_storage(5),
        lambda: LAYERS.registry.plot_sharing_heatmap(5),
        lambda: stale.registry.plot_stale_tags(LAYERS),
        lambda: LAYERS.registry.plot_layer_sizes("AX"),
    ):
        with pytest.raises(TypeError, match="positional"):
            call()
    with pytest.raises(ValueError, match=r"plot_stale_tags.*'layer_digest'"):
        stale.registry.plot_stale_tags(layers=MANIFESTS)
    assert recording_plot == []


def test_plot_methods_with_the_real_charts(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    plot = pytest.importorskip("regframe.plot")
    if not all(hasattr(plot, n) for n in ("storage", "sharing_heatmap", "stale_tags", "layer_sizes")):
        pytest.skip("regframe.plot does not provide every chart yet")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stale = MANIFESTS.registry.stale_tags(older_than="90d", now=NOW)
    for draw in (
        lambda: LAYERS.registry.plot_storage(),
        lambda: LAYERS.registry.plot_sharing_heatmap(),
        lambda: stale.registry.plot_stale_tags(layers=LAYERS),
        lambda: LAYERS.registry.plot_layer_sizes(),
    ):
        ax = draw()
        assert ax.figure is not None and ax.has_data()
        plt.close(ax.figure)

    ax = stale.registry.plot_stale_tags(layers=LAYERS)
    assert "2 of 3 tags stale, 10 B reclaimable" in ax.get_title(loc="left")  # layer A only
    assert "reclaimable_bytes" not in stale.attrs  # the caller's frame untouched
    plt.close(ax.figure)
