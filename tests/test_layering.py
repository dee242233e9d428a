"""Data flows one way: the client knows nothing of pandas, the analysis nothing of the network.

Checked on the source (importing a subpackage runs ``regframe/__init__`` and so loads everything)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "regframe"


def imports_of(folder: str) -> dict[str, set[str]]:
    found = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                names.add(base)
        found[path.name] = names
    return found


@pytest.mark.parametrize("file, names", imports_of("client").items())
def test_client_imports_no_dataframe_or_notebook_library(file, names):
    roots = {name.lstrip(".").split(".")[0] for name in names if not name.startswith(".")}
    assert not roots & {"pandas", "numpy", "matplotlib", "ipywidgets", "pyarrow", "tqdm"}, file
    assert not any(name.startswith("..") and name != "..units" for name in names), \
        f"{file} reaches above the client package"


@pytest.mark.parametrize("file, names", imports_of("analysis").items())
def test_analysis_imports_no_network_code(file, names):
    roots = {name.split(".")[0] for name in names if not name.startswith(".")}
    assert not roots & {"urllib3", "requests", "http", "socket"}, file
    assert not any("client" in name and not name.endswith("errors") for name in names), file
