"""``regframe.units``: the one byte formatter and parser, and every layer printing sizes through it.

Expected values are written out by hand (decimal units: 1 MB = 1,000,000 bytes; binary: 1 MiB = 1,048,576).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import regframe
from regframe.inventory import Inventory
from regframe.units import format_bytes, parse_bytes

UNITS_FILE = Path(__file__).resolve().parent.parent / "regframe" / "units.py"


# --------------------------------------------------------------------------- format_bytes


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (999.4, "999 B"),
        (999.6, "1.0 KB"),
        (1000, "1.0 KB"),
        (999_949, "999.9 KB"),
        (999_950, "1.0 MB"),
        (1_500_000, "1.5 MB"),
        (999_950_000, "1.0 GB"),
        (5 * 10**12, "5.0 TB"),
        (10**15, "1.0 PB"),
        (10**18, "1.0 EB"),
        (10**21, "1000.0 EB"),
        (-999_950, "-1.0 MB"),
        (np.int64(2_000_000), "2.0 MB"),
        (np.float32(1500.0), "1.5 KB"),
        (float("inf"), "inf B"),
        (None, "n/a"),
        (float("nan"), "n/a"),
        (np.nan, "n/a"),
        (pd.NA, "n/a"),
    ],
)
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected


@pytest.mark.parametrize(("precision", "expected"), [(0, "1 MB"), (2, "1.23 MB"), (3, "1.235 MB")])
def test_format_bytes_precision(precision, expected):
    assert format_bytes(1_234_567, precision=precision) == expected


def test_format_bytes_precision_decides_the_carry():
    assert format_bytes(999_500, precision=0) == "1 MB"
    assert format_bytes(999_500, precision=1) == "999.5 KB"


@pytest.mark.parametrize("bad", ["12", b"12", True, [1], object()])
def test_format_bytes_rejects_non_numbers(bad):
    with pytest.raises(TypeError, match="number of bytes"):
        format_bytes(bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "1"])
def test_format_bytes_rejects_a_bad_precision(bad):
    with pytest.raises(ValueError, match="precision"):
        format_bytes(1000, precision=bad)


# --------------------------------------------------------------------------- parse_bytes


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("0", 0),
        ("12B", 12),
        ("12 b", 12),
        ("300k", 300_000),
        ("300K", 300_000),
        ("1.5kB", 1_500),
        ("1.5 KB", 1_500),
        ("5GB", 5_000_000_000),
        ("5 gb", 5_000_000_000),
        ("5G", 5_000_000_000),
        ("2TB", 2_000_000_000_000),
        ("3 MB", 3_000_000),
        ("1 PB", 1_000_000_000_000_000),
        ("4Ki", 4_096),
        ("0.5 KiB", 512),
        ("1.5 MiB", 1_572_864),
        ("1.5 mib", 1_572_864),
        ("7 GiB", 7_516_192_768),
        ("1 TiB", 1_099_511_627_776),
        ("1 PiB", 1_125_899_906_842_624),
        (".5 MB", 500_000),
        ("  10 MB  ", 10_000_000),
        ("1.0005 kB", 1_001),
        ("0.4 B", 0),
    ],
)
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "GB",
        "-5GB",
        "+5GB",
        "5 XB",
        "5GBs",
        "5 Mbit",
        "5 G B",
        "1e3",
        "1,000",
        "1_000",
        "1.",
        "1..5 MB",
        "five MB",
        "5 MB extra",
        "nan",
        "inf",
        "\u0665 MB",
    ],
)
def test_parse_bytes_names_malformed_text(text):
    with pytest.raises(ValueError) as info:
        parse_bytes(text)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("bad", [5, 5.0, None, b"5GB"])
def test_parse_bytes_wants_a_string(bad):
    with pytest.raises(TypeError, match="string"):
        parse_bytes(bad)


# --------------------------------------------------------------------------- one formatter everywhere


def test_manifest_repr_uses_the_one_formatter():
    """999,950 bytes of layers reads "1.0 MB" in a Manifest's notebook repr, as in the CLI."""
    data = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64, "size": 10},
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "a" * 64,
                "size": 600_000,
            },
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "b" * 64,
                "size": 399_950,
            },
        ],
    }
    manifest = regframe.Manifest(
        data, raw=json.dumps(data).encode(), digest="sha256:" + "d" * 64, repository="team/app", reference="v1"
    )
    html = manifest._repr_html_()
    assert "2 (1.0 MB compressed)" in html
    assert "1000.0 KB" not in html


def test_inventory_repr_uses_the_one_formatter():
    """Distinct layer bytes (a shared layer counted once) of 999,950 read "1.0 MB" in an Inventory's repr."""
    layers = pd.DataFrame(
        {
            "repository": ["a", "b", "b"],
            "tag": ["1", "1", "1"],
            "layer_digest": ["sha256:x", "sha256:x", "sha256:y"],
            "size": pd.array([600_000, 600_000, 399_950], dtype="Int64"),
        }
    )
    empty = pd.DataFrame()
    inv = Inventory(empty, empty, empty, layers, pd.DataFrame({"error": []}), url="http://registry.test")
    html = inv._repr_html_()
    assert "<td>1.0 MB</td>" in html
    assert "1000.0 KB" not in html


def test_plot_and_widgets_share_the_formatter():
    pytest.importorskip("matplotlib")
    pytest.importorskip("ipywidgets")
    import regframe.plot
    import regframe.units
    import regframe.widgets._render as render

    assert regframe.plot.format_bytes is regframe.units.format_bytes
    assert render.nbytes(999_950) == "1.0 MB"


def test_no_other_module_defines_a_byte_formatter():
    package = UNITS_FILE.parent
    defining = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if any(f"def {name}(" in path.read_text() for name in ("format_bytes", "human_bytes", "parse_bytes"))
    )
    assert defining == ["units.py"]


def test_units_needs_nothing_but_the_standard_library():
    """Loaded on its own in a fresh interpreter it pulls in no pandas, numpy, matplotlib or regframe package."""
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('units', {str(UNITS_FILE)!r})\n"
        "units = importlib.util.module_from_spec(spec); spec.loader.exec_module(units)\n"
        "assert units.format_bytes(999_950) == '1.0 MB' and units.format_bytes(None) == 'n/a'\n"
        "assert units.parse_bytes('5GB') == 5_000_000_000\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'pandas', 'numpy', 'matplotlib', 'regframe'}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
