"""Data flows one way. One table says what each part of the package may import; it is checked on the
source, and a fresh interpreter shows that ``import regframe.client`` loads no dataframe, chart or
notebook library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "regframe"
STDLIB = set(sys.stdlib_module_names) | {"__future__", "_typeshed"}  # _typeshed: type-checking only

BOTTOM = {"regframe.units", "regframe.processes", "regframe.patterns", "regframe.text", "regex"}
CLIENT = BOTTOM | {"regframe.client", "urllib3"}
INVENTORY = CLIENT | {"regframe.inventory", "pandas", "numpy", "pyarrow", "tqdm", "regex"}
ANALYSIS = BOTTOM | {"regframe.analysis", "pandas", "numpy", "regex"}
POLICY = ANALYSIS | {"regframe.policy", "yaml"}
FACADE = INVENTORY | ANALYSIS | {"regframe.registry", "regframe.actions"}
PLOT = ANALYSIS | {"regframe.plot", "matplotlib"}
HISTORY = INVENTORY | ANALYSIS | {"regframe.history"}
REPORT = ANALYSIS | PLOT | INVENTORY | {"regframe", "regframe.report"}
TOP = FACADE | POLICY | PLOT | HISTORY | REPORT | {"regframe", "regframe.accessor", "ipywidgets"}

# What each part of the package may import (besides the standard library).
ALLOWED: dict[str, set[str]] = {
    "regframe.units": set(),
    "regframe.processes": set(),
    "regframe.patterns": {"regex"},
    "regframe.text": set(),
    "regframe.client": CLIENT,
    "regframe.inventory": INVENTORY,
    "regframe.analysis": ANALYSIS,
    "regframe.policy": POLICY,
    "regframe.actions": FACADE,
    "regframe.registry": FACADE,
    "regframe.plot": PLOT,
    "regframe.history": HISTORY,
    "regframe.report": REPORT,
    "regframe.accessor": ANALYSIS | PLOT,
    "regframe.widgets": TOP | {"regframe.widgets"},
    "regframe.cli": TOP | {"regframe.cli", "regframe.cli_shared", "regframe.cleanup_command", "regframe.dashboard"},
    "regframe.cli_shared": TOP,
    "regframe.__main__": {"regframe.cli"},
    "regframe.cleanup_command": TOP | {"regframe.cli_shared"},
    "regframe.dashboard": BOTTOM | {"regframe.cli", "voila"},
    "regframe.demo": TOP | {"regframe.cli", "regframe.testing"},
    "regframe.testing": CLIENT | {"regframe", "regframe.testing", "cryptography", "bcrypt", "oras"},
    "regframe": {"regframe.client", "regframe.inventory", "regframe.registry", "regframe.accessor"},
}


# Upward calls made on purpose, by name, when a method is called: Inventory.diff needs the analysis the
# history layer holds. Loading by name is still an import, and the table checks it like one.
LOADED_BY_NAME: dict[str, set[str]] = {"regframe.inventory": {"regframe.history"}}


def part_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts[:2])


def imports(path: Path) -> set[str]:
    """Top-level distributions and regframe parts (``regframe.x``) a file imports."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                names = [
                    ".".join(base + [node.module]) if node.module else ".".join(base + [alias.name])
                    for alias in node.names
                ]
            else:
                names = [node.module or ""]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in STDLIB:
                continue
            if top != "regframe":
                found.add(top)
            else:
                part = ".".join(name.split(".")[:2])
                found.add(part if part in PARTS else "regframe")  # a name the package itself exports
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
PARTS = {part_of(path) for path in FILES}


def test_every_part_of_the_package_is_in_the_table():
    assert {part_of(path) for path in FILES} <= set(ALLOWED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_follow_the_table(path):
    part = part_of(path)
    refused = imports(path) - {part} - ALLOWED[part] - LOADED_BY_NAME.get(part, set())
    assert not refused, f"{part} may not import {sorted(refused)}"


def test_loading_by_name_is_seen_and_only_where_the_table_says():
    loaded = {
        part_of(path): imports(path) - ALLOWED[part_of(path)] - {part_of(path)}
        for path in FILES
        if "import_module(" in path.read_text()
    }
    assert {part: names for part, names in loaded.items() if names} == LOADED_BY_NAME


def test_product_code_never_imports_the_harness():
    users = {part_of(path) for path in FILES if "regframe.testing" in imports(path)}
    assert users <= {"regframe.testing", "regframe.demo"}


def test_import_regframe_client_loads_no_dataframe_chart_or_notebook_library():
    code = (
        "import sys, regframe.client; "
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib', 'ipywidgets', 'pyarrow', 'tqdm') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_unique_module_names():
    names = [path.name for path in FILES if path.name != "__init__.py"]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
